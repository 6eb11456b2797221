"""The scheduler: publishes stops whose time has come (delayed stops, retries and watchdogs alike).

Nothing waits in a worker's memory or in kombu's ETA machinery: a stop that must wait sits in the
``recstop:schedule`` sorted set, and every worker runs this loop, which leases due entries
atomically and publishes them as ordinary task messages. A worker that dies mid-publish leaves a
lease that expires, and another worker publishes the stop then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from redis.exceptions import RedisError

from recstop.worker.state.outage import RedisOutage
from recstop.worker.state.redisclient import ReplicaShortfall
from recstop.worker.state.schedule import CLAIM_BATCH, Schedule

log = structlog.get_logger("recstop.scheduler")
#: The event of the scheduler's outage line (``scheduler_redis_recovered`` when it is over).
OUTAGE_EVENT = "scheduler_redis_unavailable"
#: Longest wait between tries while Redis is unreachable (due stops wait at most this much longer).
OUTAGE_CAP_S = 2.0


class Scheduler:
    """Leases due stops and publishes them; ``run_once`` is the whole algorithm."""

    def __init__(
        self,
        schedule: Schedule,
        *,
        poll_s: float,
        on_tick: Callable[[], None] | None = None,
        outage: RedisOutage | None = None,
    ) -> None:
        """``outage`` reports a Redis that cannot be reached (and sets the backoff meanwhile)."""
        self.schedule = schedule
        self.poll_s = poll_s
        self.on_tick = on_tick
        self.outage = outage or RedisOutage.for_settings(
            OUTAGE_EVENT, schedule.ctx.redis, cap_s=OUTAGE_CAP_S, logger=log
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> tuple[int, float | None]:
        """Publish every due stop; return how many, and seconds until the next one is due."""
        claimed = self.schedule.claim_due()
        published = 0
        for item in self.schedule.publish_due(claimed.leases):
            if item.republished:
                log.warning("stop_republished", task_id=item.task_id, key=item.member, times=item.republished)
            published += item.published
        if published:
            log.debug("scheduler_published", count=published)
        return published, (0.0 if len(claimed.leases) >= CLAIM_BATCH else claimed.wait_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.on_tick is not None:
                    self.on_tick()  # the worker's heartbeat (celeryapp.app): its failures are ours
                _, wait_s = self.run_once()
            except (RedisError, ReplicaShortfall) as exc:
                # A few lines per outage, naming the Redis and the cause; tries back off meanwhile.
                # A shortfall (RECSTOP_REDIS_WAIT_REPLICAS, no replica in a failover's gap): the
                # stops were published on the master; a master lost before a replica held them
                # still has their leased entries, published again when the leases expire.
                self._stop.wait(self.outage.failed(exc))
                continue
            self.outage.recovered()
            sleep_s = self.poll_s if wait_s is None else min(self.poll_s, wait_s)
            self._stop.wait(max(sleep_s, 0.005))

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="recstop-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
