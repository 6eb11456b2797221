"""Scenario 2: a steady trickle against a fast API; enqueue → DELETE arriving at the API."""

from __future__ import annotations

import time

import urllib3

from bench.naive import TASK_NAME, make_app
from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids, paced
from bench.stack import AUTH_ID, TOKEN, BenchStack
from bench.stats import percentile
from recstop.worker.api.client import record_url

NAME = "2 latency"


def run(report: Report, profile: Profile) -> None:
    """``steady_rps`` stops per second for ``steady_s``, sandbox latency 0."""
    n = int(profile.steady_rps * profile.steady_s)
    recstop = _recstop(n, profile.steady_rps)
    tuned = _naive(n, profile.steady_rps)
    raw = _raw(n, profile.steady_rps)
    for q, target in ((50, 3.0), (99, 10.0)):
        value = percentile(recstop, q) * 1000
        report.add(
            Row(
                NAME,
                f"p{q} enqueue -> DELETE at the API, {profile.steady_rps:g}/s",
                "ms",
                round(value, 2),
                naive_tuned=round(percentile(tuned, q) * 1000, 2),
                raw=round(percentile(raw, q) * 1000, 2),
                target=f"<= {target:g} ms",
                met=value <= target,
                higher_is_better=False,
            )
        )


def _recstop(n: int, rate: float) -> list[float]:
    with BenchStack("latency") as stack:
        stack.start_workers(1)
        producer = stack.producer()
        ids = call_uuids(n)
        sent: dict[str, float] = {}

        def one(i: int) -> None:
            sent[ids[i]] = time.time()
            producer.stop_recording(ids[i])

        stack.feed.reset()
        paced(n, rate, one)
        stack.feed.wait_ok(set(ids), timeout_s=60)
        arrivals = stack.feed.first_ok()
        return [arrivals[c] - sent[c] for c in ids if c in arrivals]


def _naive(n: int, rate: float) -> list[float]:
    with BenchStack("latency-tuned") as stack:
        stack.start_naive(1, "tuned", 64)
        app = make_app({"NAIVE_BROKER_URL": stack.redis.url})
        ids = call_uuids(n)
        sent: dict[str, float] = {}

        def one(i: int) -> None:
            sent[ids[i]] = time.time()
            app.send_task(TASK_NAME, args=[ids[i]], queue="naive")

        stack.feed.reset()
        try:
            paced(n, rate, one)
        finally:
            app.close()
        stack.feed.wait_ok(set(ids), timeout_s=60)
        arrivals = stack.feed.first_ok()
        return [arrivals[c] - sent[c] for c in ids if c in arrivals]


def _raw(n: int, rate: float) -> list[float]:
    with BenchStack("latency-raw") as stack:
        pool = urllib3.PoolManager(maxsize=4)
        headers = {"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN}
        ids = call_uuids(n)
        sent: dict[str, float] = {}

        def one(i: int) -> None:
            sent[ids[i]] = time.time()
            pool.request("DELETE", record_url(stack.sandbox.api_base, AUTH_ID, ids[i]), headers=headers)

        stack.feed.reset()
        paced(n, rate, one)
        stack.feed.wait_ok(set(ids), timeout_s=60)
        arrivals = stack.feed.first_ok()
        return [arrivals[c] - sent[c] for c in ids if c in arrivals]
