"""``python -m bench.profile``: where one draining worker's CPU goes, by layer, per stop.

One default ``celery -A recstop.worker worker`` drains ``--stops`` stops from one bulk enqueue
against the sandbox at ``--latency-ms``; py-spy samples the thread holding the interpreter lock
(``--gil``: on a CPU-bound worker, its CPU) and every sample is attributed to the innermost layer
it is in (:data:`LAYERS`), so the layers add up to the whole. Printed: stops/s, the worker's CPU
per stop (user + system over the drain), Redis' CPU and commands per stop, and the table of layers
in microseconds of CPU per stop (the samples' shares of the measured CPU). ``KEY=VALUE`` arguments
are worker settings (``RECSTOP_AUDIT_STREAM_MAX=0``); ``--raw PATH`` keeps py-spy's samples, and
``--analyze PATH`` attributes a kept file again without running anything.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import psutil

from bench.scenarios import call_uuids
from bench.stack import BenchStack
from bench.stats import RedisOps

#: Layers, each named by the frames that are in it; a sample belongs to the innermost frame that
#: matches one (so the finish script's JSON encoding is the finish script's, not "JSON").
LAYERS: Final[Sequence[tuple[str, str]]] = (
    ("kombu event loop, poller", r"kombu/asynchronous|kombu/transport/|celery/worker/loops.py"),
    ("transport: fetch, deliver", r"recstop/worker/broker/"),
    ("kombu message decode", r"kombu/message.py|kombu/serialization.py"),
    ("consumer: recstop checks", r"recstop/worker/celeryapp/(consumer|poison|timing).py"),
    ("Celery strategy, Request", r"celery/worker/(strategy|request|state).py|celery/worker/consumer/"),
    ("Celery pool, trace", r"celery/app/trace.py|celery/concurrency/|concurrent/futures/"),
    ("task events", r"celery/events/|send_event"),
    ("task body (tasks.py)", r"recstop/worker/celeryapp/tasks.py"),
    ("executor (own)", r"recstop/worker/run/executor.py"),
    ("begin.lua call", r"Attempts.begin "),
    ("finish.lua call", r"Attempts.finish "),
    ("HTTP DELETE", r"recstop/worker/api/"),
    ("rate limit, priority", r"recstop/worker/policy/"),
    ("attempt log line", r"_log_attempt|recstop/worker/observability/logs.py|structlog/"),
    ("confirmer", r"recstop/worker/run/confirmer.py"),
    ("scheduler, heartbeats", r"recstop/worker/run/scheduler.py|Heartbeat|recstop/worker/broker/heartbeat"),
)
#: Samples of no layer above: the thread's first frames say where they ran.
OTHER: Final = "other"
SPY_RATE_HZ: Final = 250


def layer_of(stack: str) -> str:
    """The innermost layer a sample's stack (py-spy's raw ``frame;frame;...``) is in."""
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, pattern in LAYERS:
            if re.search(pattern, frame):
                return name
    return OTHER


def attribute(raw: Path) -> Counter[str]:
    """Samples per layer in a py-spy ``--format raw`` file."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[layer_of(stack)] += int(count)
    return counts


def table(counts: Counter[str], cpu_us_per_stop: float) -> str:
    """The layers as a Markdown table: share of samples and microseconds of CPU per stop."""
    total = sum(counts.values()) or 1
    lines = ["| layer | share | CPU per stop (us) |", "|---|---|---|"]
    for name in [*(n for n, _ in LAYERS), OTHER]:
        share = counts.get(name, 0) / total
        lines.append(f"| {name} | {share:.1%} | {share * cpu_us_per_stop:.0f} |")
    lines.append(f"| total | 100% | {cpu_us_per_stop:.0f} |")
    return "\n".join(lines)


def drain(stops: int, latency_ms: float, overrides: Mapping[str, str], raw: Path | None) -> dict[str, float]:
    """One default worker drains ``stops``; its rate, CPU per stop and Redis' work per stop."""
    with BenchStack("profile", latency_ms=latency_ms) as stack:
        (worker,) = stack.start_workers(1, **overrides)
        assert worker.proc is not None
        proc = psutil.Process(worker.proc.pid)
        ids = call_uuids(stops)
        stack.feed.reset()
        ops = RedisOps(stack.client())
        spy = None
        if raw is not None:
            argv = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "-p",
                str(proc.pid),
                "-o",
                str(raw),
                "-f",
                "raw",
            ]
            argv += ["-r", str(SPY_RATE_HZ), "--nonblocking", "--gil"]
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before, cpu0 = ops.snapshot(), proc.cpu_times()
        started = time.time()
        stack.producer().stop_recordings(ids)
        complete = stack.feed.wait_ok(set(ids), timeout_s=max(120.0, stops / 50))
        stack.wait_drained(timeout_s=60)
        cpu1, after = proc.cpu_times(), ops.snapshot()
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        arrivals = stack.feed.first_ok()
    delta = RedisOps.delta(before, after)
    return {
        "complete": float(complete),
        "rate": len(arrivals) / (max(arrivals.values()) - started),
        "worker_cpu_us": ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / stops * 1e6,
        "worker_sys_us": (cpu1.system - cpu0.system) / stops * 1e6,
        "redis_cpu_us": RedisOps.cpu_s(before, after) / stops * 1e6,
        "redis_commands": delta["total"] / stops,
        **{f"cmd_{name}": count / stops for name, count in delta.items() if name != "total"},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Drain once (with py-spy when ``--raw``), print the figures and the layers."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--stops", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--raw", type=Path, help="run py-spy, keep its samples here")
    parser.add_argument("--analyze", type=Path, help="attribute a kept raw file; run nothing")
    parser.add_argument("--cpu-us", type=float, default=0.0, help="with --analyze: CPU per stop")
    parser.add_argument("settings", nargs="*", help="KEY=VALUE worker settings")
    args = parser.parse_args(argv)
    if args.analyze is not None:
        print(table(attribute(args.analyze), args.cpu_us))
        return 0
    overrides = dict(item.split("=", 1) for item in args.settings)
    figures = drain(args.stops, args.latency_ms, overrides, args.raw)
    print(
        f"rate {figures['rate']:.0f}/s; worker CPU {figures['worker_cpu_us']:.0f} us/stop "
        f"(system {figures['worker_sys_us']:.0f}); "
        f"Redis CPU {figures['redis_cpu_us']:.0f} us/stop, {figures['redis_commands']:.1f} commands/stop"
        + ("" if figures["complete"] else "; INCOMPLETE")
    )
    print(
        "Redis commands per stop: "
        + ", ".join(
            f"{k.removeprefix('cmd_')} {v:.2f}"
            for k, v in sorted(figures.items(), key=lambda kv: -kv[1])
            if k.startswith("cmd_") and v >= 0.01
        )
    )
    if args.raw is not None:
        print(table(attribute(args.raw), figures["worker_cpu_us"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
