"""Scenario 10: a backend service enqueuing stops over HTTP, with the shipped defaults.

``bench/webservice.py`` served twice on loopback while a worker drains: the threaded ``Producer``
under gunicorn (``--preload``, 2 workers x 8 threads) and ``AsyncProducer`` under uvicorn (2
workers, an event loop each): one process per core for both. Clients POST ``/stop`` from threads,
one keep-alive connection each; the figures are requests per second and the enqueue's own latency
inside the service (p50, p99).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids
from bench.stack import BenchStack
from bench.stats import percentile
from bench.webservice import load, request
from harness.procs import ROOT, free_port, terminate, wait_for
from recstop.worker.state.acl import Role

NAME = "10 web service"
SERVERS = {
    "gunicorn + Producer (2 workers x 8 threads, --preload)": (
        "gunicorn",
        "--preload",
        "--workers",
        "2",
        "--threads",
        "8",
        "--bind",
        "127.0.0.1:{port}",
        "bench.webservice:wsgi_app",
    ),
    "uvicorn + AsyncProducer (2 workers)": (
        "uvicorn",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--no-access-log",
        "bench.webservice:asgi_app",
    ),
}


def run(report: Report, profile: Profile) -> None:
    """Each server in turn: requests/s and enqueue p50/p99 for ``profile.web_requests`` stops."""
    with BenchStack("webservice") as stack:
        stack.start_workers(1)
        for label, argv in SERVERS.items():
            rate, p50, p99, errors = _serve_and_load(stack, argv, profile)
            report.add(
                Row(
                    NAME,
                    f"{label}: POST /stop",
                    "requests/s",
                    round(rate),
                    note=f"enqueue p50 {p50:.2f} ms, p99 {p99:.2f} ms (inside the service); "
                    f"{profile.web_clients} client threads; {errors} errors",
                )
            )
            report.details.setdefault("webservice", {})[label] = {"rps": rate, "p50_ms": p50, "p99_ms": p99}
        stack.wait_drained(timeout_s=120)


def _serve_and_load(
    stack: BenchStack, argv: Sequence[str], profile: Profile
) -> tuple[float, float, float, int]:
    port = free_port()
    log = (stack.directory / f"{argv[0]}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", *(arg.format(port=port) for arg in argv)],
        cwd=ROOT,
        env={**os.environ, **stack.env_as(Role.PRODUCER)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _answers(port), timeout_s=30, what=f"{argv[0]} to answer")
        load(
            port,
            [f"/stop?call_uuid={c}" for c in call_uuids(profile.web_clients * 4)],
            threads=profile.web_clients,
        )
        paths = [f"/stop?call_uuid={c}" for c in call_uuids(profile.web_requests)]
        started = time.perf_counter()
        results = load(port, paths, threads=profile.web_clients)
        elapsed = time.perf_counter() - started
    finally:
        terminate(proc)
        log.close()
    enqueue_ms = [body["enqueue_ms"] for status, _, body in results if status == 200]
    errors = len(paths) - len(enqueue_ms)
    return len(results) / elapsed, percentile(enqueue_ms, 50), percentile(enqueue_ms, 99), errors


def _answers(port: int) -> bool:
    try:
        return request(port, "GET", "/ping", timeout_s=1)[0] == 200
    except OSError:
        return False
