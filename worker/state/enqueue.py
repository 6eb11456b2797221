"""Enqueueing: a stop recorded (deduplicated) and its message pushed in one script, ``lua/enqueue.lua``.

Producers call it for new stops (``prepare`` then ``run``, so that a bulk enqueue prepares the
next chunk while Redis runs this one); the worker calls :meth:`Enqueues.defer` for a received
Celery message with an ETA, which the same script moves into the schedule and acknowledges.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from recstop.worker.config.fields import env_name
from recstop.worker.config.settings import RetryPolicy
from recstop.worker.model.errors import InvalidStopRequest
from recstop.worker.model.status import ReplayedFrom, iso
from recstop.worker.model.validation import StopRequest
from recstop.worker.model.vocabulary import Origin, State
from recstop.worker.state import keys, taskevents
from recstop.worker.state.cancels import Cancels
from recstop.worker.state.context import ScriptSettings, StoreContext, request_args
from recstop.worker.state.envelope import stop_message
from recstop.worker.state.results import results_args
from recstop.worker.state.scripts import LuaScript, reply_json

if TYPE_CHECKING:  # the worker's in-flight protocol: a producer never loads it
    from recstop.worker.state.inflight import Fetched


@dataclass(frozen=True)
class NewStop:
    """One stop to enqueue: the request, the task id a new run gets, and when it is due."""

    request: StopRequest
    task_id: str
    delay_s: float | None = None
    at_epoch: float | None = None
    #: A dead letter this run replays: removed once the run succeeds.
    dlq_id: str | None = None
    #: What the replayed dead run did (with ``dlq_id``): the new run's record keeps it.
    replay: ReplayedFrom | None = None


@dataclass(frozen=True)
class Enqueued:
    """What the script did with one stop: the task id that will stop the recording, and whether it was new."""

    task_id: str
    deduplicated: bool
    state: State
    #: The message went onto a queue in the same script (a new stop due now, a scheduled one pulled
    #: forward, or a pending one joined by an urgent stop).
    pushed: bool = False


@dataclass(frozen=True)
class Refused:
    """A stop the script refused: its ``not_after`` is past (by Redis' clock), or before the stop is due.

    The producer checks both first with its own clock (``producers.producer``); this is what Redis'
    clock found. ``deadline_s`` is set when ``not_after`` was not given (due + ``deadline_s``).
    """

    reason: str
    not_after: float | None = None
    due: float | None = None
    deadline_s: float | None = None

    def error(self) -> InvalidStopRequest:
        """The producer's error: the not_after, whether it was the default, and when the stop is due."""
        if self.not_after is None:
            return InvalidStopRequest("not_after", self.reason)
        given = iso(self.not_after) or ""
        if self.deadline_s is not None:
            variable = env_name(RetryPolicy, "deadline_s")
            given += f" (by default the time the stop is due + {self.deadline_s:g} s: {variable})"
        return InvalidStopRequest("not_after", f"{given} {self.reason} (due at {iso(self.due)})")


def parse_enqueue(raw: object) -> list[Enqueued | Refused]:
    """The reply of ``enqueue.lua``: ``{task_id, deduplicated, state, pushed}`` or ``{error}`` per stop."""
    return [_one(item) for item in reply_json(raw)]


def _one(item: Mapping[str, Any]) -> Enqueued | Refused:
    if "error" in item:
        return Refused(str(item["error"]), item.get("not_after"), item.get("due"), item.get("deadline_s"))
    return Enqueued(item["task_id"], bool(item["deduplicated"]), State(item["state"]), bool(item["pushed"]))


def accepted(reply: Enqueued | Refused) -> Enqueued:
    """The stop's :class:`Enqueued`; a refused one raises its InvalidStopRequest."""
    if isinstance(reply, Refused):
        raise reply.error()
    return reply


ENQUEUE: Final = LuaScript("enqueue", parse_enqueue)


@dataclass(frozen=True)
class PreparedEnqueue:
    """The keys and arguments of one ``enqueue`` script call (bulk enqueues prepare the next chunk)."""

    keys: list[str]
    args: dict[str, Any]
    messages: list[str]


class Enqueues:
    """New runs of stops: ``enqueue.lua`` for producers, replays and received ETA messages."""

    def __init__(self, ctx: StoreContext, cancels: Cancels) -> None:
        self.ctx = ctx
        self.cancels = cancels
        self._sent_channel = ctx.task_group_channel()

    def prepare(self, stops: Sequence[NewStop], *, urgent: bool, origin: Origin) -> PreparedEnqueue:
        """One ``enqueue`` call for ``stops`` (all on one lane): keys, arguments, messages.

        ``origin`` names the producer path in the audit trail.
        """
        return prepare_enqueue(self.ctx, stops, urgent=urgent, origin=origin, sent_channel=self._sent_channel)

    def run(self, call: PreparedEnqueue) -> list[Enqueued | Refused]:
        """Run a prepared ``enqueue`` (atomic, one round trip); the reply of each stop."""
        return self.ctx.durable(ENQUEUE, call.keys, call.args, call.messages)

    def enqueue(self, stop: NewStop, *, urgent: bool, origin: Origin) -> Enqueued:
        """Create a run for the stop unless one is pending; push its message if it is due now."""
        (reply,) = self.run(self.prepare([stop], urgent=urgent, origin=origin))
        return accepted(reply)

    def defer(self, stop: NewStop, fetched: Fetched | None, *, urgent: bool) -> Enqueued:
        """Move a received Celery message with an ETA into the schedule, acked in the same script.

        The stop keeps the message's task id (``AsyncResult`` and revoke find it); a stop whose
        ``not_after`` (the message's ``expires``) passes before it is due is kept, and dead-lettered
        when it is due, never refused here: the message is already taken off its queue. A revoke
        of its task id that came before it cancels the new run at once.
        """
        call = self.prepare([stop], urgent=urgent, origin=Origin.CELERY)
        call.args["stops"][0] |= {"keep_expired": True, "join": True}
        if fetched is not None:
            call.args["ack"] = True
            call.keys.append(fetched.inflight)
            call.messages.append(fetched.message)  # type: ignore[arg-type] # bytes, as fetched
        call.args["results"] = results_args(self.ctx.retention.result_s)
        call.keys.append(keys.result_key(stop.task_id))
        # No WAIT (RECSTOP_REDIS_WAIT_REPLICAS): the sender's publish was acknowledged already, and a
        # failover that loses this script's writes still has the message, in its lane or in flight,
        # to deliver (and defer) again. Waiting would only fail the move in a failover's gap.
        (reply,) = self.ctx.scripts.run(ENQUEUE, call.keys, call.args, call.messages)
        enqueued = accepted(reply)
        if not enqueued.deduplicated and self.ctx.client.exists(keys.revoked_key(stop.task_id)):
            # Revoked while its message waited in the queue: cancelled before it is ever due.
            self.cancels.cancel_run(
                keys.stop_key(stop.request.call_uuid, stop.request.url), stop.task_id, Origin.REVOKE
            )
            return Enqueued(enqueued.task_id, deduplicated=False, state=State.CANCELLED)
        return enqueued


def prepare_enqueue(
    settings: ScriptSettings,
    stops: Sequence[NewStop],
    *,
    urgent: bool,
    origin: Origin,
    sent_channel: str,
) -> PreparedEnqueue:
    """The keys, arguments and messages of one ``enqueue`` call for ``stops`` (all on one lane).

    No I/O: the threaded store and the asyncio producer run what this prepares. ``sent_channel`` is
    ``settings.task_group_channel()``, computed once by the caller: the ``task-sent`` events of the
    stops that start a new run go out as one group (``state.taskevents.group_envelope``). What is the
    same on every call (the settings, the group's envelope) is encoded once (``state.arguments.Raw``).
    """
    lane = keys.URGENT_QUEUE if urgent else keys.QUEUE
    return PreparedEnqueue(
        keys=[
            keys.SCHEDULE,
            lane,
            keys.AUDIT_STREAM,
            keys.METRICS,
            *(keys.call_key(s.request.call_uuid) for s in stops),
            *(keys.task_key(s.task_id) for s in stops),
        ],
        args={
            "deadline_s": settings.retry.deadline_s,
            "retention_s": settings.retention.status_s,
            "watchdog_s": settings.watchdog_s,
            "urgent": urgent,
            "events_channel": sent_channel,
            "events": taskevents.group_envelope_arg(),
            "audit": settings.audit(origin),
            "stops": [_stop_args(s) for s in stops],
        },
        messages=[part for s in stops for part in _message_and_event(s, lane)],
    )


def _stop_args(stop: NewStop) -> dict[str, Any]:
    return {
        **request_args(stop.request),
        "task_id": stop.task_id,
        "delay_s": None if stop.delay_s is None else round(stop.delay_s, 3),
        "at": None if stop.at_epoch is None else round(stop.at_epoch, 3),
        "dlq_id": stop.dlq_id,
        "replay": stop.replay.to_args() if stop.replay is not None else None,
    }


def _message_and_event(stop: NewStop, lane: str) -> tuple[str, str]:
    """A new stop's task message and its ``task-sent`` event's fields (with the ETA of a delayed stop)."""
    kwargs = stop.request.to_kwargs()
    eta = stop.at_epoch
    if eta is None and stop.delay_s is not None:
        eta = time.time() + stop.delay_s
    parent = stop.replay.task_id if stop.replay is not None else None
    return (
        stop_message(kwargs, queue=lane, parent_id=parent),
        taskevents.task_sent_body(stop.task_id, kwargs, queue=lane, eta=eta, parent_id=parent),
    )
