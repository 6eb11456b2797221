"""The audit sink on SQLite and a private PostgreSQL: exactly once through two sinks, kills and restarts."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from support import RedisServer, audit_event, audit_life, stored_ids, wait_for, xadd_events

from harness.auditsink import AuditSinkProcess
from harness.postgres import PostgresServer
from recstop.worker.audit import ledger
from recstop.worker.audit.db import audit_engine
from recstop.worker.audit.event import GONE_REASON
from recstop.worker.audit.lag import read_lag
from recstop.worker.audit.schema import digests, events, migrate
from recstop.worker.audit.sink import AuditSink, fail_fast
from recstop.worker.audit.verify import verify
from recstop.worker.config.settings import AuditSettings, HealthThresholds
from recstop.worker.observability.health import check_health
from recstop.worker.observability.metrics import RecstopCollector
from recstop.worker.state import keys
from recstop.worker.state.acl import Role

#: The sink's settings as shipped (a test overrides what it measures).
DEFAULTS = {"retention_days": AuditSettings().retention_days}

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("audit")]


class Sinks:
    """In-process sinks on threads (``run``), stopped at the end of the test."""

    def __init__(self, redis_server: RedisServer, db_url: str) -> None:
        self.redis_server = redis_server
        self.db_url = db_url
        self.running: list[tuple[threading.Event, threading.Thread]] = []

    def make(self, name: str, **options) -> AuditSink:
        options = {"block_ms": 100, "claim_idle_s": 0.5, "max_backoff_s": 0.5, **options}
        client = fail_fast(self.redis_server.client(decode=False, role=Role.AUDIT_SINK))
        return AuditSink(client, audit_engine(self.db_url), name=name, **{**DEFAULTS, **options})

    def start(self, name: str, **options) -> AuditSink:
        sink = self.make(name, **options)
        stop = threading.Event()
        thread = threading.Thread(target=sink.run, args=(stop,), name=f"sink-{name}", daemon=True)
        thread.start()
        self.running.append((stop, thread))
        return sink

    def stop(self) -> None:
        for stop, _ in self.running:
            stop.set()
        for _, thread in self.running:
            thread.join(10)


@pytest.fixture
def sinks(redis_server, audit_db):
    """Start in-process sinks on this test's Redis and audit database."""
    made = Sinks(redis_server, audit_db)
    yield made
    made.stop()


@pytest.fixture
def reader(audit_db):
    """A read-only engine on the test's audit database."""
    engine = audit_engine(audit_db, writer=False)
    yield engine
    engine.dispose()


def count_stored(engine) -> int:
    try:
        return len(stored_ids(engine))
    except Exception:  # noqa: BLE001 - the sink has not created the table yet
        return 0


def test_two_sinks_at_once_store_every_event_exactly_once(sinks, redis_server, reader):
    """Two sinks read one stream together: 1,500 events are stored once each, chained; the stream empties."""
    client = redis_server.client()
    sinks.start("s1", batch=40)
    sinks.start("s2", batch=40)
    added = []
    for _ in range(30):
        added += xadd_events(client, [audit_event(str(uuid.uuid4()), "accepted") for _ in range(50)])
    wait_for(lambda: count_stored(reader) == len(added), timeout_s=30, what="every event stored")
    ids = stored_ids(reader)
    assert sorted(ids) == sorted(added)
    assert len(set(ids)) == len(ids) == 1500
    assert verify(reader).ok
    wait_for(lambda: client.xlen(keys.AUDIT_STREAM) == 0, what="the stream trimmed below what is committed")
    lag = read_lag(client)
    assert (lag.pending, lag.undelivered, lag.behind) == (0, 0, 0)


