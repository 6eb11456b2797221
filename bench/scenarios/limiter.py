"""Part of scenario 4: the `limits` library's strategies against recstop's GCRA, on the same Redis.

Eight threads (as a worker's task threads would) each take ``grants`` slots for one account at
``rate_rps``. A `limits` strategy only answers "may I, now?", so a refused thread sleeps until the
window's reset and asks again; recstop's limiter answers "when is my slot?" and the thread sleeps
exactly that long. Reported: achieved rate, busiest 1-second window, Redis commands per grant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond, storage, strategies

from bench.stack import BenchStack
from bench.stats import RedisOps, achieved_rate, max_window_count
from recstop.worker.config.ratelimit import RateLimitSettings
from recstop.worker.policy.ratelimit import RateLimiter

THREADS = 8
KEY = "MA_BENCH0001"


def compare(rate_rps: float, grants: int) -> dict[str, dict[str, float]]:
    """Each contender's achieved rate, busiest 1 s and 100 ms windows (% of limit), commands per grant."""
    results: dict[str, dict[str, float]] = {}
    for name in ("recstop GCRA", "limits moving window", "limits fixed window", "limits sliding counter"):
        with BenchStack(f"limiter-{name.split()[-1]}") as stack:
            take = _contender(name, stack, rate_rps)
            ops = RedisOps(stack.client())
            before = ops.snapshot()
            times = _run(take, grants)
            after = ops.snapshot()
        results[name] = {
            "achieved_pct": round(100 * achieved_rate(times) / rate_rps, 1),
            "busiest_window_pct": round(100 * max_window_count(times) / rate_rps, 1),
            "busiest_100ms_pct": round(100 * max_window_count(times, 0.1) / (rate_rps / 10), 1),
            "redis_commands_per_grant": round(RedisOps.delta(before, after)["total"] / grants, 1),
        }
    return results


def _contender(name: str, stack: BenchStack, rate_rps: float) -> Callable[[], None]:
    if name == "recstop GCRA":
        gcra = RateLimiter(stack.client(), RateLimitSettings(rate_rps=rate_rps))

        def slot() -> None:
            gcra.wait_for_slot(KEY)

        return slot
    kinds: dict[str, Callable[[storage.RedisStorage], strategies.RateLimiter]] = {
        "limits moving window": strategies.MovingWindowRateLimiter,
        "limits fixed window": strategies.FixedWindowRateLimiter,
        "limits sliding counter": strategies.SlidingWindowCounterRateLimiter,
    }
    limiter = kinds[name](storage.RedisStorage(stack.redis.url))
    item = RateLimitItemPerSecond(int(rate_rps))

    def take() -> None:
        while not limiter.hit(item, KEY):
            reset = limiter.get_window_stats(item, KEY).reset_time
            time.sleep(min(1.0, max(0.001, reset - time.time())))

    return take


def _run(take: Callable[[], None], grants: int) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()
    left = [grants]

    def worker() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            take()
            now = time.time()
            with lock:
                times.append(now)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(times)
