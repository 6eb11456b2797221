"""Scenario 4: Redis unreachable, at enqueue and while a worker must record a retry or a dead letter."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.inflight import inflight_task_ids
from chaos.load import new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import OTHER_AUTH_ID, Stack
from chaos.verify import reconcile
from harness.procs import wait_for
from recstop.producers import Producer
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import BrokerUnavailableError


def refusal_bound_s(settings: Settings) -> float:
    """The documented bound: a producer facing a dead or hung Redis raises within this many seconds."""
    return 3 * settings.redis.socket_timeout_s + 1.0


def _refusals(producer: Producer, calls: list[str]) -> tuple[list[float], int]:
    """Try to enqueue each call; return how long each refusal took and how many were accepted."""
    took: list[float] = []
    accepted = 0
    for call_uuid in calls:
        began = time.monotonic()
        try:
            producer.stop_recording(call_uuid)
        except BrokerUnavailableError:
            took.append(time.monotonic() - began)
        else:
            accepted += 1
    return took, accepted


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Enqueue against a dead and a hung Redis; then crash Redis while attempts are in flight."""
    started = time.monotonic()
    overrides = profile.locks
    attempts = profile.down_attempts
    with Stack("redis_down", appendfsync="always", overrides=overrides, keep_dir=keep_dir) as stack:
        settings = stack.settings()
        bound_s = refusal_bound_s(settings)
        if 2 * profile.down_stops > settings.concurrency:
            raise ValueError(f"{2 * profile.down_stops} stops must all be in flight at once")
        worker = stack.start_worker("w1")
        producer = stack.producer()
        # (a) At enqueue: refused connections, then a hung server.
        stack.redis.crash()
        dead_s, dead_ok = _refusals(producer, new_calls(attempts))
        stack.redis.start()
        stack.redis.pause()
        hung_calls = new_calls(attempts)
        hung_s, hung_ok = _refusals(producer, hung_calls)
        stack.redis.resume()
        # (b) In flight: every DELETE takes 1.5 s; Redis dies while they wait for their answer.
        # Retry set: the first DELETE of each call answers 503. Dead set: an inactive account, 403.
        retry_calls, dead_calls = new_calls(profile.down_stops), new_calls(profile.down_stops)
        client = stack.sandbox.client
        client.update_account(OTHER_AUTH_ID, active=False)
        client.set_faults(
            [{"kind": "status", "status": 503, "times": 1, "call_uuid": c} for c in retry_calls],
            latency_ms=1500,
        )
        for call_uuid in retry_calls:
            producer.stop_recording(call_uuid)
        for call_uuid in dead_calls:
            producer.stop_recording(call_uuid, auth_id=OTHER_AUTH_ID)
        redis = stack.redis.client()
        wait_for(
            lambda: len(inflight_task_ids(redis)) >= 2 * profile.down_stops,
            timeout_s=30,
            what="every stop to be in flight",
        )
        redis.close()
        stack.redis.crash()
        lost_writes = _wait_store_errors(worker.log_records, 2 * profile.down_stops)
        stack.redis.start()
        up_at = time.time()
        # A refusal while Redis hung may still have been stored once it woke up (the caller was
        # told "not stored"; its retry is deduplicated). Such stops must run like any other.
        stored_anyway = [c for c in hung_calls if producer.status(c) is not None]
        tally = reconcile(producer, client, [*retry_calls, *dead_calls, *stored_anyway], timeout_s=90)
        alive = worker.alive
    finished = [r.finished_at for r in tally.records.values() if r.finished_at is not None]
    done_s = max(finished) - up_at if finished else None
    result = ScenarioResult("Redis unreachable", tally, recovery_s=done_s)
    result.note_overrides(overrides)
    result.figures.update(
        refusal_s_redis_dead=[round(s, 2) for s in dead_s],
        refusal_s_redis_hung=[round(s, 2) for s in hung_s],
        refusal_bound_s=bound_s,
        refused_while_hung_but_stored=len(stored_anyway),
        store_writes_failed_in_flight=lost_writes,
    )
    result.check(
        "dead Redis: typed error within the bound, never success",
        dead_ok == 0 and len(dead_s) == attempts and max(dead_s) <= bound_s,
        f"{len(dead_s)} refused, slowest {max(dead_s, default=0):.2f} s <= {bound_s:.1f} s",
    )
    result.check(
        "hung Redis: typed error within the bound, never success",
        hung_ok == 0 and len(hung_s) == attempts and max(hung_s) <= bound_s,
        f"{len(hung_s)} refused, slowest {max(hung_s, default=0):.2f} s <= {bound_s:.1f} s",
    )
    result.check(
        "in-flight retries and dead letters could not be written, then were not dropped",
        lost_writes >= 2 * profile.down_stops,
        f"{lost_writes} failed writes; retry set stopped, dead set dead-lettered",
    )
    expected_dead = {"http_403": profile.down_stops}
    result.check(
        "the dead set ended as dead letters", dict(tally.dead) == expected_dead, f"{dict(tally.dead)}"
    )
    result.check("the worker survived", alive, "alive")
    result.elapsed_s = time.monotonic() - started
    return result


def _wait_store_errors(records: Callable[[], list[dict[str, Any]]], count: int) -> int:
    """Wait until the worker logged ``count`` failed state-store writes; return how many it logged."""

    def failed() -> int:
        return sum(1 for r in records() if r.get("event") == "state_store_unavailable")

    wait_for(lambda: failed() >= count, timeout_s=30, what=f"{count} failed state-store writes")
    return failed()
