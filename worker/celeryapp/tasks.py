"""The Celery task: decode the message, call the plain executor, map the outcome. No logic here.

The outcome maps onto Celery's own states, so Flower, ``celery events`` and every consumer of task
events tell what happened:

==================================  ==========  =================================================
the stop                            state       how
==================================  ==========  =================================================
stopped, already stopped            SUCCESS     the result holds recstop's state and details
a retry waits in the schedule       RETRY       ``Retry``: ``task-retried`` says what failed, when
dead (dead-lettered, any reason)    FAILURE     raises :class:`StopDead` (reason and API error)
cancelled while its attempt ran     REVOKED     a ``task-revoked`` event, then ``Ignore``
a message skipped (a duplicate, or  SKIPPED     a ``task-skipped`` event, then ``Ignore``: the
joined a pending run, or superseded             message was consumed and made no DELETE of its own
by a newer run)
==================================  ==========  =================================================

SKIPPED is recstop's own state (Celery's event state names a task after an event it does not know).
Celery's REJECTED would say it too, but its event state takes a rejection that comes after the
task started as having happened before it, so Flower would keep showing STARTED.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry
from redis.exceptions import RedisError

from recstop.worker.celeryapp.timing import NOT_AFTER_HEADER, with_not_after
from recstop.worker.model.errors import InvalidStopRequest, RetryScheduled, StopDead
from recstop.worker.model.validation import decode_task_message
from recstop.worker.model.vocabulary import State
from recstop.worker.policy.priority import URGENT_FIRST
from recstop.worker.policy.ratelimit import RateLimitWaitTooLong
from recstop.worker.run.executor import Executor, RunResult
from recstop.worker.state.deadletters import DeadLetters
from recstop.worker.state.inflight import HELD
from recstop.worker.state.keys import TASK_NAME, URGENT_QUEUE

log = structlog.get_logger("recstop.task")
MAX_CONTEXT_CHARS: Final = 128


def register_tasks(app: Celery, executor: Executor, deadletters: DeadLetters) -> Task:
    """Register ``recstop.stop_recording`` on ``app``; its collaborators are passed in."""

    def stop_recording(self: Task, *args: Any, **kwargs: Any) -> Stopped:  # noqa: ANN401
        task_id = self.request.id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            task_id=task_id,
            call_uuid=_context_value(kwargs.get("call_uuid")),
            request_id=_context_value(kwargs.get("request_id")),
            auth_id=_context_value(kwargs.get("auth_id")),
            attempt=None,
        )
        try:
            try:
                request = with_not_after(decode_task_message(args, kwargs), _expiry(self))
            except InvalidStopRequest as exc:
                entry = deadletters.add_malformed(
                    task_id, {"task": TASK_NAME, "args": args, "kwargs": kwargs}, str(exc)
                )
                log.warning("message_malformed", reason=str(exc), dlq_id=entry)
                raise StopDead("malformed", str(exc)) from None
            urgent = (self.request.delivery_info or {}).get("routing_key") == URGENT_QUEUE
            tag = _delivery_tag(self)
            try:
                result = executor.run(request, task_id, urgent=urgent, ack=HELD.get(tag) if tag else None)
            finally:
                if tag:
                    URGENT_FIRST.release(tag)  # held since the transport delivered it
            if result.acked and tag:
                HELD.pop(tag, None)  # acknowledged with the outcome: Celery's ack has nothing left to do
            return celery_outcome(self, result)
        except RateLimitWaitTooLong as exc:
            # Nothing was attempted and no lock is held: back to the queue, for a later slot.
            log.warning("rate_limit_wait_too_long", wait_s=round(exc.wait_s, 1))
            raise Reject("no rate-limit slot in time", requeue=True) from None
        except RedisError as exc:
            # The outcome could not be recorded: hand the message back rather than lose the stop.
            log.error("state_store_unavailable", error=type(exc).__name__)  # noqa: TRY400
            raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from None
        finally:
            structlog.contextvars.clear_contextvars()

    # A task of the same name that another app in this process shared (Celery's default for
    # ``@app.task``) is bound to every app finalized later: it must not stand in for this one.
    app.tasks.pop(TASK_NAME, None)
    task: Task = app.task(
        name=TASK_NAME,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        throws=(StopDead,),  # an expected outcome: logged without a traceback
        # Registered on this app only: a shared task would be bound to every app made later in the
        # process, so a second app (a test's, an embedding's) would run the first app's executor.
        shared=False,
    )(stop_recording)
    return task


@dataclass(frozen=True)
class Stopped:
    """What the task of a stopped recording returns: its repr is the one line Celery's events show.

    ``task-succeeded`` carries the repr of the return value (Flower's Result column, ``celery
    events``): ``stopped 204, attempt 3``, not a dict cut off mid-way. ``AsyncResult.get()``
    returns the result record the scripts wrote with the outcome (``state.results``), not this.
    """

    result: RunResult

    def __repr__(self) -> str:
        result = self.result
        words = "stopped" if result.state is State.STOPPED else "already stopped"
        status = f" {result.http_status}" if result.http_status else ""
        attempt = f", attempt {result.attempt}" if result.attempt else ""
        return f"{words}{status}{attempt}"


def celery_outcome(task: Task, result: RunResult) -> Stopped:
    """Return the result of a stopped recording; raise what gives every other outcome its Celery state."""
    state = result.state
    if state in {State.STOPPED, State.ALREADY_STOPPED}:
        return Stopped(result)
    if state is State.RETRYING:
        due_at = float(result.detail)
        retry = RetryScheduled.after(result.attempt or 0, result.http_status, result.error, due_at)
        raise Retry(str(retry), retry, when=datetime.fromtimestamp(due_at, UTC))
    if state is State.DEAD:
        raise StopDead(result.detail, result.error)
    if state is State.CANCELLED:
        task.send_event("task-revoked", terminated=False, signum=None, expired=False)
        raise Ignore
    # Skipped (a duplicate, a message that joined a pending run ...) or superseded by a newer run.
    # The reason goes in ``result`` too: a field Flower keeps (and shows), unlike one of its own.
    reason = f"{state}: {result.detail}" if result.detail else str(state)
    task.send_event("task-skipped", reason=reason, result=reason)
    raise Ignore


def _expiry(task: Task) -> float | None:
    """The message's Celery ``expires``, as the consumer passed it on (``worker.timing.strip``)."""
    value = getattr(task.request, NOT_AFTER_HEADER, None)
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).timestamp()


def _delivery_tag(task: Task) -> str | None:
    """The message's delivery tag (the transport's key of its in-flight entry), from its properties."""
    properties = getattr(task.request, "properties", None) or {}
    tag = properties.get("delivery_tag")
    return tag if isinstance(tag, str) else None


def _context_value(value: object) -> str | None:
    """A message field for the log context, bounded: a 1 MB call_uuid must not make 1 MB log lines."""
    return value[:MAX_CONTEXT_CHARS] if isinstance(value, str) else None