def test_lag_is_read_while_sinks_commit_without_an_error(sinks, redis_server, reader):
    """read_lag (metrics, health) races sinks acking between its reads: it never fails nor goes negative."""
    client = redis_server.client()
    sinks.start("busy", batch=5)
    samples = []
    for _ in range(60):
        xadd_events(client, [audit_event(str(uuid.uuid4()), "attempt") for _ in range(10)])
        for _ in range(5):
            lag = read_lag(client)
            samples.append(lag)
            assert lag.pending >= 0
            assert lag.oldest_unacked_age_s >= 0
    wait_for(lambda: count_stored(reader) == 600, timeout_s=30, what="every event stored")
    assert any(lag.behind for lag in samples)  # it did read while the sink was behind


def test_trim_keeps_what_no_sink_committed_and_a_dead_sinks_entries_are_claimed(sinks, redis_server, reader):
    """A sink that read and died leaves its entries pending: never trimmed; another sink claims them."""
    client = redis_server.client()
    dead = sinks.make("dead")
    dead.prepare()
    first = xadd_events(client, [audit_event(str(uuid.uuid4()), "accepted") for _ in range(10)])
    assert [i for i, _ in dead.stream.new()] == first  # read, never committed: then the sink "dies"
    live = sinks.make("live", claim_idle_s=30)  # does not claim yet
    second = xadd_events(client, [audit_event(str(uuid.uuid4()), "accepted") for _ in range(10)])
    while live.step():
        pass
    assert sorted(stored_ids(reader)) == sorted(second)
    # MINID trims a prefix only: the committed entries after the pending ones wait with them
    assert [i for i, _ in client.xrange(keys.AUDIT_STREAM)] == first + second
    lag = read_lag(client)
    assert (lag.pending, lag.undelivered, lag.behind) == (10, 0, 10)
    assert lag.oldest_unacked_age_s >= 0
    claimer = sinks.make("claimer", claim_idle_s=0.2)
    wait_for(lambda: claimer.step() or count_stored(reader) == 20, what="the dead sink's entries claimed")
    assert sorted(stored_ids(reader)) == sorted(first + second)
    assert client.xlen(keys.AUDIT_STREAM) == 0
    assert verify(reader).ok


def test_an_entry_trimmed_while_pending_is_recorded_as_gone(sinks, redis_server, reader):
    """A pending entry the producers' bound trimmed away is still a row: event invalid, reason gone."""
    client = redis_server.client()
    dead = sinks.make("dead")
    dead.prepare()
    (lost,) = xadd_events(client, [audit_event(str(uuid.uuid4()), "accepted")])
    dead.stream.new()
    client.xtrim(keys.AUDIT_STREAM, maxlen=0)  # what XTRIM MAXLEN in a script does to the oldest
    claimer = sinks.make("claimer", claim_idle_s=0.1)
    wait_for(lambda: claimer.step() or count_stored(reader) == 1, what="the gone entry recorded")
    with reader.connect() as connection:
        row = connection.execute(select(events).where(events.c.stream_id == lost)).mappings().one()
    assert (row["event"], row["reason"], row["raw"]) == ("invalid", GONE_REASON, "")


def test_a_redis_restart_loses_and_doubles_nothing(tmp_path, audit_db, reader, logs):
    """Redis is SIGKILLed under load (AOF always), restarted: every event stored once, the sink recovers."""
    server = RedisServer(tmp_path / "aof", appendonly=True, appendfsync="always").start()
    made = Sinks(server, audit_db)
    try:
        made.start("s1", batch=25)
        client = server.client()
        added = xadd_events(client, [audit_event(str(uuid.uuid4()), "accepted") for _ in range(300)])
        wait_for(lambda: count_stored(reader) > 0, timeout_s=20, what="the sink to start storing")
        added += xadd_events(client, [audit_event(str(uuid.uuid4()), "attempt") for _ in range(300)])
        server.crash()

        def logged(name: str) -> bool:
            return any(record["event"] == name for record in logs.records())

        wait_for(lambda: logged("audit_redis_unavailable"), timeout_s=30, what="the outage logged")
        server.start()
        client = server.client()
        added += xadd_events(client, [audit_event(str(uuid.uuid4()), "stopped") for _ in range(300)])
        wait_for(
            lambda: count_stored(reader) == 900, timeout_s=40, what="every event stored after the restart"
        )
        ids = stored_ids(reader)
        assert sorted(ids) == sorted(added)
        assert len(set(ids)) == 900
        assert verify(reader).ok
        assert logged("audit_sink_recovered")
    finally:
        made.stop()
        server.stop()


