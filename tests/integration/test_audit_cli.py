"""`recstop audit show | export | verify`: their outputs, tamper detection, and no token in the database."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import uuid

import pytest
from conftest import TOKEN
from sqlalchemy import delete, insert, select, update
from support import audit_event, audit_life, cli, xadd_events

from recstop.producers import cli as recstop
from recstop.worker.audit import chain
from recstop.worker.audit.db import audit_engine
from recstop.worker.audit.query import EXPORT_FIELDS
from recstop.worker.audit.schema import events
from recstop.worker.audit.sink import AuditSink
from recstop.worker.config.settings import AuditSettings
from recstop.worker.model.redaction import Redactor
from recstop.worker.state import keys
from recstop.worker.state.acl import Role

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("audit")]

CALL = "6b0e1c2d-0000-4000-8000-00000000c0de"
OTHER = "6b0e1c2d-0000-4000-8000-0000000ff1ce"


def fill(redis_server, audit_db, events_: list[dict], secrets=()) -> AuditSink:
    """Store ``events_`` through a sink (stepped on this thread until the stream is drained)."""
    client = redis_server.client(decode=False, role=Role.AUDIT_SINK)
    sink = AuditSink(
        client,
        audit_engine(audit_db),
        name="t",
        block_ms=10,
        retention_days=AuditSettings().retention_days,
        redactor=Redactor(secrets),
    )
    xadd_events(redis_server.client(decode=False), events_)  # the harness writes them, as workers would
    while sink.step():
        pass
    return sink


def run(monkeypatch, audit_db, *argv):
    """``recstop audit ...`` in this process; (exit code, stdout, stderr)."""
    monkeypatch.setenv("RECSTOP_AUDIT_DB", audit_db)
    out, err = io.StringIO(), io.StringIO()
    code = recstop.run(["audit", *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def filled(redis_server, audit_db):
    """An audit database holding two calls: CALL (five events of one stop) and OTHER (one event)."""
    life = audit_life(CALL)
    fill(redis_server, audit_db, [*life[:2], audit_event(OTHER, "accepted", at=life[0]["at"]), *life[2:]])
    return audit_db


def test_show_prints_a_calls_events_oldest_first(monkeypatch, filled):
    """The text table has one line per event, in time order, with attempt, status, task and request ids."""
    code, out, err = run(monkeypatch, filled, "show", CALL.upper())
    assert (code, err) == (0, "")
    header, *lines = out.splitlines()
    assert header.split() == [
        "at",
        "event",
        "attempt",
        "http_status",
        "reason",
        "task_id",
        "request_id",
        "detail",
    ]
    assert [line.split()[1] for line in lines] == [
        "accepted",
        "attempt",
        "retry_scheduled",
        "attempt",
        "stopped",
    ]
    assert lines[3].split()[2:4] == ["2", "204"]
    assert lines[0].split()[-2:] == ["req-1", "-"]


def test_show_json_has_every_column_and_unknown_calls_fail(monkeypatch, filled):
    """--json gives full rows; a call with no event exits 1 naming the database; a bad uuid exits 2."""
    code, out, _ = run(monkeypatch, filled, "show", CALL, "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["event"] for r in rows] == ["accepted", "attempt", "retry_scheduled", "attempt", "stopped"]
    assert set(rows[0]) == set(EXPORT_FIELDS)
    assert rows[4]["origin"] == "celery"
    assert rows[1]["error"] == "Service Unavailable"
    unknown = str(uuid.uuid4())
    code, out, err = run(monkeypatch, filled, "show", unknown)
    assert (code, out) == (1, "")
    assert f"no audit event for call {unknown}" in err
    assert run(monkeypatch, filled, "show", "not-a-uuid")[0] == 2


def test_export_jsonl_and_csv_with_a_time_range(monkeypatch, filled, tmp_path):
    """Jsonl and csv give one row per event with its call_uuid; --until excludes; stdout holds only data."""
    code, out, err = run(monkeypatch, filled, "export", "--since", "2000-01-01")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert "exported 6 event(s)" in err
    assert [r["call_uuid"] for r in rows].count(CALL) == 5
    assert [r["call_uuid"] for r in rows].count(OTHER) == 1
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    path = tmp_path / "out.csv"
    code, out, err = run(
        monkeypatch,
        filled,
        "export",
        "--since",
        "2000-01-01T00:00:00Z",
        "--format",
        "csv",
        "--output",
        str(path),
    )
    assert (code, out) == (0, "")
    with path.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == list(EXPORT_FIELDS)
    assert len(table) == 6
    assert {row["event"] for row in table} >= {"accepted", "stopped"}
    code, out, _ = run(monkeypatch, filled, "export", "--since", "2000-01-01", "--until", "2000-01-02")
    assert (code, out) == (0, "")
    code, _, err = run(monkeypatch, filled, "export", "--since", "2026-01-01T00:00:00")
    assert code == 2
    assert "timezone" in err


def test_verify_catches_an_update_a_delete_and_an_insert(monkeypatch, redis_server, audit_db):
    """An edited, a deleted and an added row each make verify exit 1 naming the row; restored, it holds."""
    fill(redis_server, audit_db, audit_life() + audit_life() + audit_life())
    engine = audit_engine(audit_db)
    code, out, _ = run(monkeypatch, audit_db, "verify")
    assert code == 0
    assert out.startswith("audit chain holds: 15 row(s) checked (seq 1..15)")

    def tamper(statement) -> tuple[int, str]:
        with engine.begin() as connection:
            connection.execute(statement)
        code, out, _ = run(monkeypatch, audit_db, "verify")
        return code, out

    with engine.connect() as connection:
        row7 = dict(connection.execute(select(events).where(events.c.seq == 7)).mappings().one())
    code, out = tamper(update(events).where(events.c.seq == 7).values(http_status=200))
    assert code == 1
    assert out.startswith(
        f"audit chain BROKEN at row seq 7 (stream id {row7['stream_id']}): the row's contents"
    )
    forged = {**row7, "http_status": 200}
    code, out = tamper(
        update(events).where(events.c.seq == 7).values(hash=chain.link(row7["prev_hash"], forged))
    )
    assert (code, out.split(":")[0]) == (
        1,
        "audit chain BROKEN at row seq 8 (stream id " + _id(engine, 8) + ")",
    )
    tamper(update(events).where(events.c.seq == 7).values(http_status=row7["http_status"], hash=row7["hash"]))
    assert run(monkeypatch, audit_db, "verify")[0] == 0

    code, out = tamper(delete(events).where(events.c.seq == 12))
    assert (code, out) == (1, "audit chain BROKEN at row seq 12: rows 12..12 are missing (deleted)\n")
    code, out = tamper(delete(events).where(events.c.seq == 15))
    assert code == 1
    assert "seq 12" in out

    extra = {**row7, "seq": 16, "stream_id": "9999999999999-0", "prev_hash": row7["hash"]}
    code, out = tamper(insert(events).values(**{**extra, "hash": chain.link(extra["prev_hash"], extra)}))
    assert code == 1
    assert "seq 12" in out  # the first break is still the first reported
    code, out, _ = run(monkeypatch, audit_db, "verify", "--since", "2000-01-01", "--json")
    verdict = json.loads(out)
    assert (code, verdict["ok"], verdict["broken"]["seq"]) == (1, False, 12)


def test_verify_names_an_inserted_row(monkeypatch, redis_server, audit_db):
    """A row added after the head, chained correctly, is still named: the head does not know it."""
    fill(redis_server, audit_db, audit_life())
    engine = audit_engine(audit_db)
    with engine.begin() as connection:
        last = dict(connection.execute(select(events).where(events.c.seq == 5)).mappings().one())
        added = {
            **last,
            "seq": 6,
            "stream_id": "9999999999999-0",
            "event": "cancelled",
            "prev_hash": last["hash"],
        }
        connection.execute(insert(events).values(**{**added, "hash": chain.link(last["hash"], added)}))
    code, out, _ = run(monkeypatch, audit_db, "verify")
    assert code == 1
    assert out == (
        "audit chain BROKEN at row seq 6 (stream id 9999999999999-0): "
        "after the chain head (seq 5): a row was inserted\n"
    )


def _id(engine, seq: int) -> str:
    with engine.connect() as connection:
        return str(connection.scalar(select(events.c.stream_id).where(events.c.seq == seq)))


def dump(audit_db: str, postgres=None) -> str:
    """Every schema statement and row of the database as SQL text (sqlite3's iterdump, or pg_dump)."""
    if audit_db.startswith("sqlite:///"):
        with sqlite3.connect(audit_db.removeprefix("sqlite:///")) as connection:
            return "\n".join(connection.iterdump())
    return postgres.dump(audit_db.rsplit("/", 1)[1])


def test_no_token_reaches_the_database_or_the_logs(request, redis_server, audit_db, logs):
    """A token leaked into an event, an unknown key or a malformed entry is stored masked, never logged."""
    leaky = [
        audit_event(CALL, "dead", reason="http_401", error=f"rejected token {TOKEN}", request_id="marker-r1"),
        audit_event(CALL, "attempt", new_key=f"Bearer {TOKEN}"),
    ]
    fill(redis_server, audit_db, leaky, secrets=(TOKEN,))
    client = redis_server.client()
    client.xadd(keys.AUDIT_STREAM, {"e": f'{{"event": "dead", "token": "{TOKEN}"'})  # not JSON
    fill(redis_server, audit_db, [], secrets=(TOKEN,))
    postgres = request.getfixturevalue("postgres") if audit_db.startswith("postgresql") else None
    text = dump(audit_db, postgres)
    assert "rejected token ***" in text
    assert TOKEN not in text
    assert "invalid" in text
    assert TOKEN not in logs.text()
    assert "marker-r1" not in logs.text()  # event contents are never logged


def test_the_real_command_line_masks_the_database_password(tmp_path):
    """`recstop audit show` as a process: an unreachable PostgreSQL is named with its password masked."""
    url = "postgresql://auditor:Sekr3tPw@127.0.0.1:1/audit"
    result = cli({"RECSTOP_AUDIT_DB": url}, "audit", "show", CALL)
    assert result.returncode == 1
    assert "Sekr3tPw" not in result.stdout + result.stderr
    assert "cannot read the audit database at postgresql://auditor:***@127.0.0.1:1/audit" in result.stderr
    missing = cli({"RECSTOP_AUDIT_DB": f"sqlite:///{tmp_path / 'none.db'}"}, "audit", "verify")
    assert missing.returncode == 1
    assert "no audit database at sqlite:///" in missing.stderr


def test_a_bad_database_url_is_bad_input(monkeypatch):
    """RECSTOP_AUDIT_DB of another kind exits 2 naming the variable, never echoing its password."""
    code, out, err = run(monkeypatch, "mysql://u:Pw@h/db", "verify")
    assert (code, out) == (2, "")
    assert "RECSTOP_AUDIT_DB" in err
    assert "Pw" not in err


def test_migrate_creates_the_schema_once_on_sqlite_and_postgresql(monkeypatch, audit_db):
    """`recstop audit migrate` on an empty database creates the tables (version 1), then finds them."""
    code, out, err = run(monkeypatch, audit_db, "migrate")
    assert (code, err) == (0, "")
    assert out.startswith("audit schema at version 1 (found 0) in ")
    code, out, _ = run(monkeypatch, audit_db, "migrate")
    assert code == 0
    assert out.startswith("audit schema at version 1 (found 1) in ")
    code, out, _ = run(monkeypatch, audit_db, "verify")
    assert code == 0
    assert "0 row(s) checked" in out
