"""Scenario: SIGKILL the audit sink again and again while stops pour in; the trail is exact.

Two workers with the defaults stop ``audit_stops`` calls published with plain ``send_task``;
``recstop audit sink`` (defaults) writes the outbox into its own PostgreSQL as the role
``recstop_audit_sink`` (insert and read only; the roles created as docs/audit.md says, the schema
migrated by ``recstop_audit_owner``), and the trail is read as ``recstop_audit_reader``. At each kill the sink
is SIGKILLed mid-batch and a new one started at once; the new one claims the dead one's pending
entries once they have been idle ``--claim-idle-s`` (5 s by default). At the end every entry the
scripts ever appended (``entries-added`` of ``XINFO STREAM``) must be in the database exactly once,
each stopped call's life must read accepted, attempt(s), stopped with one attempt per DELETE the
API saw, and the hash chain must verify.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Final

from sqlalchemy import func, select

from chaos.load import Load, new_calls
from chaos.overrides import Overrides
from chaos.plain import PlainCelery
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import AUTH_ID, Stack
from chaos.verify import deletes_by_call, reconcile, settled
from harness.auditroles import AuditDatabase, provision
from harness.postgres import PostgresServer
from harness.procs import wait_for
from recstop.worker.audit.db import audit_engine
from recstop.worker.audit.lag import read_lag
from recstop.worker.audit.schema import events
from recstop.worker.audit.verify import verify
from recstop.worker.state import keys
from recstop.worker.state.acl import Role

LATENCY_MS: Final = 20
#: How long the last sink may take to commit everything once the stops are done (claiming a killed
#: sink's entries waits out the claim idle time first).
CATCH_UP_S: Final = 60.0


def _database(postgres: PostgresServer) -> tuple[AuditDatabase, Overrides]:
    """The scenario's audit database, provisioned with its roles; the sink's URL as the override."""
    database = provision(postgres, "audit")
    why = "the audit database: PostgreSQL, as in production, the sink as its least-privilege role"
    return database, Overrides({"RECSTOP_AUDIT_DB": database.sink}, why)


def _refusals(sink_log: str) -> list[str]:
    """The sink's log lines saying the database failed it (a refusal of its role would be one)."""
    return [line for line in sink_log.splitlines() if "audit_database_unavailable" in line]


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Kill the sink ``profile.audit_kills`` times during ``profile.audit_stops`` stops."""
    started = time.monotonic()
    with PostgresServer() as postgres:
        database, overrides = _database(postgres)
        with (
            Stack("audit_sink_kill", overrides=overrides, keep_dir=keep_dir) as stack,
            PlainCelery(stack.url(Role.PRODUCER)) as plain,
        ):
            stack.sandbox.client.set_faults([], latency_ms=LATENCY_MS)
            stack.start_workers(2)
            sink = stack.start_audit_sink()
            calls = new_calls(profile.audit_stops)
            load = Load(
                plain.sender, calls, rate_per_s=profile.rate_per_s, auth_id_for=lambda _: AUTH_ID
            ).start()
            redis = stack.client(decode=True)
            killed_at: list[int] = []
            for k in range(profile.audit_kills):
                load.wait_progress(len(calls) * (k + 1) // (profile.audit_kills + 1))
                killed_at.append(int(redis.xinfo_stream(keys.AUDIT_STREAM)["entries-added"]))
                sink.kill()
                sink = stack.start_audit_sink()
            sent = load.wait()
            tally = reconcile(
                stack.producer(), stack.sandbox.client, [a.call_uuid for a in sent.accepted], timeout_s=180
            )
            # A stop's confirmation (its own audit event) follows the stop: the trail is complete
            # once every confirmation has settled, not when the last stop has.
            confirming = [c for c, r in tally.records.items() if r.state.value == "stopped"]
            settled(stack.producer(), confirming, timeout_s=stack.settings().confirm.deadline_s + CATCH_UP_S)
            wait_for(lambda: read_lag(redis).behind == 0, timeout_s=CATCH_UP_S, what="the sink to catch up")
            added = int(redis.xinfo_stream(keys.AUDIT_STREAM)["entries-added"])
            dropped = read_lag(redis).dropped
            seen = deletes_by_call(stack.sandbox.client)
            refused = _refusals(sink.log_text())
            redis.close()
        engine = audit_engine(database.reader, writer=False)
        try:
            with engine.connect() as db:
                rows = db.execute(select(events.c.call_uuid, events.c.event)).all()
                distinct = db.scalar(select(func.count(func.distinct(events.c.stream_id))))
            chain = verify(engine)
        finally:
            engine.dispose()
    lives: dict[str, Counter[str]] = defaultdict(Counter)
    for call_uuid, event in rows:
        lives[str(call_uuid)][str(event)] += 1
    stopped = [c for c, r in tally.records.items() if r.state.value in {"stopped", "already_stopped"}]
    wrong = [
        c
        for c in stopped
        if lives[c.lower()]["accepted"] != 1
        or lives[c.lower()]["stopped"] + lives[c.lower()]["already_stopped"] != 1
        or lives[c.lower()]["attempt"] != len(seen.get(c, []))
    ]
    result = ScenarioResult(f"audit sink SIGKILL x{profile.audit_kills} (PostgreSQL)", tally)
    result.note_overrides(overrides)
    result.figures.update(
        events_appended=added,
        events_stored=len(rows),
        distinct_stream_ids=distinct,
        dropped=dropped,
        entries_added_at_each_kill=killed_at,
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check_all_stopped()
    result.check(
        "0 events missing", len(rows) >= added and dropped == 0, f"{added} appended, {len(rows)} stored"
    )
    result.check(
        "0 events doubled", len(rows) == distinct == added, f"{len(rows)} rows, {distinct} distinct ids"
    )
    result.check(
        "each stopped call: 1 accepted, 1 stopped, 1 attempt per DELETE the API saw",
        not wrong,
        f"{len(wrong)} wrong, e.g. {[(c, dict(lives[c.lower()])) for c in wrong[:3]]}",
    )
    result.check("the hash chain verifies", chain.ok, str(chain.broken))
    result.check(
        "the sink never needed more than its role may", not refused, refused[0][:300] if refused else ""
    )
    result.elapsed_s = time.monotonic() - started
    return result
