"""Scenario 2: SIGTERM during load, and Kubernetes-style TERM then KILL after a grace period.

SIGTERM: the worker finishes the API calls it is in, and every message it holds but did not start
must be back in its lane within a second, for the other worker to take, not kept until the last
call returns. TERM then KILL: what the worker still held at the KILL comes back when a live worker
reaps it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Final

from chaos.kills import Kill, comeback_bound_s, kill, recoveries, settled_after, stopped_after
from chaos.load import Load, new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.verify import deletes_by_call, log_events, reconcile
from chaos.watch import Watch
from harness.procs import WorkerProcess

#: The Kubernetes grace period of the TERM-then-KILL run: shorter than the slow stops in flight.
GRACE_S: Final = 1.0
#: The issue's bound: a stopping worker's unstarted messages are back in their lane within this.
HAND_BACK_BOUND_S: Final = 1.0
#: A warm shutdown takes the API calls in flight plus this (Celery's own shutdown steps).
SHUTDOWN_MARGIN_S: Final = 5.0
#: Every this-many-th stop goes to the urgent lane (a worker also waits on it while idle).
URGENT_EVERY: Final = 3


def _terminate(worker: WorkerProcess, timeout_s: float) -> tuple[float, int | None]:
    """SIGTERM ``worker`` and wait up to ``timeout_s`` for it to exit: (seconds, exit code or None)."""
    assert worker.proc is not None
    began = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        code = worker.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return time.monotonic() - began, None
    return time.monotonic() - began, code


def run_term(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """SIGTERM a busy worker: its calls in flight finish, what it had not started goes back at once."""
    started = time.monotonic()
    latency_s = profile.graceful_latency_s
    bound_s = latency_s + SHUTDOWN_MARGIN_S
    with Stack("graceful_term", keep_dir=keep_dir) as stack:
        stack.sandbox.client.set_faults([], latency_ms=latency_s * 1000)
        _, victim = stack.start_workers(2)
        assert victim.proc is not None
        pid = victim.proc.pid
        calls = new_calls(profile.graceful_stops)
        with Watch(stack.client()) as watch:
            load = Load(
                stack.producer,
                calls,
                rate_per_s=profile.graceful_rate_per_s,
                urgent_for=lambda i: i % URGENT_EVERY == URGENT_EVERY - 1,
            ).start()
            load.wait_progress(len(calls) // 2)
            term_at = time.time()
            took_s, code = _terminate(victim, bound_s + 30)
            sent = load.wait()
            tally = reconcile(
                stack.producer(), stack.sandbox.client, [a.call_uuid for a in sent.accepted], timeout_s=120
            )
        records = victim.log_records()
    handed = watch.handed_back(pid, term_at)
    late = watch.fetched_by(pid, term_at + watch.interval_s)
    slowest = max((s for _, s in handed), default=0.0)
    finished = any("Warm shutdown" in str(r.get("event")) for r in records)
    result = ScenarioResult("graceful SIGTERM", tally)
    result.figures.update(
        shutdown_s=round(took_s, 2),
        exit_code=code,
        api_latency_s=latency_s,
        handed_back=len(handed),
        handed_back_s=sorted(round(s, 2) for _, s in handed),
        fetched_after_sigterm=len(late),
        message_handed_back_lines=len(log_events(records, "message_handed_back")),
        consumer_released=[r.get("requeued") for r in log_events(records, "consumer_released")],
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("worker exited by itself with status 0", code == 0, f"exit {code} after {took_s:.1f} s")
    result.check(
        "warm shutdown within the calls in flight + margin",
        took_s <= bound_s,
        f"{took_s:.1f} s <= {bound_s:.0f} s",
    )
    result.check(
        f"unstarted messages back in their lane within {HAND_BACK_BOUND_S:.0f} s",
        slowest <= HAND_BACK_BOUND_S,
        f"{len(handed)} handed back, slowest {slowest:.2f} s; {len(late)} fetched after the SIGTERM",
    )
    result.check("shutdown logged", finished, "warm shutdown line in the worker's JSON log")
    result.check("no duplicate DELETE", tally.duplicate_deletes == 0, f"{tally.duplicate_deletes}")
    result.elapsed_s = time.monotonic() - started
    return result


def run_term_kill(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """TERM, then KILL after ``GRACE_S`` while slow stops are in flight: they come back after a reap."""
    started = time.monotonic()
    overrides = profile.locks
    with Stack("graceful_term_kill", overrides=overrides, keep_dir=keep_dir) as stack:
        # One DELETE in five takes 1.6 s, longer than the grace period; the load stays within
        # what the survivor alone can serve, so recovery measures the reap, not a backlog.
        stack.sandbox.client.set_faults(
            [{"kind": "latency", "latency_ms": 1500, "probability": 0.2}], latency_ms=100
        )
        _, victim = stack.start_workers(2)
        calls = new_calls(profile.graceful_stops)
        load = Load(stack.producer, calls, rate_per_s=30).start()
        load.wait_progress(len(calls) // 2)
        redis = stack.client()
        _, code = _terminate(victim, GRACE_S)
        killed: Kill | None = None if code is not None else kill(victim, redis)
        redis.close()
        sent = load.wait()
        tally = reconcile(
            stack.producer(), stack.sandbox.client, [a.call_uuid for a in sent.accepted], timeout_s=120
        )
        seen = deletes_by_call(stack.sandbox.client)
        bound_s = comeback_bound_s(stack.settings())
    kills = [] if killed is None else [killed]
    recovery = recoveries(kills, seen)[0] if kills else None
    held = len(killed.held) if killed is not None else 0
    result = ScenarioResult(f"SIGTERM + SIGKILL after {GRACE_S:.0f} s", tally, recovery_s=recovery)
    result.note_overrides(overrides)
    result.figures.update(
        held_at_kill=held,
        exit_code=code,
        comeback_bound_s=bound_s,
        recordings_stopped_s=[round(s, 2) for s in stopped_after(kills, seen)],
        settled_s=[round(s, 2) for s in settled_after(kills, tally)],
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("the grace period ran out (stops were in flight)", killed is not None, f"held {held}")
    result.check(
        "the last DELETE a held stop needed within consumer timeout + heartbeat + fetch",
        recovery is not None and recovery <= bound_s,
        f"{recovery if recovery is None else round(recovery, 1)} s <= {bound_s:.0f} s",
    )
    result.check_duplicates_bounded(held)
    result.elapsed_s = time.monotonic() - started
    return result