def _sink_process(redis_url: str, audit_db: str, log_path) -> AuditSinkProcess:
    env = {"RECSTOP_BROKER_URL": redis_url, "RECSTOP_AUDIT_DB": audit_db}
    return AuditSinkProcess(env, log_path, args=["--batch", "50", "--claim-idle-s", "1"]).start(wait=False)


def test_sigkill_of_a_sink_process_under_load_then_restart(redis_server, audit_db, reader, tmp_path):
    """`recstop audit sink` is SIGKILLed while events pour in; a new one finishes: none missing or doubled."""
    client = redis_server.client()
    added: list[str] = []
    done = threading.Event()

    def load() -> None:
        for _ in range(100):  # 2,000 events, about 20 per 5 ms
            added.extend(xadd_events(client, [audit_event(str(uuid.uuid4()), "attempt") for _ in range(20)]))
            time.sleep(0.005)  # pacing the producer, not waiting on anything
        done.set()

    log_path = tmp_path / "sink.log"
    first = _sink_process(redis_server.role_url(Role.AUDIT_SINK), audit_db, log_path)
    second = None
    producer = threading.Thread(target=load, daemon=True)
    try:
        producer.start()
        wait_for(lambda: count_stored(reader) >= 200, timeout_s=30, what=log_path.read_text)
        first.kill()
        killed_at = count_stored(reader)
        second = _sink_process(redis_server.role_url(Role.AUDIT_SINK), audit_db, log_path)
        assert done.wait(30)
        wait_for(
            lambda: count_stored(reader) == 2000, timeout_s=30, what=lambda: log_path.read_text()[-3000:]
        )
        # The running sink trims what it committed (a stopped one cannot: wait before stopping it).
        wait_for(lambda: client.xlen(keys.AUDIT_STREAM) == 0, timeout_s=30, what="the stream trimmed")
    finally:
        first.kill()
        if second is not None:
            second.stop()
    ids = stored_ids(reader)
    assert killed_at < 2000
    assert sorted(ids) == sorted(added)
    assert len(set(ids)) == 2000
    assert verify(reader).ok


def _epoch(text_: str) -> float:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC).timestamp()


def test_daily_digests_and_retention(sinks, redis_server, reader, logs):
    """Each finished day logs and stores its last hash; retention deletes a prefix and verify still holds."""
    clock = [_epoch("2026-01-01T12:00:00")]
    sink = sinks.make("s1", clock=lambda: clock[0], retention_days=2, retention_every_s=0, block_ms=10)
    client = redis_server.client()

    def store(day: str) -> None:
        clock[0] = _epoch(f"{day}T12:00:00")
        xadd_events(client, audit_life())
        while sink.step():
            pass
        sink.step()  # idle: maintenance (day close, retention)

    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        store(day)
    digest_lines = [r for r in logs.records() if r["event"] == "audit_digest"]
    assert [(r["day"], r["first_seq"], r["last_seq"]) for r in digest_lines] == [
        ("2026-01-01", 1, 5),
        ("2026-01-02", 6, 10),
    ]
    with reader.connect() as connection:
        stored = {row.day: row.last_hash for row in connection.execute(select(digests))}
        hash_10 = connection.scalar(select(events.c.hash).where(events.c.seq == 10))
    assert stored["2026-01-02"] == digest_lines[1]["last_hash"] == hash_10
    assert verify(reader).rows == 15
    clock[0] = _epoch("2026-01-05T06:00:00")  # two days kept: the rows recorded on Jan 1 and 2 go
    sink.step()
    verdict = verify(reader)
    assert (verdict.ok, verdict.rows, verdict.first_seq, verdict.last_seq) == (True, 5, 11, 15)
    assert any(r["event"] == "audit_retention" and r["deleted"] == 10 for r in logs.records())


