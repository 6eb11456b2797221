"""Scenario 1b: a kill loop, SIGKILLs of worker process groups at random (seeded) moments under load.

Three workers with the defaults; stops published with plain Celery ``send_task``. At each kill
moment (a seeded random point of the load) a random serving worker loses its whole process group
and is started again at once; when every worker is still starting, the kill waits for the first
to serve. Kills land on stops already handed back once, and on the worker that was reaping.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Final

from chaos.kills import Kill, kill, recoveries, stopped_after, summary
from chaos.load import Load, new_calls
from chaos.plain import PlainCelery
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import AUTH_ID, Stack
from chaos.verify import deletes_by_call, reconcile
from harness.procs import WorkerProcess, wait_for
from harness.stack import READY_TIMEOUT_S
from recstop.worker.state.acl import Role

WORKERS: Final = 3
SEED: Final = 20240611
LATENCY_MS: Final = 100


def _serving(worker: WorkerProcess) -> bool:
    return worker.alive and "worker_ready" in worker.log_text()


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """``profile.loop_kills`` SIGKILLs at seeded random moments during ``profile.loop_stops`` stops."""
    started = time.monotonic()
    rng = random.Random(SEED)
    overrides = profile.locks
    with (
        Stack("kill_loop", overrides=overrides, keep_dir=keep_dir) as stack,
        PlainCelery(stack.url(Role.PRODUCER)) as plain,
    ):
        stack.sandbox.client.set_faults([], latency_ms=LATENCY_MS)
        slots = stack.start_workers(WORKERS)
        calls = new_calls(profile.loop_stops)
        moments = sorted(rng.sample(range(len(calls) // 20, len(calls) * 19 // 20), profile.loop_kills))
        load = Load(
            plain.sender, calls, rate_per_s=profile.loop_rate_per_s, auth_id_for=lambda _: AUTH_ID
        ).start()
        redis = stack.client()
        kills: list[Kill] = []
        delayed = 0
        for n, moment in enumerate(moments, start=1):
            load.wait_progress(moment)
            delayed += not any(_serving(w) for w in slots)
            serving: list[int] = wait_for(
                lambda: [i for i, w in enumerate(slots) if _serving(w)],
                timeout_s=READY_TIMEOUT_S,
                what="a worker that serves",
            )
            index = rng.choice(serving)
            kills.append(kill(slots[index], redis))
            slots[index] = stack.start_worker(f"w{index}-kill{n}", wait=False)
        sent = load.wait()
        tally = reconcile(
            stack.producer(), stack.sandbox.client, [a.call_uuid for a in sent.accepted], timeout_s=180
        )
        seen = deletes_by_call(stack.sandbox.client)
        redis.close()
    each = recoveries(kills, seen)
    stats = summary(each)
    held = [len(k.held) for k in kills]
    result = ScenarioResult(
        f"kill loop: {len(kills)} SIGKILLs at random, {WORKERS} workers",
        tally,
        recovery_s=stats["p99"],
        recovery_note=f"p99; p50 {stats['p50']} s",
    )
    result.note_overrides(overrides)
    result.figures.update(
        kills=len(kills),
        seed=SEED,
        kill_moments=moments,
        kills_delayed_until_a_worker_served=delayed,
        held_at_each_kill=held,
        recovery_s=stats,
        recordings_stopped_s=summary(stopped_after(kills, seen)),
        api_latency_ms=LATENCY_MS,
        rate_per_s=profile.loop_rate_per_s,
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("every kill ran", len(kills) == profile.loop_kills, f"{len(kills)}/{profile.loop_kills}")
    result.check_all_stopped()
    result.check_duplicates_bounded(sum(held))
    result.elapsed_s = time.monotonic() - started
    return result
