"""Scenario 3: urgent stops while a routine backlog drains; the routine stops keep flowing too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from bench.naive import TASK_NAME, make_app
from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids, paced
from bench.stack import BenchStack
from bench.stats import percentile
from harness.procs import ROOT, wait_for
from recstop.worker.config.settings import Settings
from recstop.worker.state.acl import Role

NAME = "3 urgent lane"


def run(report: Report, profile: Profile) -> None:
    """``urgent_stops`` urgent stops (some through the CLI) over a backlog of ``urgent_backlog``."""
    latencies, routine_rate, burst_like, cli_count = _recstop(profile)
    naive_wait = _naive(profile)
    p99 = percentile(latencies, 99) * 1000
    report.details["urgent"] = {
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }
    report.add(
        Row(
            NAME,
            f"p99 urgent enqueue -> DELETE, {len(latencies)} urgent ({cli_count} via CLI) over "
            f"{profile.urgent_backlog:,} backlogged",
            "ms",
            round(p99, 2),
            naive_tuned=round(naive_wait * 1000, 1),
            target="<= 50 ms",
            met=p99 <= 50,
            note=f"p50 {percentile(latencies, 50) * 1000:.1f} ms; naive: one stop sent when a tenth of a "
            f"{profile.urgent_naive_backlog:,} backlog was done; no lane",
            higher_is_better=False,
        )
    )
    report.add(
        Row(
            NAME,
            "routine stops/s while urgent ones flow (vs before they started)",
            "stops/s",
            round(routine_rate, 1),
            raw=round(burst_like, 1),
            target="not starved",
            met=routine_rate >= 0.5 * burst_like,
            note="'raw' column: the routine rate before the urgent stops",
        )
    )


def _recstop(profile: Profile) -> tuple[list[float], float, float, int]:
    with BenchStack("urgent", latency_ms=profile.burst_latency_ms) as stack:
        stack.start_workers(profile.burst_processes)
        producer = stack.producer()
        backlog = call_uuids(profile.urgent_backlog)
        stack.feed.reset()
        producer.stop_recordings(backlog)
        time.sleep(min(3.0, profile.urgent_backlog / 2000))  # let the backlog reach full speed (pacing)
        stack.feed.poll()
        before = _rate(stack.feed.entries, set(backlog))
        urgent = call_uuids(profile.urgent_stops)
        by_cli = set(urgent[: profile.urgent_cli_stops])
        sent: dict[str, float] = {}
        cli_threads = []

        def one(i: int) -> None:
            call = urgent[i]
            sent[call] = time.time()
            if call in by_cli:
                thread = threading.Thread(target=_cli_urgent, args=(stack, call), daemon=True)
                thread.start()
                cli_threads.append(thread)
            else:
                producer.stop_recording(call, urgent=True)

        window_start = time.time()
        paced(len(urgent), max(10.0, len(urgent) / 8), one)
        for thread in cli_threads:
            thread.join(30)
        stack.feed.wait_ok(set(urgent), timeout_s=60)
        window_end = time.time()
        arrivals = stack.feed.first_ok()
        # The CLI pays for its interpreter start-up; its latency counts from the enqueue itself.
        for call in by_cli:
            record = producer.status(call)
            if record is not None and record.enqueued_at is not None:
                sent[call] = record.enqueued_at
        latencies = [arrivals[c] - sent[c] for c in urgent if c in arrivals]
        in_window = [t for c, t in arrivals.items() if c in set(backlog) and window_start <= t <= window_end]
        routine = len(in_window) / max(1e-9, window_end - window_start)
        return latencies, routine, before, len(by_cli)


def _rate(entries: list[dict[str, object]], calls: set[str]) -> float:
    times = sorted(float(str(e["time"])) for e in entries if e["call_uuid"] in calls and e["status"] == 204)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def _cli_urgent(stack: BenchStack, call: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "recstop.producers.cli", "enqueue", call, "--urgent"],
        cwd=ROOT,
        env={**os.environ, **stack.env_as(Role.PRODUCER)},
        check=True,
        capture_output=True,
        timeout=60,
    )


def _naive(profile: Profile) -> float:
    """How long one more stop waits behind a backlog when there is no lane (tuned naive Celery).

    The backlog is published first, the workers start on it, and the "urgent" stop goes in once a
    tenth of the backlog is done: it queues behind the rest.
    """
    with BenchStack("urgent-naive", latency_ms=profile.burst_latency_ms) as stack:
        app = make_app({"NAIVE_BROKER_URL": stack.redis.url})
        try:
            backlog = call_uuids(profile.urgent_naive_backlog)
            for call in backlog:
                app.send_task(TASK_NAME, args=[call], queue="naive")
            stack.feed.reset()
            stack.start_naive(profile.burst_processes, "tuned", Settings().concurrency)

            def started() -> bool:
                stack.feed.poll()
                return len(stack.feed.entries) >= len(backlog) // 10

            wait_for(
                started, timeout_s=120, interval_s=0.05, what="the naive workers to start on the backlog"
            )
            (urgent,) = call_uuids(1)
            sent = time.time()
            app.send_task(TASK_NAME, args=[urgent], queue="naive")
        finally:
            app.close()
        stack.feed.wait_ok({urgent}, timeout_s=300)
        return stack.feed.first_ok()[urgent] - sent