def test_lag_and_drops_show_in_health_and_metrics(redis_server):
    """Undelivered events and drops show in `recstop health` and the exporter, failing only past limits."""
    client = redis_server.client()
    xadd_events(client, [audit_event(str(uuid.uuid4()), "accepted") for _ in range(7)])
    client.hincrby(keys.METRICS, "audit:dropped", 3)
    (audit,) = [c for c in check_health(client, HealthThresholds()).checks if c.name == "audit"]
    assert audit.ok
    assert (audit.data["behind"], audit.data["dropped"], audit.data["group"]) == (7, 3, False)
    assert "3 dropped unread" in audit.detail
    strict = HealthThresholds(max_audit_dropped=2, max_audit_age_s=3600)
    (audit,) = [c for c in check_health(client, strict).checks if c.name == "audit"]
    assert not audit.ok
    assert "gap" in audit.detail
    families = {f.name: f for f in RecstopCollector(client, max_heartbeat_age_s=10).collect()}
    assert families["recstop_audit_lag_events"].samples[0].value == 7
    assert families["recstop_audit_dropped"].samples[0].value == 3
    assert families["recstop_audit_oldest_unacked_age_seconds"].samples[0].value >= 0


def test_the_sink_waits_out_a_database_outage(redis_server, logs):
    """No PostgreSQL at the URL: the sink logs and backs off; once one starts there, all is stored once."""
    server = PostgresServer()
    url = server.url("postgres")
    made = Sinks(redis_server, url)
    try:
        made.start("s1")
        added = xadd_events(redis_server.client(), audit_life() + audit_life())
        wait_for(
            lambda: any(r["event"] == "audit_database_unavailable" for r in logs.records()),
            what="the outage logged",
        )
        server.start()
        engine = audit_engine(url, writer=False)
        wait_for(lambda: count_stored(engine) == 10, timeout_s=40, what="events stored after the outage")
        assert stored_ids(engine) == added
        engine.dispose()
    finally:
        made.stop()
        server.stop()


def test_schema_is_migrated_once_and_show_uses_its_index(audit_db):
    """The schema is created once (version 1) and `audit show` reads a call's rows off its index, in order."""
    engine = audit_engine(audit_db)
    assert migrate(engine) == 0
    assert migrate(engine) == 1
    ledger.append(engine, [], time.time())
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            connection.scalars(
                text("EXPLAIN SELECT * FROM audit_events WHERE call_uuid = 'x' ORDER BY at, seq")
            )
        )
    assert "ix_audit_events_call" in plan
    assert "Sort" not in plan


def test_the_sink_prunes_only_when_started_with_retention(sinks, redis_server, reader, tmp_path):
    """`recstop audit sink` keeps old rows by default; with --retention it deletes them (SQLite, one user)."""
    now = time.time()
    clock = [now - 10 * 86400]
    sink = sinks.make("old", clock=lambda: clock[0], retention_days=None, block_ms=10)
    xadd_events(redis_server.client(), audit_life())  # recorded 10 days ago
    while sink.step():
        pass
    env = {
        "RECSTOP_BROKER_URL": redis_server.url,
        "RECSTOP_AUDIT_DB": sinks.db_url,
        "RECSTOP_AUDIT_RETENTION_DAYS": "5",
    }
    for args, kept in (([], 6), (["--retention"], 2)):
        process = AuditSinkProcess(env, tmp_path / "sink.log", args=args).start()
        (late,) = xadd_events(redis_server.client(), [audit_event(str(uuid.uuid4()), "accepted")])
        wait_for(lambda late=late: late in stored_ids(reader), what="the sink process to store an event")
        process.stop()
        assert len(stored_ids(reader)) == kept  # maintenance runs before each read of new entries
    assert verify(reader).ok
