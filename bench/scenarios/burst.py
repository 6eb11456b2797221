"""Scenarios 1 and 6: a burst of stops against a slow API, end to end, and the workers' memory."""

from __future__ import annotations

import time

from bench.profiles import Profile
from bench.raw import run_raw
from bench.report import Report, Row
from bench.scenarios import call_uuids, naive_throughput, one_worker_rate
from bench.stack import AUTH_ID, TOKEN, BenchStack
from bench.stats import ProcSampler
from recstop.worker.config.settings import Settings

NAME = "1 burst"
#: Threads of the tuned naive reference process: what a careful Celery user would run.
NAIVE_TUNED_THREADS = 128


def run(report: Report, profile: Profile) -> None:
    """Burst of ``burst_stops`` with the sandbox answering after ``burst_latency_ms``."""
    one_process(report, profile)
    n, latency = profile.burst_stops, profile.burst_latency_ms
    processes, concurrency = profile.burst_processes, Settings().concurrency
    cap_s = profile.naive_cap_s
    with BenchStack("burst", latency_ms=latency) as stack:
        workers = stack.start_workers(processes)
        pids = {w.name: w.proc.pid for w in workers if w.proc is not None}
        pids |= {"sandbox": stack.sandbox.proc.pid if stack.sandbox.proc else 0}
        sampler = ProcSampler(pids).start()
        ids = call_uuids(n)
        started = time.time()
        stack.producer().stop_recordings(ids)
        enqueued_s = time.time() - started
        complete = stack.feed.wait_ok(set(ids), timeout_s=max(120.0, n / 50))
        usage = sampler.stop()
        arrivals = stack.feed.first_ok()
        rate = len(arrivals) / (max(arrivals.values()) - started)
    with BenchStack("burst-naive", latency_ms=latency) as stack:
        stack.start_naive(1, "default", 0)
        stack.feed.reset()
        naive_rate, naive_done, naive_capped = naive_throughput(stack, call_uuids(n), cap_s=cap_s)
        naive_rss = _rss(stack)
    with BenchStack("burst-tuned", latency_ms=latency) as stack:
        stack.start_naive(processes, "tuned", concurrency)
        stack.feed.reset()
        tuned_rate, tuned_done, tuned_capped = naive_throughput(stack, call_uuids(n), cap_s=cap_s)
        tuned_rss = _rss(stack) / processes
    with BenchStack("burst-raw", latency_ms=latency) as stack:
        raw = run_raw(stack.sandbox.api_base, AUTH_ID, TOKEN, call_uuids(n), threads=processes * concurrency)
    met = rate >= 1000 and rate >= 2 * tuned_rate and rate >= 0.75 * raw.rate
    report.add(
        Row(
            NAME,
            f"{n:,} stops, API latency {latency:g} ms, {processes} workers x {concurrency} threads",
            "stops/s",
            round(rate, 1),
            naive=round(naive_rate, 1),
            naive_tuned=round(tuned_rate, 1),
            raw=round(raw.rate, 1),
            target=">= 1,000/s, >= 2x tuned, >= 75% raw",
            met=met if complete else False,
            note=""
            if not (naive_capped or tuned_capped)
            else f"references measured over their first {profile.naive_cap_s:g} s",
        )
    )
    worker_rss = max(usage[w].peak_rss_mb for w in pids if w.startswith("w"))
    report.add(
        Row(
            "6 memory",
            f"peak RSS per worker process at {concurrency} threads",
            "MB",
            round(worker_rss, 1),
            naive=round(naive_rss, 1),
            naive_tuned=round(tuned_rss, 1),
            target="<= 150 MB",
            met=worker_rss <= 150,
            higher_is_better=False,
        )
    )
    cpu = {name: round(u.cpu_s / n * 1e6) for name, u in usage.items()}
    report.details["burst"] = {
        "complete": complete,
        "enqueue_s": round(enqueued_s, 3),
        "cpu_us_per_stop": cpu,
        "cpu_cores": {name: round(u.cores, 2) for name, u in usage.items()},
        "raw_client_cpu_us_per_stop": round(raw.cpu_s / max(1, raw.count) * 1e6),
        "naive_done": naive_done,
        "tuned_done": tuned_done,
        "raw_statuses": {str(k): v for k, v in raw.statuses.items()},
    }


def one_process(report: Report, profile: Profile) -> None:
    """The default command against the tuned naive process, one process each, in the same run."""
    n, latency = profile.burst_stops, profile.burst_latency_ms
    rate, complete = one_worker_rate("one-recstop", n, latency_ms=latency)
    with BenchStack("one-tuned", latency_ms=latency) as stack:
        stack.start_naive(1, "tuned", NAIVE_TUNED_THREADS)
        stack.feed.reset()
        tuned, _, capped = naive_throughput(stack, call_uuids(n), cap_s=profile.naive_cap_s)
    report.add(
        Row(
            NAME,
            f"one `celery -A recstop.worker worker` (defaults: {Settings().concurrency} threads) "
            "vs one tuned naive "
            f"process ({NAIVE_TUNED_THREADS} threads, a Session each), {n:,} stops, latency {latency:g} ms",
            "stops/s",
            round(rate, 1),
            naive_tuned=round(tuned, 1),
            target=">= tuned naive",
            met=complete and rate >= tuned,
            note="" if not capped else f"reference measured over its first {profile.naive_cap_s:g} s",
        )
    )


def _rss(stack: BenchStack) -> float:
    """Resident memory (MB) of every naive worker process tree now."""
    import psutil  # noqa: PLC0415

    total = 0.0
    for naive in stack.naive:
        proc = psutil.Process(naive.pid)
        total += sum(p.memory_info().rss for p in (proc, *proc.children(recursive=True))) / 2**20
    return total
