"""Least privilege in PostgreSQL: each audit command works under its own role and nothing more."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from psycopg import errors
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from support import ROOT, audit_event, audit_life, cli, final, stored_ids, wait_for, xadd_events

from harness.auditroles import AuditDatabase, migrate_as_owner, provision
from harness.auditsink import AuditSinkProcess
from harness.postgres import postgres_binary
from recstop.worker.audit import ledger, roles
from recstop.worker.audit.db import audit_engine
from recstop.worker.audit.event import FIELD, parse_entry
from recstop.worker.audit.sink import AuditSink, fail_fast
from recstop.worker.audit.verify import verify
from recstop.worker.model.redaction import Redactor
from recstop.worker.state import keys
from recstop.worker.state.acl import Role

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("audit_roles")]

DAY_S = 86400.0
#: What the sink role must never run: (what, statement).
SINK_REFUSED = [
    ("UPDATE an event", "UPDATE audit_events SET event = 'stopped' WHERE seq = 1"),
    ("DELETE an event", "DELETE FROM audit_events WHERE seq = 1"),
    ("TRUNCATE the events", "TRUNCATE audit_events"),
    ("move the retention horizon", "UPDATE audit_head SET horizon_seq = 2"),
    ("UPDATE a digest", "UPDATE audit_digests SET last_hash = 'x'"),
    ("ALTER the events table", "ALTER TABLE audit_events ADD COLUMN note text"),
    ("DROP the events table", "DROP TABLE audit_events"),
    ("CREATE a table", "CREATE TABLE sink_scratch (x int)"),
    ("record a migration", "INSERT INTO audit_schema VALUES (99, 0)"),
]
INSERT_EVENT = (
    "INSERT INTO audit_events (seq, stream_id, recorded_at, event, at, prev_hash, hash) "
    "VALUES (999, '1-1', 0, 'stopped', 0, 'a', 'b')"
)
#: What the reader role must never run.
READER_REFUSED = [
    (
        "INSERT an event",
        INSERT_EVENT,
    ),
    ("UPDATE an event", "UPDATE audit_events SET event = 'stopped'"),
    ("DELETE an event", "DELETE FROM audit_events"),
    ("move the chain head", "UPDATE audit_head SET seq = 0"),
]
#: What the retention role must never run.
RETENTION_REFUSED = [
    (
        "INSERT an event",
        INSERT_EVENT,
    ),
    ("UPDATE an event", "UPDATE audit_events SET event = 'stopped'"),
    ("move the chain head", "UPDATE audit_head SET seq = 0, hash = 'x'"),
    ("TRUNCATE the events", "TRUNCATE audit_events"),
]


@pytest.fixture
def audit_roles(postgres) -> AuditDatabase:
    """A fresh audit database with the roles of deploy/audit-postgres-roles.sql, migrated by the owner."""
    return provision(postgres, f"roles_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def stored(postgres) -> AuditDatabase:
    """One audit database with the roles, holding a stop's five events appended as the sink role."""
    database = provision(postgres, f"roles_{uuid.uuid4().hex[:12]}")
    life = audit_life()
    batch = [
        parse_entry(f"{int(time.time() * 1000)}-{n}", {FIELD: json.dumps(event).encode()}, Redactor(()))
        for n, event in enumerate(life)
    ]
    engine = audit_engine(database.sink)
    assert ledger.append(engine, batch, time.time()).inserted == len(life)
    engine.dispose()
    return database


def refusal(url: str, statement: str) -> BaseException:
    """Run ``statement`` as the role of ``url``; the error PostgreSQL answered (the test fails if none)."""
    engine = audit_engine(url)
    try:
        with pytest.raises(ProgrammingError) as raised, engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()
    return raised.value.orig


def sink_as(url: str, redis_server, **options) -> AuditSink:
    """An in-process sink writing to ``url`` (stepped by the test)."""
    client = fail_fast(redis_server.client(decode=False, role=Role.AUDIT_SINK))
    return AuditSink(client, audit_engine(url), name="t", block_ms=10, **options)


