"""Scenarios 1 and 6: a burst of stops against a slow API, end to end, and the workers' memory."""

from __future__ import annotations

import time

from bench.profiles import Profile
from bench.raw import run_raw
from bench.report import Report, Row
from bench.scenarios import Drain, call_uuids, naive_drain, naive_throughput, recstop_drain
from bench.stack import AUTH_ID, TOKEN, BenchStack
from bench.stats import ProcSampler
from recstop.worker.config.settings import Settings

NAME = "1 burst"
#: Threads of the tuned naive reference process: what a careful Celery user would run.
NAIVE_TUNED_THREADS = 128
#: One default process against one tuned naive process: its rate at least this many times theirs ...
ONE_PROCESS_RATE = 1.5
#: ... on at most this share of their CPU per stop.
ONE_PROCESS_CPU = 0.5
#: Redis per stop (producer and workers): at most this much CPU and this many commands.
REDIS_CPU_US = 150.0
REDIS_COMMANDS = 15.0
#: Stops a second one Redis core carries at least, from its CPU per stop.
REDIS_CEILING = 7_000
#: Two processes reach at least this share of the raw limit (the same DELETEs from a thread pool).
RAW_SHARE = 0.75


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
    met = rate >= RAW_SHARE * raw.rate
    report.add(
        Row(
            NAME,
            f"{n:,} stops, API latency {latency:g} ms, {processes} workers x {concurrency} threads",
            "stops/s",
            round(rate, 1),
            naive=round(naive_rate, 1),
            naive_tuned=round(tuned_rate, 1),
            raw=round(raw.rate, 1),
            target=f">= {RAW_SHARE:.0%} raw",
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
    """The default command against the tuned naive process, one process each, in alternating rounds.

    The best round of each side counts for the rate; each side's cost per stop is its lowest over
    the rounds (the least disturbed by whatever else the machine ran).
    """
    n, latency = profile.burst_stops, profile.burst_latency_ms
    ours: list[Drain] = []
    theirs: list[Drain] = []
    for round_no in range(profile.one_rounds):
        ours.append(recstop_drain(f"one-recstop-{round_no}", n, latency_ms=latency))
        theirs.append(
            naive_drain(
                f"one-tuned-{round_no}",
                n,
                latency_ms=latency,
                threads=NAIVE_TUNED_THREADS,
                cap_s=profile.naive_cap_s,
            )
        )
    rate, tuned = max(d.rate for d in ours), max(d.rate for d in theirs)
    complete = all(d.complete for d in ours)
    rounds = f"rounds {[round(d.rate) for d in ours]} vs {[round(d.rate) for d in theirs]}"
    if any(d.done < n for d in theirs):
        rounds += f"; reference measured over its first {profile.naive_cap_s:g} s"
    report.add(
        Row(
            NAME,
            f"one `celery -A recstop.worker worker` (defaults: {Settings().concurrency} threads) "
            "vs one tuned naive "
            f"process ({NAIVE_TUNED_THREADS} threads, a Session each), {n:,} stops, latency {latency:g} ms",
            "stops/s",
            round(rate, 1),
            naive_tuned=round(tuned, 1),
            target=f">= {ONE_PROCESS_RATE:g}x tuned naive",
            met=complete and rate >= ONE_PROCESS_RATE * tuned,
            note=rounds,
        )
    )
    cost_rows(report, ours, theirs)


def cost_rows(report: Report, ours: list[Drain], theirs: list[Drain]) -> None:
    """CPU per stop, the worker's and Redis', beside the tuned naive process's (lowest of the rounds)."""
    worker = min(d.worker_cpu_us for d in ours)
    naive_worker = min(d.worker_cpu_us for d in theirs)
    redis_cpu, naive_redis = min(d.redis_cpu_us for d in ours), min(d.redis_cpu_us for d in theirs)
    commands = min(d.redis_commands for d in ours)
    per_stop = "user + system over the drain, divided by stops; rounds "
    report.add(
        Row(
            NAME,
            "CPU per stop: worker process (one default process vs one tuned naive process)",
            "us",
            round(worker),
            naive_tuned=round(naive_worker),
            target=f"<= {ONE_PROCESS_CPU:g}x tuned naive",
            met=worker <= ONE_PROCESS_CPU * naive_worker,
            note=per_stop
            + f"{[round(d.worker_cpu_us) for d in ours]} vs {[round(d.worker_cpu_us) for d in theirs]}",
            higher_is_better=False,
        )
    )
    report.add(
        Row(
            NAME,
            "CPU per stop: Redis (producer and worker; naive: send_task and kombu's fetch, no state)",
            "us",
            round(redis_cpu),
            naive_tuned=round(naive_redis),
            target=f"<= {REDIS_CPU_US:g} us",
            met=redis_cpu <= REDIS_CPU_US,
            note=f"one Redis core's ceiling {1e6 / redis_cpu:,.0f} stops/s (target >= {REDIS_CEILING:,})"
            if redis_cpu
            else "",
            higher_is_better=False,
        )
    )
    best = min(ours, key=lambda d: d.redis_commands)
    report.add(
        Row(
            NAME,
            "CPU per stop: Redis commands (script calls and the commands they run)",
            "commands",
            round(commands, 1),
            naive_tuned=round(min(d.redis_commands for d in theirs), 1),
            target=f"<= {REDIS_COMMANDS:g}",
            met=commands <= REDIS_COMMANDS,
            note=", ".join(f"{k} {v:g}" for k, v in sorted(best.commands.items(), key=lambda kv: -kv[1])),
            higher_is_better=False,
        )
    )
    report.details["cost_per_stop"] = {
        "recstop": [d.__dict__ | {"commands": dict(d.commands)} for d in ours],
        "naive_tuned": [d.__dict__ | {"commands": dict(d.commands)} for d in theirs],
    }


def _rss(stack: BenchStack) -> float:
    """Resident memory (MB) of every naive worker process tree now."""
    import psutil  # noqa: PLC0415

    total = 0.0
    for naive in stack.naive:
        proc = psutil.Process(naive.pid)
        total += sum(p.memory_info().rss for p in (proc, *proc.children(recursive=True))) / 2**20
    return total
