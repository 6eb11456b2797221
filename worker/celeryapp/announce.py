"""A monitor that connects (Flower, ``celery events``) is told which stops wait in Redis.

Flower knows a task from its events only. A stop scheduled before Flower started, or while it
was restarting, had its ``task-sent`` published then: Flower would not list it until its next
attempt, and a scheduled stop never had one yet. Every Celery event receiver, once it listens,
broadcasts the ``heartbeat`` control command (``EventReceiver.wakeup_workers``) so that workers
show themselves at once. recstop's handler does what Celery's does (a ``worker-heartbeat``
event) and then announces the stops waiting in the schedule (``Schedule.announce``): a
``task-sent`` with its ETA, and a ``task-retried`` for a retry. It does so a moment later
(:data:`ANNOUNCE_AFTER_S`): kombu's Redis transport sends the receiver's PSUBSCRIBE only when it
starts draining, after the wakeup, so events published at once could reach no one. One worker
announces per wakeup (``keys.ANNOUNCING`` held a moment); a worker that starts announces too, for
a monitor that was there before it. Nothing in Redis changes: the events only tell.
"""

from __future__ import annotations

import threading
from typing import Any, Final

import structlog
from celery.worker import control
from redis.exceptions import RedisError

from recstop.worker.celeryapp.revoke import CONTROL_STEP
from recstop.worker.state import keys
from recstop.worker.state.store import StopStore

log = structlog.get_logger("recstop.announce")

#: How long one worker's announcement keeps the others from repeating it (a wakeup reaches all).
ANNOUNCE_HOLD_MS: Final = 2000
#: Seconds after a wakeup that the stops are announced: once the monitor surely listens, and again
#: for one slowed down (a duplicate event changes nothing in a monitor).
ANNOUNCE_AFTER_S: Final = (1.0, 5.0)
#: Celery's own handler, which this one calls first.
CELERY_HEARTBEAT: Final = control.heartbeat


def announce(store: StopStore) -> int:
    """Announce the waiting stops unless another worker just did; how many were announced."""
    try:
        if not store.ctx.client.set(keys.ANNOUNCING, "1", nx=True, px=ANNOUNCE_HOLD_MS):
            return 0
        told = store.schedule.announce()
    except RedisError as exc:  # advisory: the monitor lists them at their next event instead
        log.warning("announce_failed", error=type(exc).__name__)
        return 0
    if told:
        log.info("stops_announced", count=told)
    return told


def heartbeat(state: Any) -> None:  # noqa: ANN401 - Celery's control state
    """Tell worker(s) to send event heartbeat immediately (and announce the waiting stops)."""
    CELERY_HEARTBEAT(state)
    store: StopStore | None = getattr(state.consumer, "store", None)
    if store is None:
        return
    for delay_s in ANNOUNCE_AFTER_S:
        timer = threading.Timer(delay_s, announce, (store,))
        timer.daemon = True
        timer.name = "recstop-announce"
        timer.start()


def install(consumer: Any) -> None:  # noqa: ANN401 - Celery's consumer
    """Answer ``heartbeat`` with :func:`heartbeat` in this consumer's mailbox only (as ``revoke.install``).

    Celery's registry (``Panel.data``), shared by every app in the process, keeps Celery's own.
    """
    step = consumer.blueprint.steps.get(CONTROL_STEP) if consumer.blueprint is not None else None
    node = getattr(getattr(step, "box", None), "node", None)
    if node is None:  # remote control is off (worker_enable_remote_control): no mailbox to answer
        return
    node.handlers = {**node.handlers, "heartbeat": heartbeat}
