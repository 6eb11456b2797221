"""Scenario 2: SIGTERM during load, and Kubernetes-style TERM then KILL after a grace period."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from chaos.load import Load, new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.scenarios.worker_kill import RECOVERY_BOUND_S
from chaos.stack import BASE_ENV, Stack
from chaos.verify import held_recovery_s, reconcile, unacked_task_ids
from harness.procs import WorkerProcess

#: The Kubernetes grace period of the TERM-then-KILL run: shorter than the slow stops in flight.
GRACE_S = 1.0
#: How long a warm shutdown may take: the in-flight HTTP calls' timeouts plus a margin.
WARM_SHUTDOWN_BOUND_S = (
    float(BASE_ENV["RECSTOP_CONNECT_TIMEOUT_S"]) + float(BASE_ENV["RECSTOP_READ_TIMEOUT_S"]) + 5
)


def _terminate(worker: WorkerProcess, grace_s: float | None) -> tuple[float, int | None, bool]:
    """SIGTERM ``worker``; SIGKILL it after ``grace_s`` if given. Returns (seconds, exit code, killed)."""
    assert worker.proc is not None
    began = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        code = worker.proc.wait(grace_s if grace_s is not None else WARM_SHUTDOWN_BOUND_S + 30)
    except subprocess.TimeoutExpired:
        worker.kill()
        return time.monotonic() - began, None, True
    return time.monotonic() - began, code, False


def run_term(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """SIGTERM a busy worker: its in-flight stops finish, the rest stay queued for the survivor."""
    started = time.monotonic()
    with Stack("graceful_term", keep_dir=keep_dir) as stack:
        stack.sandbox.client.set_faults([], latency_ms=200)
        stack.start_worker("survivor")
        victim = stack.start_worker("victim")
        calls = new_calls(profile.graceful_stops)
        load = Load(stack.producer, calls, rate_per_s=profile.rate_per_s / 2).start()
        load.wait_progress(len(calls) // 2)
        took_s, code, _ = _terminate(victim, None)
        sent = load.wait()
        accepted_at = {a.call_uuid: a.accepted_at for a in sent.accepted}
        tally = reconcile(stack.producer(), stack.sandbox.client, accepted_at, timeout_s=120)
        finished = any("Warm shutdown" in str(r.get("event")) for r in victim.log_records())
    result = ScenarioResult("graceful SIGTERM", tally)
    result.figures.update(shutdown_s=round(took_s, 2), exit_code=code)
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("worker exited by itself with status 0", code == 0, f"exit {code} after {took_s:.1f} s")
    result.check(
        "warm shutdown within the in-flight bound",
        took_s <= WARM_SHUTDOWN_BOUND_S,
        f"{took_s:.1f} s <= {WARM_SHUTDOWN_BOUND_S:.0f} s",
    )
    result.check("shutdown logged", finished, "warm shutdown line in the worker's JSON log")
    result.check("no duplicate DELETE", tally.duplicate_deletes == 0, f"{tally.duplicate_deletes}")
    result.elapsed_s = time.monotonic() - started
    return result


def run_term_kill(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """TERM, then KILL after ``GRACE_S`` while slow stops are in flight: they come back later."""
    started = time.monotonic()
    with Stack("graceful_term_kill", keep_dir=keep_dir) as stack:
        # One DELETE in five takes 1.6 s, longer than the grace period; the load stays within
        # what the survivor alone can serve, so recovery measures redelivery, not a backlog.
        stack.sandbox.client.set_faults(
            [{"kind": "latency", "latency_ms": 1500, "probability": 0.2}], latency_ms=100
        )
        stack.start_worker("survivor")
        victim = stack.start_worker("victim")
        calls = new_calls(profile.graceful_stops)
        load = Load(stack.producer, calls, rate_per_s=30).start()
        load.wait_progress(len(calls) // 2)
        held = unacked_task_ids(stack.redis.client())
        term_at = time.time()
        _, code, killed = _terminate(victim, GRACE_S)
        sent = load.wait()
        tally = reconcile(
            stack.producer(), stack.sandbox.client, [a.call_uuid for a in sent.accepted], timeout_s=120
        )
    recovery = held_recovery_s(tally, held, term_at)
    result = ScenarioResult(f"SIGTERM + SIGKILL after {GRACE_S:.0f} s", tally, recovery_s=recovery)
    result.figures.update(killed=killed, exit_code=code, recovery_bound_s=RECOVERY_BOUND_S)
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("the grace period ran out (stops were in flight)", killed, f"killed={killed}")
    result.check(
        "killed stops came back within the documented bound",
        recovery <= RECOVERY_BOUND_S,
        f"{recovery:.1f} s <= {RECOVERY_BOUND_S:.0f} s",
    )
    result.elapsed_s = time.monotonic() - started
    return result
