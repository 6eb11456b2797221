"""Scenario 1: SIGKILL a worker's whole process group, again and again, while plain Celery publishes stops.

Two ``celery -A recstop.worker worker`` with the defaults; stops published with ``send_task`` at a steady
rate; the API answers in 100 ms. Each kill takes the worker that has been up longest (so it is
serving) and starts it again at once. A killed worker's in-flight messages come back when a live
one reaps it: consumer timeout plus a heartbeat, then a fetch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

from chaos.kills import Kill, comeback_bound_s, kill, recoveries, settled_after, stopped_after, summary
from chaos.load import Load, new_calls
from chaos.plain import PlainCelery
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import AUTH_ID, Stack
from chaos.verify import deletes_by_call, reconcile
from recstop.worker.state.acl import Role

#: The issue's bound on the 99th percentile of recovery (kill to the DELETE of the last stop held).
RECOVERY_P99_BOUND_S: Final = 10.0
LATENCY_MS: Final = 100


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Kill ``profile.kills`` times during ``profile.kill_stops`` plain-Celery stops; nothing is lost."""
    started = time.monotonic()
    overrides = profile.locks
    with (
        Stack("worker_kill", overrides=overrides, keep_dir=keep_dir) as stack,
        PlainCelery(stack.url(Role.PRODUCER)) as plain,
    ):
        stack.sandbox.client.set_faults([], latency_ms=LATENCY_MS)
        slots = stack.start_workers(2)
        calls = new_calls(profile.kill_stops)
        load = Load(
            plain.sender, calls, rate_per_s=profile.kill_rate_per_s, auth_id_for=lambda _: AUTH_ID
        ).start()
        redis = stack.client()
        kills: list[Kill] = []
        for k in range(profile.kills):
            load.wait_progress(len(calls) * (k + 1) // (profile.kills + 1))
            index = k % len(slots)  # the slot restarted longest ago
            slots[index].wait_ready()
            kills.append(kill(slots[index], redis))
            slots[index] = stack.start_worker(f"w{index}-restart{k + 1}", wait=False)
        sent = load.wait()
        tally = reconcile(
            stack.producer(), stack.sandbox.client, [a.call_uuid for a in sent.accepted], timeout_s=180
        )
        seen = deletes_by_call(stack.sandbox.client)
        bound_s = comeback_bound_s(stack.settings())
        redis.close()
    each = recoveries(kills, seen)
    stats = summary(each)
    p99 = stats["p99"]
    held = [len(k.held) for k in kills]
    stopped, settled = stopped_after(kills, seen), settled_after(kills, tally)
    result = ScenarioResult(
        f"worker SIGKILL (group) x{len(kills)}, plain send_task",
        tally,
        recovery_s=p99,
        recovery_note=f"p99; p50 {stats['p50']} s",
    )
    result.note_overrides(overrides)
    result.figures.update(
        kills=len(kills),
        held_at_each_kill=held,
        recovery_s_each_kill=[round(r, 2) for r in each],
        recovery_s=stats,
        recordings_stopped_s_each_kill=[round(s, 2) for s in stopped],
        settled_s_each_kill=[round(s, 2) for s in settled],
        recovery_p99_bound_s=RECOVERY_P99_BOUND_S,
        comeback_bound_s=bound_s,
        api_latency_ms=LATENCY_MS,
        rate_per_s=profile.kill_rate_per_s,
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("every kill caught stops in flight", all(held), f"held {held}")
    result.check_all_stopped()
    result.check(
        f"recovery p99 <= {RECOVERY_P99_BOUND_S:.0f} s (kill to the last DELETE a held stop needed)",
        p99 is not None and p99 <= RECOVERY_P99_BOUND_S,
        f"p50 {stats['p50']} s, p99 {p99} s, each {[round(r, 1) for r in each]}",
    )
    result.check_duplicates_bounded(sum(held))
    result.elapsed_s = time.monotonic() - started
    return result
