"""The seven benchmark scenarios; each adds its rows (recstop beside both references) to the report."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from bench.stack import BenchStack


def call_uuids(count: int) -> list[str]:
    """``count`` fresh call uuids."""
    return [str(uuid.uuid4()) for _ in range(count)]


def one_worker_rate(
    name: str, count: int, *, latency_ms: float, overrides: Mapping[str, str] | None = None
) -> tuple[float, bool]:
    """stops/s of one default ``celery -A recstop.worker worker`` (plus ``overrides``), ``count`` stops.

    Measured from the bulk enqueue to the last DELETE; also whether every stop arrived.
    """
    with BenchStack(name, latency_ms=latency_ms) as stack:
        stack.start_workers(1, **(overrides or {}))
        ids = call_uuids(count)
        stack.feed.reset()
        started = time.time()
        stack.producer().stop_recordings(ids)
        complete = stack.feed.wait_ok(set(ids), timeout_s=max(120.0, count / 50))
        arrivals = stack.feed.first_ok()
        return len(arrivals) / (max(arrivals.values(), default=started + 1) - started), complete


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
