"""A consumer's heartbeat thread: it beats in ``recstop:consumers`` and reaps the silent consumers.

A worker that is alive but slow keeps beating from this thread, so its messages are never taken
from it however long it holds them; one that stops beating (SIGKILL, OOM kill, host or network
lost) has its in-flight messages moved back by the next live consumer's beat (``state.inflight``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import structlog
from redis.exceptions import RedisError

from recstop.worker.state.inflight import Inflight
from recstop.worker.state.outage import RedisOutage

log = structlog.get_logger("recstop.fetch")


class Heartbeat:
    """A consumer's heartbeat thread; each beat also reaps the consumers that stopped beating.

    ``sources``: the lists reaped from every silent consumer whether or not it named them (recstop's
    lanes), besides those its sources set names.
    """

    def __init__(self, inflight: Inflight, sources: Sequence[str], *, interval_s: float) -> None:
        self.inflight = inflight
        self.sources = list(sources)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recstop-heartbeat", daemon=True)
        # A few lines per outage, naming the Redis and the cause; the beats keep their interval
        # (backing off would get this consumer reaped once Redis answers again).
        self._outage = RedisOutage.for_client(
            "heartbeat_redis_unavailable",
            inflight.client,
            base_s=interval_s,
            cap_s=interval_s,
            logger=log,
            consumer=inflight.consumer,
        )

    def start(self) -> Heartbeat:
        """Beat at once (a restarted worker reaps what its predecessor held), then every interval."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (the consumer then counts as gone after ``timeout_s``)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def beat_once(self) -> int:
        """One heartbeat and reap; how many messages were handed back."""
        now, stale = self.inflight.beat()
        stale = [c for c in stale if c != self.inflight.consumer]
        if not stale:
            return 0
        counts = self.inflight.reap(stale, self.sources, stale_before=now - self.inflight.timeout_s)
        for consumer, count in zip(stale, counts, strict=True):
            log.warning("consumer_reaped", consumer=consumer, requeued=count)
        return sum(counts)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
            except RedisError as exc:
                self._stop.wait(self._outage.failed(exc))
                continue
            self._outage.recovered()
            self._stop.wait(self.interval_s)
