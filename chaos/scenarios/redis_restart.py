"""Scenario 3: Redis crashes (SIGKILL) during load and comes back from its AOF."""

from __future__ import annotations

import time
from pathlib import Path

from chaos.inflight import wait_drained
from chaos.load import Load, new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.verify import deletes_by_call, reconcile

#: How long Redis stays down: long enough for producers to be refused and workers to notice.
OUTAGE_S = 2.0
RECONNECT_BOUND_S = 10.0
#: How long the lanes and in-flight lists may take to empty once every stop is terminal (acks,
#: duplicate messages of restored writes being skipped).
DRAIN_S = 15.0


def run(profile: Profile, keep_dir: Path | None, appendfsync: str) -> ScenarioResult:
    """Crash Redis when 40% of the stops are sent; restart it on the same port and directory."""
    started = time.monotonic()
    overrides = profile.locks
    with Stack(
        f"redis_restart_{appendfsync}", appendfsync=appendfsync, overrides=overrides, keep_dir=keep_dir
    ) as stack:
        stack.sandbox.client.set_faults([], latency_ms=20)
        workers = stack.start_workers(2)
        calls = new_calls(profile.restart_stops)
        load = Load(stack.producer, calls, rate_per_s=profile.rate_per_s / 2, give_up_s=120).start()
        load.wait_progress(len(calls) * 2 // 5)
        stack.redis.crash()
        crashed_at = time.time()
        time.sleep(OUTAGE_S)  # the outage itself: what the scenario injects, not a synchronisation
        # From the moment the server is started again: its producers may be accepted before start()
        # has seen it answer (a backlog of retries flushes within milliseconds).
        up_at = time.time()
        stack.redis.start()
        sent = load.wait(timeout_s=180)
        accepted_at = {a.call_uuid: a.accepted_at for a in sent.accepted}
        tally = reconcile(stack.producer(), stack.sandbox.client, accepted_at, timeout_s=120)
        after = [a.accepted_at for a in sent.accepted if a.accepted_at >= up_at]
        deletes = [e["time"] for entries in deletes_by_call(stack.sandbox.client).values() for e in entries]
        worker_deletes_after = [t for t in deletes if t >= up_at]
        alive = all(w.alive for w in workers)
        redis = stack.redis.client()
        leftovers = wait_drained(redis, timeout_s=DRAIN_S)
        redis.close()
    producer_s = min(after) - up_at if after else None
    worker_s = min(worker_deletes_after) - up_at if worker_deletes_after else None
    last_s = max(r.finished_at or 0.0 for r in tally.records.values()) - up_at if tally.records else None
    result = ScenarioResult(f"Redis restart (appendfsync {appendfsync})", tally, recovery_s=last_s)
    result.note_overrides(overrides)
    result.figures.update(
        outage_s=round(up_at - crashed_at, 2),
        refused_enqueues=sent.refused,
        producer_reconnect_s=None if producer_s is None else round(producer_s, 2),
        worker_reconnect_s=None if worker_s is None else round(worker_s, 2),
        all_done_after_restart_s=None if last_s is None else round(last_s, 1),
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("producers were refused while Redis was down", sent.refused > 0, f"{sent.refused} refusals")
    result.check(
        "producer reconnected by itself",
        producer_s is not None and producer_s <= RECONNECT_BOUND_S,
        f"first enqueue {producer_s} s after restart",
    )
    result.check(
        "workers reconnected by themselves",
        worker_s is not None and worker_s <= RECONNECT_BOUND_S,
        f"first DELETE {worker_s} s after restart",
    )
    result.check("worker processes survived", alive, "both alive")
    result.check("lanes and in-flight lists drained", leftovers == 0, f"{leftovers} left")
    result.elapsed_s = time.monotonic() - started
    return result


def run_everysec(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Redis restart with ``appendfsync everysec``."""
    return run(profile, keep_dir, "everysec")


def run_always(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Redis restart with ``appendfsync always``."""
    return run(profile, keep_dir, "always")