def drain(sink: AuditSink) -> None:
    """Step ``sink`` until the stream has nothing new for it."""
    while sink.step():
        pass


def test_the_sink_as_its_role_stores_real_stops_and_the_reader_reads_them(
    audit_roles, env, start_worker, producer, call, sandbox_client, tmp_path, redis_server
):
    """Real stops through a worker: the sink as its role stores them all; show, export, verify as reader."""
    start_worker()
    as_sink = {
        **env,
        "RECSTOP_BROKER_URL": redis_server.role_url(Role.AUDIT_SINK),
        "RECSTOP_AUDIT_DB": audit_roles.sink,
    }
    sink = AuditSinkProcess(as_sink, tmp_path / "sink.log").start()
    flaky, *others = (call() for _ in range(4))
    sandbox_client.set_faults([{"kind": "status", "status": 503, "call_uuid": flaky, "times": 1}])
    for call_uuid in (flaky, *others):
        producer.stop_recording(call_uuid)
    for call_uuid in (flaky, *others):
        assert final(producer, call_uuid).state.value == "stopped"
    client = redis_server.client()
    added = int(client.xinfo_stream(keys.AUDIT_STREAM)["entries-added"])
    reader = audit_engine(audit_roles.reader, writer=False)
    wait_for(
        lambda: len(stored_ids(reader)) == added, timeout_s=30, what="every event stored by the sink role"
    )
    sink.stop()
    reader.dispose()
    assert added >= 4 * 3 + 2  # accepted, attempt, stopped each; the flaky one's 503 and its retry
    log = sink.log_text()
    assert "audit_database_unavailable" not in log
    assert "audit_schema_not_ready" not in log
    as_reader = {**env, "RECSTOP_AUDIT_DB": audit_roles.reader}
    shown = cli(as_reader, "audit", "show", flaky, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [row["event"] for row in json.loads(shown.stdout)] == [
        "accepted",
        "attempt",
        "retry_scheduled",
        "attempt",
        "stopped",
    ]
    exported = cli(as_reader, "audit", "export", "--since", "2020-01-01")
    assert exported.returncode == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == added
    verified = cli(as_reader, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert f"{added} row(s) checked" in verified.stdout


REFUSED = (
    [("sink", *case) for case in SINK_REFUSED]
    + [("reader", *case) for case in READER_REFUSED]
    + [("retention", *case) for case in RETENTION_REFUSED]
)


@pytest.mark.parametrize(("role", "what", "statement"), REFUSED, ids=[f"{r}-{w}" for r, w, _ in REFUSED])
def test_each_role_is_refused_what_is_not_its_job(stored, role, what, statement):
    """PostgreSQL refuses each role every change beyond its job (InsufficientPrivilege); the rows stay."""
    refused = refusal(getattr(stored, role), statement)
    assert isinstance(refused, errors.InsufficientPrivilege), (what, refused)
    reader = audit_engine(stored.reader, writer=False)
    verdict = verify(reader)
    reader.dispose()
    assert (verdict.ok, verdict.rows) == (True, 5)


def test_retention_as_its_role_deletes_only_old_rows_and_the_chain_still_verifies(
    audit_roles, redis_server, env, tmp_path
):
    """The sink leaves old rows alone; `recstop audit retention` as its role deletes them; verify holds."""
    now = time.time()
    clock = [now - 10 * DAY_S]
    sink = sink_as(audit_roles.sink, redis_server, clock=lambda: clock[0])
    client = redis_server.client()
    for age_days in (10, 6, 1):  # five events recorded 10, 6 and 1 day(s) ago
        clock[0] = now - age_days * DAY_S
        xadd_events(client, audit_life())
        drain(sink)
    sink.engine.dispose()
    as_sink = {
        **env,
        "RECSTOP_BROKER_URL": redis_server.role_url(Role.AUDIT_SINK),
        "RECSTOP_AUDIT_DB": audit_roles.sink,
        "RECSTOP_AUDIT_RETENTION_DAYS": "5",
    }
    process = AuditSinkProcess(as_sink, tmp_path / "sink.log").start()
    (late,) = xadd_events(client, [audit_event(str(uuid.uuid4()), "accepted")])
    reader = audit_engine(audit_roles.reader, writer=False)
    wait_for(lambda: late in stored_ids(reader), what="the sink process to store one more event")
    process.stop()
    assert len(stored_ids(reader)) == 16  # its maintenance ran before that read, and deleted nothing
    assert "audit_database_unavailable" not in process.log_text()
    as_retention = {**env, "RECSTOP_AUDIT_DB": audit_roles.retention, "RECSTOP_AUDIT_RETENTION_DAYS": "5"}
    done = cli(as_retention, "audit", "retention")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 10 audit event(s) recorded before ")
    assert "the chain now starts at seq 11" in done.stdout
    verdict = verify(reader)
    reader.dispose()
    assert (verdict.ok, verdict.rows, verdict.first_seq, verdict.last_seq) == (True, 6, 11, 16)
    again = cli(as_retention, "audit", "retention")
    assert again.stdout.startswith("deleted 0 audit event(s)")
    refused = cli({**as_sink, "RECSTOP_AUDIT_RETENTION_DAYS": "1"}, "audit", "retention")
    assert refused.returncode == 1
    assert "permission denied" in refused.stderr


def test_the_sink_role_waits_for_the_owner_to_migrate(postgres, redis_server, logs):
    """The sink role may not create the schema: it says so and waits; once the owner migrates, it stores."""
    fresh = provision(postgres, f"roles_{uuid.uuid4().hex[:12]}", migrate=False)
    sink = sink_as(fresh.sink, redis_server, max_backoff_s=0.2)
    added = xadd_events(redis_server.client(), audit_life())
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: any(r["event"] == "audit_schema_not_ready" for r in logs.records()),
            what="the sink to say the schema is not ready",
        )
        line = next(r for r in logs.records() if r["event"] == "audit_schema_not_ready")
        assert "recstop audit migrate" in line["error"]
        assert roles.OWNER.name in line["error"]
        said = migrate_as_owner(fresh)
        assert "audit schema at version 1 (found 0)" in said
        assert (
            "granted their privileges to: recstop_audit_sink, recstop_audit_retention, recstop_audit_reader"
            in said
        )
        reader = audit_engine(fresh.reader, writer=False)
        wait_for(
            lambda: stored_ids(reader) == added, timeout_s=20, what="the events stored after the migration"
        )
        reader.dispose()
    finally:
        stop.set()
        thread.join(10)


def test_the_compose_init_script_sets_each_roles_password_from_the_environment(postgres):
    """postgres-init/audit-role-passwords.sh, run as the postgres image runs it, sets each role's password."""
    name = f"roles_{uuid.uuid4().hex[:12]}"
    provision(postgres, name, migrate=False)
    passwords = {
        f"AUDIT_{role.name.removeprefix('recstop_audit_').upper()}_PASSWORD": uuid.uuid4().hex
        for role in roles.ROLES
    }
    env = {
        **os.environ,
        **passwords,
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": name,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PATH": f"{Path(postgres_binary('psql')).parent}:{os.environ['PATH']}",
    }
    script = ROOT / "deploy" / "postgres-init" / "audit-role-passwords.sh"
    done = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert not any(password in done.stdout + done.stderr for password in passwords.values())
    stored = postgres.psql(
        name, "-At", "-c", "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'recstop_audit_%'"
    )
    hashes = dict(line.split("|", 1) for line in stored.splitlines())
    assert set(hashes) == {role.name for role in roles.ROLES}
    assert all(value.startswith("SCRAM-SHA-256$") for value in hashes.values())
    assert not set(passwords.values()) & set(hashes.values())
