"""Measurement helpers for the benchmark: percentiles, rate windows, process CPU/RSS and Redis op counts."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import psutil
import redis

SAMPLE_INTERVAL_S: Final = 0.2
MB: Final = 1024 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], not {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies given in seconds, in milliseconds rounded to 0.01."""
    return {
        "p50": round(percentile(latencies_s, 50) * 1000, 2),
        "p90": round(percentile(latencies_s, 90) * 1000, 2),
        "p99": round(percentile(latencies_s, 99) * 1000, 2),
        "max": round(max(latencies_s) * 1000, 2),
    }


def max_window_count(times: Sequence[float], window_s: float = 1.0) -> int:
    """The most events in any half-open window ``[t, t + window_s)`` (two pointers over sorted times)."""
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, not {window_s}")
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        # The best window can always start at an event; event ``end`` is inside [ordered[start], +w).
        while t >= ordered[start] + window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def achieved_rate(times: Sequence[float]) -> float:
    """Events per second between the first and the last event, ``(n - 1) / span``; 0.0 below 2 events."""
    if len(times) < 2:
        return 0.0
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ProcUsage:
    """One named process tree over a sampling period: CPU seconds, cores (CPU / wall) and peak RSS."""

    cpu_s: float
    cores: float
    peak_rss_mb: float


class ProcSampler:
    """CPU and peak RSS of named processes and their descendants (prefork children included)."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self._roots: dict[str, psutil.Process | None] = {}
        self._cpu_start: dict[str, dict[int, float]] = {}
        self._cpu_last: dict[str, dict[int, float]] = {}
        self._peak_rss: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def start(self) -> ProcSampler:
        """Record every tree's CPU times now and start sampling RSS in a background thread."""
        for name, pid in self.pids.items():
            try:
                self._roots[name] = psutil.Process(pid)
            except psutil.Error:
                self._roots[name] = None
            self._cpu_last[name] = {}
            self._peak_rss[name] = 0
        self._sample()
        self._cpu_start = {name: dict(cpus) for name, cpus in self._cpu_last.items()}
        self._started = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, ProcUsage]:
        """Stop sampling; per name, the CPU used since ``start()``, as seconds and cores, and peak RSS."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sample()
        wall = time.monotonic() - self._started
        usage = {}
        for name in self.pids:
            before = self._cpu_start.get(name, {})
            after = self._cpu_last.get(name, {})
            # A process that appeared later starts from 0; one that exited keeps its last sample.
            cpu = sum(after.values()) - sum(before.get(pid, 0.0) for pid in after)
            usage[name] = ProcUsage(
                cpu_s=round(cpu, 3),
                cores=round(cpu / wall, 3) if wall > 0 else 0.0,
                peak_rss_mb=round(self._peak_rss.get(name, 0) / MB, 1),
            )
        return usage

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            for name, root in self._roots.items():
                if root is None:
                    continue
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:  # the root exited: keep what was seen
                    continue
                rss = 0
                for proc in tree:
                    try:
                        with proc.oneshot():
                            cpu = proc.cpu_times()
                            rss += proc.memory_info().rss
                    except psutil.Error:  # exited (or a zombie) between listing and reading
                        continue
                    self._cpu_last[name][proc.pid] = cpu.user + cpu.system
                self._peak_rss[name] = max(self._peak_rss[name], rss)


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    """Redis's cumulative per-command call counts and CPU seconds (user + sys) at one moment."""

    calls: dict[str, int]
    cpu_s: float


class RedisOps:
    """Reads ``INFO commandstats`` and ``INFO cpu`` to count the commands and CPU Redis spent."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def snapshot(self) -> RedisSnapshot:
        """Call counts per command and ``used_cpu_user + used_cpu_sys``, with one INFO call."""
        info = self.client.info("commandstats", "cpu")
        assert isinstance(info, dict)
        calls = {
            str(key).removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if str(key).startswith("cmdstat_") and isinstance(value, dict)
        }
        return RedisSnapshot(calls, float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))

    @staticmethod
    def delta(before: RedisSnapshot, after: RedisSnapshot) -> dict[str, int]:
        """Calls per command between two snapshots, and ``total``; INFO itself (the snapshots) is left out."""
        out = {
            command: count - before.calls.get(command, 0)
            for command, count in sorted(after.calls.items())
            if command != "info" and count - before.calls.get(command, 0) > 0
        }
        out["total"] = sum(out.values())
        return out

    @staticmethod
    def cpu_s(before: RedisSnapshot, after: RedisSnapshot) -> float:
        """Redis CPU seconds (user + sys) spent between two snapshots."""
        return round(after.cpu_s - before.cpu_s, 6)


class CommandLog:
    """Counts the commands clients send to Redis (``MONITOR``), apart from those scripts run inside.

    Each one is a request on the wire: a round trip, unless it was pipelined with others. A script
    call counts once (``evalsha``), however many commands it runs, and a transaction once
    (``multi``), however many commands it holds.
    """

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._counts: dict[str, int] = {}
        self._in_transaction: set[str] = set()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def start(self) -> CommandLog:
        """Start counting; return once MONITOR is on."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MONITOR did not start")
        return self

    def stop(self) -> dict[str, int]:
        """Stop counting; the counts per command (lower case) and ``total``."""
        self._stop.set()
        self._client.ping()  # one more line, so that listen() returns and sees the stop
        self._thread.join(10)
        out = dict(sorted(self._counts.items()))
        out["total"] = sum(out.values())
        return out

    def _run(self) -> None:
        with self._client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            for event in monitor.listen():
                if self._stop.is_set():
                    return
                if event.get("client_type") == "lua":
                    continue
                command = str(event.get("command", "")).split(" ", 1)[0].strip('"').lower()
                client = f"{event.get('client_address')}:{event.get('client_port')}"
                if client in self._in_transaction:
                    if command == "exec":
                        self._in_transaction.discard(client)
                    continue
                if command == "multi":
                    self._in_transaction.add(client)
                self._counts[command] = self._counts.get(command, 0) + 1
