"""The Celery task: decode the message, call the plain executor, map the outcome. No logic here."""

from __future__ import annotations

from typing import Any, Final

import structlog
from celery import Celery, Task
from celery.exceptions import Reject
from redis.exceptions import RedisError

from worker.deadletters import DeadLetters
from worker.errors import InvalidStopRequest
from worker.execute import Executor
from worker.fetch import HELD, TAG_HEADER
from worker.keys import TASK_NAME, URGENT_QUEUE
from worker.ratelimit import RateLimitWaitTooLong
from worker.validation import decode_task_message

log = structlog.get_logger("recstop.task")
MAX_CONTEXT_CHARS: Final = 128


def register_tasks(app: Celery, executor: Executor, deadletters: DeadLetters) -> Task:
    """Register ``recstop.stop_recording`` on ``app``; its collaborators are passed in."""

    def stop_recording(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: ANN401
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
                request = decode_task_message(args, kwargs)
            except InvalidStopRequest as exc:
                entry = deadletters.add_malformed(
                    task_id, {"task": TASK_NAME, "args": args, "kwargs": kwargs}, str(exc)
                )
                log.warning("message_malformed", reason=str(exc), dlq_id=entry)
                return {"state": "dead", "detail": "malformed"}
            urgent = (self.request.delivery_info or {}).get("routing_key") == URGENT_QUEUE
            tag = getattr(self.request, TAG_HEADER, None)
            result = executor.run(request, task_id, urgent=urgent, ack=HELD.get(tag) if tag else None)
            if result.state != "skipped" and tag:
                HELD.pop(tag, None)  # acknowledged with the outcome: Celery's ack has nothing left to do
            return result.as_dict()
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
        # Registered on this app only: a shared task would be bound to every app made later in the
        # process, so a second app (a test's, an embedding's) would run the first app's executor.
        shared=False,
    )(stop_recording)
    return task


def _context_value(value: object) -> str | None:
    """A message field for the log context, bounded: a 1 MB call_uuid must not make 1 MB log lines."""
    return value[:MAX_CONTEXT_CHARS] if isinstance(value, str) else None
