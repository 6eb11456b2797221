"""Prometheus metrics for recstop, read from Redis at scrape time (``recstop metrics``).

Counters live in the Redis hash ``recstop:metrics`` (``keys.METRICS``), incremented by ``finish.lua``
in the same script that records each outcome, so they are exact and add up over every worker
process on every host. Gauges (queue, schedule, dead letters, live workers) are read live. The
exporter holds no state of its own: any number of them can run, and a restart loses nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Final

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from recstop.worker.audit.lag import AuditLag, read_lag
from recstop.worker.observability.backlog import oldest_age_s
from recstop.worker.observability.counters import counter_families, counter_metric
from recstop.worker.state import keys
from recstop.worker.state.inflight import inflight_lists

#: Every list of every lane: lane → its lists (the lane itself and its priority lists).
QUEUE_LISTS: Final = {lane: keys.lane_lists(lane) for lane in keys.LANES}


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reads from Redis, in one round trip."""

    now: float
    counters: Mapping[str, str]
    dead_letters: int
    schedule_due: int
    schedule_future: int
    oldest_due: float | None
    queued: Mapping[str, int]
    inflight: int
    heartbeats: Mapping[str, str]
    oldest_queued_s: Mapping[str, float]


def read_snapshot(client: Redis) -> Snapshot:
    """Read counters and gauges (one pipelined round trip, plus the in-flight lists; ``now`` is Redis')."""
    seconds, micros = client.time()
    now = seconds + micros / 1_000_000
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.METRICS)
    pipe.zcard(keys.DLQ_INDEX)
    pipe.zcount(keys.SCHEDULE, "-inf", now)
    pipe.zcount(keys.SCHEDULE, f"({now}", "+inf")
    pipe.zrange(keys.SCHEDULE, 0, 0, withscores=True)
    lists = [(lane, name) for lane, names in QUEUE_LISTS.items() for name in names]
    for _, name in lists:
        pipe.llen(name)
    inflight = inflight_lists(client)
    for key in inflight:
        pipe.llen(key)
    pipe.hgetall(keys.WORKERS)
    counters, dead, due, future, first, *rest = pipe.execute()
    lengths, held, heartbeats = rest[: len(lists)], rest[len(lists) : -1], rest[-1]
    oldest = float(first[0][1]) if first and float(first[0][1]) <= now else None
    queued = dict.fromkeys(QUEUE_LISTS, 0)
    for (lane, _), length in zip(lists, lengths, strict=True):
        queued[lane] += int(length)
    ages = {lane: oldest_age_s(client, lane, now) for lane in QUEUE_LISTS}
    return Snapshot(now, counters, dead, due, future, oldest, queued, sum(held), heartbeats, ages)


def split_workers(heartbeats: Mapping[str, str], now: float, max_age_s: float) -> tuple[list[str], list[str]]:
    """Worker names whose heartbeat is at most ``max_age_s`` old, and the others (stale)."""
    live: list[str] = []
    stale: list[str] = []
    for name, beat in sorted(heartbeats.items()):
        try:
            age = now - float(beat)
        except ValueError:
            age = float("inf")
        (live if age <= max_age_s else stale).append(name)
    return live, stale


class RecstopCollector(Collector):
    """A custom collector: every scrape reads Redis afresh."""

    def __init__(self, client: Redis, *, max_heartbeat_age_s: float) -> None:
        self.client = client
        self.max_heartbeat_age_s = max_heartbeat_age_s

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape; only ``recstop_redis_up 0`` when Redis is unreachable."""
        up = GaugeMetricFamily("recstop_redis_up", "Whether the exporter could read Redis (1) or not (0).")
        started = time.perf_counter()
        try:
            snap = read_snapshot(self.client)
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from counter_families(snap.counters)
        yield from self._gauges(snap)
        with contextlib.suppress(RedisError):  # read after the snapshot: Redis may have gone since
            yield from _audit(read_lag(self.client))
        took = GaugeMetricFamily("recstop_scrape_redis_seconds", "Time spent reading Redis for this scrape.")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _gauges(self, snap: Snapshot) -> Iterator[Metric]:
        yield _gauge(
            "recstop_dead_letters", "Dead letters in the store (ZCARD recstop:dlq).", snap.dead_letters
        )
        schedule = GaugeMetricFamily(
            "recstop_schedule_entries",
            "Entries of recstop:schedule (delayed stops, retries, watchdogs, leases), due now or later.",
            labels=["when"],
        )
        schedule.add_metric(["due"], snap.schedule_due)
        schedule.add_metric(["future"], snap.schedule_future)
        yield schedule
        yield _gauge(
            "recstop_schedule_oldest_due_age_seconds",
            "How long the oldest due schedule entry has been due (0 when none is due).",
            0.0 if snap.oldest_due is None else snap.now - snap.oldest_due,
        )
        queue = GaugeMetricFamily(
            "recstop_queue_messages",
            "Messages waiting in each lane: the Celery queues `recstop.urgent` and `recstop`.",
            labels=["queue"],
        )
        for lane, length in snap.queued.items():
            queue.add_metric([lane], length)
        yield queue
        age = GaugeMetricFamily(
            "recstop_queue_oldest_age_seconds",
            "How long the next message of each lane has been due (the backlog's age; 0 when empty).",
            labels=["queue"],
        )
        for lane, seconds in snap.oldest_queued_s.items():
            age.add_metric([lane], round(seconds, 3))
        yield age
        yield _gauge(
            "recstop_inflight_messages",
            "Messages a worker fetched into its in-flight list and has not acknowledged.",
            snap.inflight,
        )
        live, stale = split_workers(snap.heartbeats, snap.now, self.max_heartbeat_age_s)
        workers = GaugeMetricFamily(
            "recstop_workers",
            f"Worker processes by heartbeat: live (at most {self.max_heartbeat_age_s:g} s old) or stale.",
            labels=["state"],
        )
        workers.add_metric(["live"], len(live))
        workers.add_metric(["stale"], len(stale))
        yield workers


def _audit(lag: AuditLag) -> Iterator[Metric]:
    """The audit sinks' lag (docs/audit.md): events not committed yet, their age, events dropped unread."""
    yield _gauge(
        "recstop_audit_lag_events",
        "Audit events in recstop:audit no sink has committed to the database yet (undelivered + pending).",
        lag.behind,
    )
    yield _gauge(
        "recstop_audit_pending_events",
        "Audit events a sink has read and not yet committed (acknowledged).",
        lag.pending,
    )
    yield _gauge(
        "recstop_audit_oldest_unacked_age_seconds",
        "Age of the oldest audit event no sink has committed yet (0 when none).",
        round(lag.oldest_unacked_age_s, 3),
    )
    yield counter_metric(
        "recstop_audit_dropped",
        "Audit events trimmed from the stream before any sink read them (RECSTOP_AUDIT_STREAM_MAX).",
        lag.dropped,
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def serve(
    client: Redis,
    *,
    host: str,
    port: int,
    max_heartbeat_age_s: float,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``/metrics`` on ``host:port`` until SIGTERM or SIGINT; ``on_ready`` gets its URL once bound."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecstopCollector(client, max_heartbeat_age_s=max_heartbeat_age_s))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server, thread = start_http_server(port, addr=host, registry=registry)
    if on_ready is not None:
        bound_port = server.server_address[1]
        on_ready(f"http://{host}:{bound_port}/metrics")
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
