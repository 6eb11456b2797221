"""The benchmark's measurement helpers and its two references (raw threads, naive Celery)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support import ROOT, RedisServer, wait_for

if str(ROOT) not in sys.path:  # bench/ is not an installed package (yet): import it from the checkout
    sys.path.insert(0, str(ROOT))

from bench.naive import NaiveWorker, publish
from bench.raw import run_raw
from bench.stats import (
    ProcSampler,
    RedisOps,
    achieved_rate,
    max_window_count,
    percentile,
    summary_ms,
)
from harness.sandbox import SandboxProcess

AUTH_ID = "MA_BENCH00001"
TOKEN = "tok-Bench-5d1f0e9a7c"


def test_percentile_interpolates_linearly():
    """Percentiles interpolate between closest ranks, like numpy's default."""
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(map(float, range(101))), 90) == 90.0


def test_percentile_refuses_empty_and_out_of_range():
    """No values, or q outside [0, 100], is an error rather than a made-up number."""
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 101)


def test_summary_ms_converts_and_rounds():
    """summary_ms reports p50/p90/p99/max in milliseconds, rounded to 0.01."""
    latencies = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert summary_ms(latencies) == {"p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0}
    assert summary_ms([0.0123456]) == {"p50": 12.35, "p90": 12.35, "p99": 12.35, "max": 12.35}


def test_max_window_count_half_open_boundary():
    """An event exactly window_s after another falls outside that window: [t, t + w) is half-open."""
    assert max_window_count([0.0, 1.0]) == 1
    assert max_window_count([0.0, 0.5, 1.0]) == 2
    assert max_window_count([0.0, 0.5, 0.999, 1.0]) == 3
    assert max_window_count([0.0, 0.25, 0.5], window_s=0.5) == 2


def test_max_window_count_finds_the_densest_window():
    """The densest window is found wherever it is, from unsorted input, duplicates included."""
    times = [5.0, 0.0, 2.1, 2.2, 2.2, 2.9, 3.05, 9.0]
    assert max_window_count(times) == 5  # [2.1, 3.1)
    assert max_window_count(times, window_s=0.1) == 2
    assert max_window_count([]) == 0
    assert max_window_count([3.0]) == 1
    assert max_window_count([1.0] * 4) == 4
    with pytest.raises(ValueError):
        max_window_count([1.0], window_s=0)


def test_achieved_rate():
    """The achieved rate is (n - 1) / (last - first), and 0 when fewer than two events or no span."""
    assert achieved_rate([0.0, 0.5, 1.0, 1.5, 2.0]) == 2.0
    assert achieved_rate([2.0, 0.0, 1.0]) == 1.0
    assert achieved_rate([]) == 0.0
    assert achieved_rate([1.0]) == 0.0
    assert achieved_rate([1.0, 1.0]) == 0.0


def test_proc_sampler_measures_cpu_and_survives_exit():
    """ProcSampler sees a busy child's CPU and RSS, and an exited process does not crash it."""
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<0.6: pass"]
    )
    short = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        sampler = ProcSampler({"busy": busy.pid, "short": short.pid, "self": os.getpid()}).start()
        short.wait(10)
        busy.wait(10)
        usage = sampler.stop()
    finally:
        busy.kill()
        short.kill()
    assert usage["busy"].cpu_s > 0.1
    assert usage["busy"].peak_rss_mb > 1
    assert usage["short"].cpu_s < usage["busy"].cpu_s  # sleeping costs less than spinning
    assert set(usage) == {"busy", "short", "self"}


@pytest.mark.integration
def test_redis_ops_delta_counts_known_commands(redis_server: RedisServer):
    """RedisOps.delta counts exactly the commands issued between snapshots, without its own INFO."""
    client = redis_server.client()
    ops = RedisOps(client)
    before = ops.snapshot()
    for i in range(3):
        client.set(f"k{i}", "v")
    client.get("k0")
    client.lpush("q", "a", "b")
    client.rpop("q")
    client.rpop("q")
    after = ops.snapshot()
    delta = ops.delta(before, after)
    assert delta == {"set": 3, "get": 1, "lpush": 1, "rpop": 2, "total": 7}
    assert 0 < ops.cpu_s(before, after) < 1  # seven commands take microseconds of Redis CPU, not none


@pytest.mark.integration
@pytest.mark.parametrize("client", ["urllib3", "requests"])
def test_run_raw_against_the_sandbox(tmp_path: Path, client: str):
    """run_raw issues one DELETE per call_uuid; the sandbox answers every one with 204."""
    sandbox = SandboxProcess(tmp_path / "sandbox.log", {AUTH_ID: TOKEN}).start()
    try:
        call_uuids = [str(uuid.uuid4()) for _ in range(20)]
        result = run_raw(sandbox.api_base, AUTH_ID, TOKEN, call_uuids, threads=2, client=client)  # type: ignore[arg-type]
        logged = sandbox.client.requests()
    finally:
        sandbox.stop()
    assert result.count == 20
    assert result.statuses == {204: 20}
    assert result.elapsed_s > 0
    assert 0 < result.cpu_s < result.elapsed_s * 2  # twenty calls cost CPU, at most both cores' worth
    assert sorted(r["call_uuid"] for r in logged if r["method"] == "DELETE") == sorted(call_uuids)


@pytest.mark.integration
def test_naive_tuned_worker_stops_every_recording(tmp_path: Path, redis_server: RedisServer):
    """A tuned naive Celery worker consumes 20 published tasks: 20 DELETEs answered 204."""
    sandbox = SandboxProcess(tmp_path / "sandbox.log", {AUTH_ID: TOKEN}).start()
    env = {
        "NAIVE_BROKER_URL": redis_server.url,
        "NAIVE_API_BASE": sandbox.api_base,
        "NAIVE_AUTH_ID": AUTH_ID,
        "NAIVE_AUTH_TOKEN": TOKEN,
        "NAIVE_MODE": "tuned",
        "NAIVE_CONCURRENCY": "4",
    }
    worker = NaiveWorker(env, tmp_path / "naive.log")
    try:
        started = time.monotonic()
        worker.start()
        print(f"naive worker ready in {time.monotonic() - started:.2f}s")
        call_uuids = [str(uuid.uuid4()) for _ in range(20)]
        elapsed = publish(redis_server.url, call_uuids)
        assert elapsed > 0

        def all_deleted() -> list[dict[str, object]] | None:
            done = [r for r in sandbox.client.requests() if r["method"] == "DELETE" and r["status"] == 204]
            return done if len(done) >= 20 else None

        done = wait_for(all_deleted, timeout_s=30, interval_s=0.1, what="20 DELETEs answered 204")
        assert sorted(str(r["call_uuid"]) for r in done) == sorted(call_uuids)
    finally:
        worker.stop()
        sandbox.stop()
    assert worker.proc is None
