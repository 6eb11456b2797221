"""Scenario 7: throughput with 1, 2 and 4 worker processes; Redis operations and CPU per stop."""

from __future__ import annotations

import time

from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids
from bench.stack import BenchStack
from bench.stats import RedisOps

NAME = "7 scale-out"


def run(report: Report, profile: Profile) -> None:
    """``scale_stops`` per run, API latency as in the burst."""
    n = profile.scale_stops
    per_stop: dict[str, float] = {}
    for processes in profile.scale_processes:
        with BenchStack(f"scale-{processes}", latency_ms=profile.burst_latency_ms) as stack:
            stack.start_workers(processes)
            ops = RedisOps(stack.client())
            before = ops.snapshot()
            ids = call_uuids(n)
            stack.feed.reset()
            started = time.time()
            stack.producer().stop_recordings(ids)
            stack.feed.wait_ok(set(ids), timeout_s=max(120.0, n / 20))
            arrivals = stack.feed.first_ok()
            rate = len(arrivals) / (max(arrivals.values()) - started)
            stack.wait_drained(timeout_s=60)
            after = ops.snapshot()
        delta = RedisOps.delta(before, after)
        per_stop = {
            "redis_ops_per_stop": round(delta["total"] / n, 1),
            "redis_cpu_us_per_stop": round(RedisOps.cpu_s(before, after) / n * 1e6, 1),
        }
        report.details[f"scale_{processes}"] = {"rate": round(rate, 1), **per_stop, "commands": delta}
        report.add(
            Row(
                NAME,
                f"{processes} worker process(es), {n:,} stops",
                "stops/s",
                round(rate, 1),
                note=f"{per_stop['redis_ops_per_stop']} Redis ops, "
                f"{per_stop['redis_cpu_us_per_stop']} us Redis CPU per stop",
            )
        )
    ceiling = 1e6 / per_stop["redis_cpu_us_per_stop"] if per_stop.get("redis_cpu_us_per_stop") else None
    report.add(
        Row(
            NAME,
            "one Redis core's ceiling, from its CPU per stop",
            "stops/s",
            None if ceiling is None else round(ceiling),
            target="estimate",
        )
    )
