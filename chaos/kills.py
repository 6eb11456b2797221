"""SIGKILL of a worker's process group, what it held at that moment, and how long that took to come back."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis import Redis

from bench.stats import percentile
from chaos.inflight import held_by_process
from chaos.verify import Tally, last_delete_s, settled_s, stopped_s
from harness.procs import WorkerProcess
from recstop.worker.config.settings import Settings

#: Time for a live worker to fetch a reaped message and for its DELETE to reach the API, on top
#: of the consumer timeout and one heartbeat: with the defaults (5 s + 1 s) the bound is 10 s.
FETCH_MARGIN_S: Final = 4.0


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: which worker, when, and what its process held in flight (task id to call_uuid)."""

    worker: str
    at: float
    held: dict[str, str]


def kill(worker: WorkerProcess, redis: Redis) -> Kill:
    """SIGKILL the worker's process group; then read what it held (nothing reaps it for a while)."""
    assert worker.proc is not None
    pid = worker.proc.pid
    at = time.time()
    worker.kill_group()
    return Kill(worker.name, at, held_by_process(redis, pid))


def comeback_bound_s(settings: Settings) -> float:
    """When a killed worker's stops are back at the API: consumer timeout + heartbeat + fetch margin."""
    return settings.redis.consumer_timeout_s + settings.redis.consumer_heartbeat_s + FETCH_MARGIN_S


def recoveries(kills: Sequence[Kill], seen: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Per kill: seconds to the last DELETE (sandbox arrival) that a stop it held needed after the kill.

    A held stop comes back when a live worker reaps the killed one and fetches it; a stop whose
    DELETE was in progress at the kill finds its lock (taken by the dead worker) and runs once the
    lock expires. A stop that needed no DELETE after the kill adds nothing.
    """
    return [last_delete_s(seen, k.held.values(), k.at) for k in kills]


def stopped_after(kills: Sequence[Kill], seen: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Per kill: seconds until every stop it held had its recording stopped (0: before the kill)."""
    return [stopped_s(seen, k.held.values(), k.at) for k in kills]


def settled_after(kills: Sequence[Kill], tally: Tally) -> list[float]:
    """Per kill: seconds until every stop it held was terminal in its status record."""
    return [settled_s(tally.records, k.held.values(), k.at) for k in kills]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of ``values`` in seconds (None when there are none; inf when one never came)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    if any(math.isinf(v) for v in values):
        return {"p50": round(percentile(values, 50), 2), "p99": math.inf, "max": math.inf}
    return {
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }
