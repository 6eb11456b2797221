"""A received Celery message with an ETA becomes a delayed stop in recstop's durable schedule.

The consumer hands such a message here instead of to Celery (which would hold it in the worker's
memory until due). One script records the stop as scheduled, under the message's own task id, and
removes the message from the consumer's in-flight list (``StopStore.defer``): from then on the
stop lives in ``recstop:schedule`` exactly as one enqueued with ``delay=``/``at=`` (deduplication,
cancel, revoke, status, Flower's ETA, the scheduler publishes it when due). A message whose
arguments are not a valid stop is dead-lettered (reason ``malformed``) as the task would. A
message that names no account gets the worker's default one, as a producer's stop does: the
stop's record, its audit events and the message the scheduler publishes name the account used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog
from redis.exceptions import RedisError

from recstop.worker.celeryapp.timing import Timing, iso, with_not_after
from recstop.worker.model.errors import InvalidStopRequest
from recstop.worker.model.validation import decode_task_message
from recstop.worker.state.deadletters import DeadLetters
from recstop.worker.state.enqueue import Enqueues, NewStop
from recstop.worker.state.inflight import HELD
from recstop.worker.state.keys import TASK_NAME, URGENT_QUEUE

log = structlog.get_logger("recstop.deferral")


class Deferral:
    """Moves ETA messages into the schedule; the collaborators are passed in."""

    def __init__(
        self, enqueues: Enqueues, deadletters: DeadLetters, *, default_auth_id: str | None = None
    ) -> None:
        self.enqueues = enqueues
        self.deadletters = deadletters
        self.default_auth_id = default_auth_id

    def __call__(self, message: Any, timing: Timing) -> None:  # noqa: ANN401 - a kombu message
        """Schedule the message's stop and acknowledge the message, or leave it unacked on failure."""
        task_id: str = message.headers["id"]
        args, kwargs, _embed = message.decode()
        try:
            request = with_not_after(decode_task_message(args, kwargs), timing.expires)
        except InvalidStopRequest as exc:
            entry = self.deadletters.add_malformed(
                task_id, {"task": TASK_NAME, "args": args, "kwargs": kwargs}, str(exc)
            )
            log.warning("message_malformed", task_id=task_id, reason=str(exc), dlq_id=entry)
            message.ack()
            return
        if request.auth_id is None:
            request = dataclasses.replace(request, auth_id=self.default_auth_id)
        tag = message.delivery_tag
        fetched = HELD.pop(tag, None)
        urgent = (message.delivery_info or {}).get("routing_key") == URGENT_QUEUE
        try:
            enqueued = self.enqueues.defer(
                NewStop(request, task_id, at_epoch=timing.eta), fetched, urgent=urgent
            )
        except RedisError as exc:
            # Not acked: the message stays in this consumer's in-flight list and goes back to its
            # lane when the channel closes or the consumer is reaped.
            if fetched is not None:
                HELD[tag] = fetched
            log.error("defer_failed", task_id=task_id, error=type(exc).__name__)  # noqa: TRY400
            return
        log.info(
            "stop_deferred",
            task_id=task_id,
            call_uuid=request.call_uuid,
            due_at=iso(timing.eta) if timing.eta is not None else None,
            not_after=request.not_after.isoformat() if request.not_after else None,
            deduplicated=enqueued.deduplicated,
            joined=enqueued.task_id if enqueued.deduplicated else None,
            state=str(enqueued.state),
        )
        message.ack()  # kombu's bookkeeping only: the script took it off the in-flight list
