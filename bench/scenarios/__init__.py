"""The seven benchmark scenarios; each adds its rows (recstop beside both references) to the report."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.stack import BenchStack
from bench.stats import ProcSampler, RedisOps

#: Commands the harness itself sends while it waits for a drain (not the stops' work).
HARNESS_COMMANDS = frozenset({"scan", "llen", "hlen", "info"})


def call_uuids(count: int) -> list[str]:
    """``count`` fresh call uuids."""
    return [str(uuid.uuid4()) for _ in range(count)]


@dataclass(frozen=True)
class Drain:
    """One drain of a burst: its rate, and what each stop cost the workers and Redis."""

    rate: float
    complete: bool
    #: Stops whose DELETE arrived (all of them, unless a reference was capped).
    done: int
    #: CPU (user + system) of the worker processes over the drain, per stop.
    worker_cpu_us: float
    #: Redis' CPU and the commands it ran (script calls and what they ran inside) per stop,
    #: producer and workers alike; the harness's own polls left out.
    redis_cpu_us: float
    redis_commands: float
    #: Commands per stop by name, for the JSON report.
    commands: Mapping[str, float]


def measure_drain(stack: BenchStack, pids: Mapping[str, int], run: Callable[[], tuple[int, float]]) -> Drain:
    """Measure ``run`` (which sends a burst and waits for it: (stops done, seconds)) on ``stack``.

    ``pids``: the worker processes whose CPU counts (their children too).
    """
    sampler = ProcSampler(pids).start()
    ops = RedisOps(stack.client())
    before = ops.snapshot()
    done, seconds = run()
    after = ops.snapshot()
    usage = sampler.stop()
    delta = {k: v for k, v in RedisOps.delta(before, after).items() if k not in HARNESS_COMMANDS}
    delta.pop("total", None)
    per = max(1, done)
    return Drain(
        rate=done / seconds if seconds > 0 else 0.0,
        complete=done > 0,
        done=done,
        worker_cpu_us=sum(u.cpu_s for u in usage.values()) / per * 1e6,
        redis_cpu_us=RedisOps.cpu_s(before, after) / per * 1e6,
        redis_commands=sum(delta.values()) / per,
        commands={k: round(v / per, 2) for k, v in delta.items() if v / per >= 0.01},
    )


def recstop_drain(
    name: str,
    count: int,
    *,
    latency_ms: float,
    processes: int = 1,
    overrides: Mapping[str, str] | None = None,
) -> Drain:
    """``processes`` default ``celery -A recstop.worker worker`` (plus ``overrides``) drain ``count`` stops.

    Measured from the bulk enqueue to the last DELETE (the rate) and until every queue and in-flight
    list is empty (the costs).
    """
    with BenchStack(name, latency_ms=latency_ms) as stack:
        workers = stack.start_workers(processes, **(overrides or {}))
        pids = {w.name: w.proc.pid for w in workers if w.proc is not None}
        ids = call_uuids(count)
        stack.feed.reset()

        def run() -> tuple[int, float]:
            started = time.time()
            stack.producer().stop_recordings(ids)
            stack.feed.wait_ok(set(ids), timeout_s=max(120.0, count / 20))
            stack.wait_drained(timeout_s=60)
            arrivals = stack.feed.first_ok()
            return len(arrivals), max(arrivals.values(), default=started + 1) - started

        drain = measure_drain(stack, pids, run)
        return Drain(**{**drain.__dict__, "complete": drain.done == count})


def naive_drain(name: str, count: int, *, latency_ms: float, threads: int, cap_s: float) -> Drain:
    """One tuned naive process (``threads`` threads) drains ``count`` stops sent with ``send_task``."""
    with BenchStack(name, latency_ms=latency_ms) as stack:
        (naive,) = stack.start_naive(1, "tuned", threads)
        stack.feed.reset()

        def run() -> tuple[int, float]:
            rate, done, _capped = naive_throughput(stack, call_uuids(count), cap_s=cap_s)
            return done, done / rate if rate else 0.0

        return measure_drain(stack, {"naive": naive.pid}, run)


def paced(count: int, rate_per_s: float, action: Callable[[int], None]) -> None:
    """Call ``action(i)`` ``count`` times at a steady rate (pacing, not synchronisation)."""
    started = time.monotonic()
    for i in range(count):
        ahead = started + i / rate_per_s - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        action(i)


def naive_throughput(stack: BenchStack, ids: Sequence[str], *, cap_s: float) -> tuple[float, int, bool]:
    """Publish ``ids`` to the naive workers as a naive user would; (stops/s, done, capped)."""
    from bench.naive import publish  # noqa: PLC0415 - keeps the naive app out of recstop's imports

    started = time.time()
    stop = threading.Event()
    thread = threading.Thread(target=publish, args=(stack.redis.url, ids, stop), daemon=True)
    thread.start()
    finished = stack.feed.wait_ok(set(ids), timeout_s=cap_s)
    capped_at = time.time()
    stop.set()
    thread.join(30)
    arrivals = stack.feed.first_ok()
    if finished:
        return len(ids) / (max(arrivals.values()) - started), len(ids), False
    done = sum(1 for call in ids if arrivals.get(call, capped_at + 1) <= capped_at)
    return done / (capped_at - started), done, True
