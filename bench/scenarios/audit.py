"""Scenario 9: the audit trail: sink throughput per database, its lag in a burst, ``audit show`` at scale.

``audit show`` runs on a PostgreSQL table of ``audit_show_rows`` events.

Everything runs with the shipped defaults: ``recstop audit sink`` as a process (batches of 500),
the database a PostgreSQL the scenario starts itself (``harness.postgres``; the sink as its role
``recstop_audit_sink``, the database provisioned as docs/audit.md says) or a SQLite file.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from redis import Redis
from sqlalchemy import text

from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids, paced
from bench.stack import BenchStack
from bench.stats import percentile
from harness.auditroles import provision
from harness.auditsink import AuditSinkProcess
from harness.postgres import PostgresServer
from harness.procs import wait_for
from harness.stack import Stack
from recstop.worker.audit.db import audit_engine
from recstop.worker.audit.lag import read_lag
from recstop.worker.audit.query import show
from recstop.worker.audit.schema import events, migrate
from recstop.worker.state import keys
from recstop.worker.state.acl import Role

NAME = "9 audit"
SHOW_TARGET_MS = 50.0
#: Stream entries written per pipeline while filling the stream.
FILL_CHUNK = 1000


def run(report: Report, profile: Profile) -> None:
    """Sink throughput (SQLite, PostgreSQL), lag p99 under a burst, ``audit show`` at scale."""
    with PostgresServer() as postgres:
        for db, url in (("SQLite", None), ("PostgreSQL", provision(postgres, "throughput").sink)):
            rate = sink_throughput(profile.audit_sink_events, url)
            report.add(
                Row(
                    NAME,
                    f"sink throughput to {db}: {profile.audit_sink_events:,} events appended at once, one "
                    "`recstop audit sink` (defaults) until all are committed",
                    "events/s",
                    round(rate, 1),
                    target="faster than the worker appends them (see the burst row)",
                    met=None,
                )
            )
        burst_lag(report, profile, provision(postgres, "burst").sink)
        show_latency(report, profile, postgres.create_database("show"))


def _event(call_uuid: str, name: str) -> dict[str, object]:
    return {
        "event": name,
        "at": round(time.time(), 3),
        "call_uuid": call_uuid,
        "target": "all",
        "task_id": str(uuid.uuid4()),
        "origin": "bench",
        "attempt": 1,
        "http_status": 204,
    }


def sink_throughput(count: int, db_url: str | None) -> float:
    """events/s of one sink process draining ``count`` events appended as fast as Redis takes them."""
    with Stack("audit-sink-rate") as stack:
        env = stack.env_as(Role.AUDIT_SINK) | ({} if db_url is None else {"RECSTOP_AUDIT_DB": db_url})
        sink = AuditSinkProcess(env, stack.directory / "sink.log").start()
        client = stack.client(decode=True)
        try:
            started = time.monotonic()
            for offset in range(0, count, FILL_CHUNK):
                pipe = client.pipeline(transaction=False)
                for _ in range(min(FILL_CHUNK, count - offset)):
                    pipe.xadd(keys.AUDIT_STREAM, {"e": json.dumps(_event(str(uuid.uuid4()), "attempt"))})
                pipe.execute()
            wait_for(
                lambda: _committed(client, count),
                timeout_s=max(60.0, count / 200),
                interval_s=0.05,
                what="the sink to commit every event",
            )
            return count / (time.monotonic() - started)
        finally:
            sink.stop()
            client.close()


def _committed(client: Redis, count: int) -> bool:
    lag = read_lag(client)
    return (
        lag.group
        and lag.behind == 0
        and int(client.xinfo_stream(keys.AUDIT_STREAM)["entries-added"]) >= count
    )


def burst_lag(report: Report, profile: Profile, db_url: str) -> None:
    """The oldest uncommitted event's age, sampled every 100 ms while stops arrive at 1,000/s."""
    n = int(profile.audit_burst_rps * profile.audit_burst_s)
    with BenchStack("audit-burst", latency_ms=profile.burst_latency_ms) as stack:
        stack.start_workers(profile.burst_processes)
        sink = AuditSinkProcess(
            {**stack.env_as(Role.AUDIT_SINK), "RECSTOP_AUDIT_DB": db_url}, stack.directory / "sink.log"
        ).start()
        client = stack.client(decode=True)
        samples: list[float] = []
        done = threading.Event()

        failures: list[BaseException] = []

        def sample() -> None:
            try:
                while not done.is_set():
                    samples.append(read_lag(client).oldest_unacked_age_s)
                    done.wait(0.1)
            except BaseException as exc:  # reported by the scenario, not lost on a thread
                failures.append(exc)
                raise

        sampler = threading.Thread(target=sample, daemon=True)
        producer = stack.producer()
        ids = call_uuids(n)
        try:
            sampler.start()
            started = time.monotonic()

            chunk = max(1, int(profile.audit_burst_rps / 10))  # ten bulk enqueues a second

            def enqueue(i: int) -> None:
                producer.stop_recordings(ids[i * chunk : (i + 1) * chunk])

            paced(-(-n // chunk), 10.0, enqueue)
            sent_s = time.monotonic() - started
            complete = stack.feed.wait_ok(set(ids), timeout_s=max(120.0, n / 50))
            wait_for(lambda: read_lag(client).behind == 0, timeout_s=120, what="the sink to catch up")
            done.set()
            sampler.join(5)
            if failures:
                raise RuntimeError("the lag sampler failed") from failures[0]
        finally:
            done.set()
            sink.stop()
            client.close()
    p99 = percentile(samples, 99) if samples else 0.0
    report.add(
        Row(
            NAME,
            f"sink lag during a burst: {n:,} stops enqueued at {profile.audit_burst_rps:g}/s "
            "(10 bulk calls a second) "
            f"(achieved {n / sent_s:,.0f}/s), {profile.burst_processes} workers, PostgreSQL; age of the "
            "oldest uncommitted event, p99 of 100 ms samples",
            "s",
            round(p99, 2),
            target="<= 5 s",
            met=complete and p99 <= 5.0,
            higher_is_better=False,
            note=f"max {max(samples, default=0.0):.2f} s over {len(samples)} samples",
        )
    )


def show_latency(report: Report, profile: Profile, db_url: str) -> None:
    """``audit show`` (the query the CLI runs) on random calls of a table of ``audit_show_rows`` rows."""
    rows = profile.audit_show_rows
    engine = audit_engine(db_url)
    try:
        migrate(engine)
        fill_started = time.monotonic()
        _fill(engine, rows)
        fill_s = time.monotonic() - fill_started
        # Call k holds events 3k-3..3k-1: calls 2 .. rows/3 - 1 have all three.
        calls = [
            str(uuid.UUID(int=(i * 7919) % (rows // 3 - 2) + 2)) for i in range(profile.audit_show_queries)
        ]
        timings = []
        for call_uuid in calls:
            started = time.perf_counter()
            found = list(show(engine, call_uuid))
            timings.append((time.perf_counter() - started) * 1000)
            assert len(found) == 3, (call_uuid, found)
    finally:
        engine.dispose()
    p50, p99 = percentile(timings, 50), percentile(timings, 99)
    report.add(
        Row(
            NAME,
            f"`recstop audit show` query, PostgreSQL table of {rows:,} events (3 per call), "
            f"{len(calls)} random calls, p99",
            "ms",
            round(p99, 2),
            target=f"<= {SHOW_TARGET_MS:g} ms",
            met=p99 <= SHOW_TARGET_MS,
            higher_is_better=False,
            note=f"p50 {p50:.2f} ms; table filled in {fill_s:.0f} s",
        )
    )


def _fill(engine: object, rows: int) -> None:
    """``rows`` generated events, 3 per call (call k = UUID k): indexes dropped, filled, rebuilt."""
    chunk = 1_000_000
    with engine.begin() as db:  # type: ignore[attr-defined]
        for index in events.indexes:
            index.drop(db)
        for start in range(1, rows + 1, chunk):
            db.execute(
                text(
                    "INSERT INTO audit_events (seq, stream_id, recorded_at, event, at, call_uuid, target, "
                    "task_id, attempt, http_status, prev_hash, hash) "
                    "SELECT g, g || '-0', 1.7e9 + g * 0.001, "
                    "(ARRAY['accepted','attempt','stopped'])[1 + g % 3], "
                    "1.7e9 + g * 0.001, lpad(to_hex(g / 3 + 1), 32, '0')::uuid::text, 'all', md5(g::text), "
                    "1, 204, repeat('0', 64), repeat('0', 64) "
                    "FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g"
                ),
                {"start": start, "stop": min(rows, start + chunk - 1)},
            )
        for index in events.indexes:
            index.create(db)
        db.execute(text("ANALYZE audit_events"))
