"""Scenario 5: how fast one producer process enqueues, one by one and in bulk (API and CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from bench.naive import publish
from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids
from bench.stack import BenchStack
from bench.stats import summary_ms
from harness.procs import ROOT
from recstop.producers import Producer
from recstop.worker.state.acl import Role
from recstop.worker.state.envelope import stop_message

NAME = "5 producer"
THREADS = 4


def run(report: Report, profile: Profile) -> None:
    """Single enqueues, a repeat of them (all deduplicated), bulk API, CLI from a file."""
    n, bulk = profile.producer_stops, profile.bulk_stops
    with BenchStack("producer") as stack:
        producer = stack.producer()
        ids = call_uuids(n)
        latencies = []
        started = time.perf_counter()
        for call in ids:
            began = time.perf_counter()
            producer.stop_recording(call)
            latencies.append(time.perf_counter() - began)
        single = n / (time.perf_counter() - started)
        enqueue_ms = summary_ms(latencies)
        threaded = _threaded(producer, call_uuids(n), THREADS)
        started = time.perf_counter()
        repeats = [producer.stop_recording(call) for call in ids]
        repeat_rate = n / (time.perf_counter() - started)
        deduplicated = sum(1 for handle in repeats if handle.deduplicated)
        started = time.perf_counter()
        producer.stop_recordings(call_uuids(bulk))
        bulk_rate = bulk / (time.perf_counter() - started)
        path = stack.directory / "calls.txt"
        path.write_text("\n".join(call_uuids(bulk)) + "\n", encoding="utf-8")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "recstop.producers.cli", "enqueue", "--file", str(path)],
            cwd=ROOT,
            env={**os.environ, **stack.env_as(Role.PRODUCER)},
            check=True,
            capture_output=True,
            timeout=300,
        )
        cli_rate = bulk / (time.perf_counter() - started)
        naive_rate = n / publish(stack.redis.url, call_uuids(n))
        raw_rate = _raw_lpush(stack, bulk)
    report.add(
        Row(
            NAME,
            "single enqueues, one process, deduplication on",
            "stops/s",
            round(single),
            naive=round(naive_rate),
            raw=round(raw_rate),
            target=">= 5,000/s",
            met=single >= 5000,
            note=f"enqueue p50 {enqueue_ms['p50']:.2f} ms, p99 {enqueue_ms['p99']:.2f} ms; "
            "naive: send_task loop; raw: pipelined LPUSH, no dedup",
        )
    )
    report.add(
        Row(
            NAME,
            f"single enqueues, one process, {THREADS} threads (a web service's request threads)",
            "stops/s",
            round(threaded),
            raw=round(raw_rate),
            target=">= 5,000/s",
            met=threaded >= 5000,
        )
    )
    report.add(
        Row(
            NAME,
            f"the same {n:,} again: all deduplicated ({deduplicated:,})",
            "stops/s",
            round(repeat_rate),
            target=f"{n:,} deduplicated",
            met=deduplicated == n,
        )
    )
    report.add(
        Row(
            NAME,
            "bulk stop_recordings([...])",
            "stops/s",
            round(bulk_rate),
            raw=round(raw_rate),
            target=">= 20,000/s",
            met=bulk_rate >= 20000,
        )
    )
    report.add(
        Row(
            NAME,
            "CLI enqueue --file (progress bar, interpreter start-up included)",
            "stops/s",
            round(cli_rate),
            raw=round(raw_rate),
            target=">= 20,000/s",
            met=cli_rate >= 20000,
        )
    )


def _threaded(producer: Producer, calls: list[str], threads: int) -> float:
    """Single enqueues from ``threads`` threads sharing one producer (its pool is thread-safe)."""

    def run(part: list[str]) -> None:
        for call in part:
            producer.stop_recording(call)

    workers = [threading.Thread(target=run, args=(calls[i::threads],)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(calls) / (time.perf_counter() - started)


def _raw_lpush(stack: BenchStack, count: int) -> float:
    """The Redis ceiling: the same messages LPUSHed in pipelines of 500, nothing else."""
    client = stack.client()
    messages = [stop_message({"call_uuid": call}, queue="raw") for call in call_uuids(count)]
    started = time.perf_counter()
    for start in range(0, count, 500):
        with client.pipeline(transaction=False) as pipe:
            for message in messages[start : start + 500]:
                pipe.lpush("raw", message)
            pipe.execute()
    elapsed = time.perf_counter() - started
    client.close()
    return count / elapsed
