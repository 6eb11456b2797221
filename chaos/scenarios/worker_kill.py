"""Scenario 1: SIGKILL a worker process several times during a load of stops."""

from __future__ import annotations

import time
from pathlib import Path

from chaos.load import Load, new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import BASE_ENV, Stack
from chaos.verify import held_recovery_s, reconcile, republished, unacked_task_ids

#: When a killed worker's messages come back: kombu restores unacked messages older than the
#: visibility timeout (checked every ``unacked_restore_interval``), and a key whose lock the dead
#: worker held runs once the lock expires (connect + read timeout + 10 s).
VISIBILITY_TIMEOUT_S = int(BASE_ENV["RECSTOP_VISIBILITY_TIMEOUT_S"])
LOCK_TTL_S = float(BASE_ENV["RECSTOP_CONNECT_TIMEOUT_S"]) + float(BASE_ENV["RECSTOP_READ_TIMEOUT_S"]) + 10
RECOVERY_BOUND_S = max(VISIBILITY_TIMEOUT_S, LOCK_TTL_S) + max(1, VISIBILITY_TIMEOUT_S // 4) + 5
#: A message popped from the queue by a worker killed before kombu recorded it as unacked is
#: nowhere in Redis; the key's watchdog publishes it again after this long.
WATCHDOG_S = 2 * VISIBILITY_TIMEOUT_S + LOCK_TTL_S


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Kill -9 the victim worker ``profile.kills`` times while a survivor keeps serving."""
    started = time.monotonic()
    with Stack("worker_kill", keep_dir=keep_dir) as stack:
        stack.sandbox.client.set_faults([], latency_ms=50)
        stack.start_worker("survivor")
        victim = stack.start_worker("victim-1")
        concurrency = int(stack.env["RECSTOP_CONCURRENCY"])
        calls = new_calls(profile.kill_stops)
        load = Load(stack.producer, calls, rate_per_s=profile.rate_per_s).start()
        kills: list[tuple[float, set[str]]] = []
        redis = stack.redis.client()
        for k in range(profile.kills):
            load.wait_progress(len(calls) * (k + 1) // (profile.kills + 1))
            held = unacked_task_ids(redis)
            victim.kill()
            kills.append((time.time(), held))
            victim = stack.start_worker(f"victim-{k + 2}")
        sent = load.wait()
        tally = reconcile(
            stack.producer(), stack.sandbox.client, [a.call_uuid for a in sent.accepted], timeout_s=180
        )
        watchdog = sum(republished(w.log_records()) for w in stack.workers)
    recoveries = [held_recovery_s(tally, held, at) for at, held in kills]
    result = ScenarioResult(f"worker SIGKILL x{profile.kills}", tally, recovery_s=max(recoveries))
    result.figures.update(
        kills=len(kills),
        unacked_at_each_kill=[len(held) for _, held in kills],
        republished_by_watchdog=watchdog,
        watchdog_s=WATCHDOG_S,
        recovery_s_each_kill=[round(r, 1) for r in recoveries],
        recovery_bound_s=RECOVERY_BOUND_S,
        visibility_timeout_s=VISIBILITY_TIMEOUT_S,
        refused_enqueues=sent.refused,
    )
    result.check_accepted(len(sent.accepted), len(calls))
    bound = profile.kills * concurrency
    result.check(
        "duplicate DELETEs bounded by what was in flight",
        tally.duplicate_deletes <= bound,
        f"{tally.duplicate_deletes} <= {profile.kills} kills x concurrency {concurrency}",
    )
    result.check(
        "the stops the killed worker held came back within the documented bound",
        max(recoveries) <= RECOVERY_BOUND_S,
        f"{max(recoveries):.1f} s <= {RECOVERY_BOUND_S:.0f} s",
    )
    result.elapsed_s = time.monotonic() - started
    return result
