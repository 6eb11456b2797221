"""The worker's message consumer: every task message is checked before Celery handles it.

A refused message (``celeryapp.poison``: content type, encoding, task name, structure) is
dead-lettered with its reason and acknowledged, and the worker goes on; a message with an ETA goes
into recstop's schedule (``celeryapp.deferral``); the rest go to Celery, their argument reprs
masked. The consumer also batches task events, and its mailbox answers revoke with recstop's durable
one (``celeryapp.revoke``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import structlog
from celery.bootsteps import RUN
from celery.utils.saferepr import saferepr
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed

from recstop.worker.celeryapp import announce, revoke
from recstop.worker.celeryapp.deferral import Deferral
from recstop.worker.celeryapp.poison import (
    CONTENT_TYPE_REFUSED,
    INVALID_MESSAGE,
    UNDECODABLE,
    UNKNOWN_TASK,
    Poison,
    PoisonHandler,
    inspect_message,
    short,
)
from recstop.worker.celeryapp.timing import TimingError, read_timing, strip
from recstop.worker.model.redaction import Redactor
from recstop.worker.state.deadletters import DeadLetters
from recstop.worker.state.store import StopStore

log = structlog.get_logger("recstop.consumer")
#: Celery's ack helpers log through a stdlib logger; ours goes through the same structlog pipeline.
stdlib_log = logging.getLogger("recstop.consumer")


#: Task events are published in batches at most this often (Flower sees them this much later).
EVENT_FLUSH_S: Final = 0.1
#: Events a batch may hold before it is published at once (Celery's own limit is 24: at a few
#: hundred stops a second that was a PUBLISH every 20 ms instead of every ``EVENT_FLUSH_S``).
EVENT_BATCH_LIMIT: Final = 2000


def mask_argument_reprs(message: Any, redactor: Redactor) -> None:  # noqa: ANN401
    """Mask tokens in the argument reprs that task events (and so Flower) show.

    recstop's producers never put a token in a message, but a raw producer might; the reprs come
    from the sender's headers, or Celery computes them from the body, so set them here, masked.
    """
    headers = message.headers
    body = message.decode()  # JSON only (checked above); kombu caches the result on the message
    args, kwargs = (body[0], body[1]) if isinstance(body, list | tuple) and len(body) >= 2 else ((), {})  # noqa: PLR2004
    for name, value in (("argsrepr", args), ("kwargsrepr", kwargs)):
        given = headers.get(name)
        headers[name] = redactor.text(given if isinstance(given, str) else saferepr(value))


class RecstopConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with every refused message dead-lettered (``worker_consumer`` setting)."""

    #: Set by :func:`consumer_class`: where refused messages go, what to mask in Flower, the
    #: store that ETA messages and revokes go to, and the account of a message that names none.
    deadletters: DeadLetters
    redactor: Redactor
    store: StopStore
    default_auth_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        self._event_flush_pending = False
        super().__init__(*args, **kwargs)
        self.poison = PoisonHandler(self.deadletters, tuple(self.connection_errors))
        self.deferral = Deferral(self.store.enqueues, self.deadletters, default_auth_id=self.default_auth_id)
        revoke.install(self)  # recstop's durable revoke, in this worker's mailbox only
        announce.install(self)  # then its heartbeat, which tells a monitor that connects the waiting stops
        # KeyError is one of kombu's Redis "connection errors"; only real broker failures propagate.
        self.broker_errors = tuple(
            e for e in (*self.connection_errors, *self.channel_errors) if not issubclass(e, LookupError)
        )

    def on_send_event_buffered(self) -> None:
        """Flush task events at most every ``EVENT_FLUSH_S``, not once per event.

        Celery schedules a flush (one synchronous PUBLISH on the consumer thread) for every task
        event; under load that was 40% of the consumer thread's time and capped the whole worker.
        Batching them costs Flower at most ``EVENT_FLUSH_S`` of delay.
        """
        if self.hub is not None and not self._event_flush_pending:
            self._event_flush_pending = True
            self.event_dispatcher.buffer_limit = EVENT_BATCH_LIMIT
            self.hub.call_later(EVENT_FLUSH_S, self._flush_events_later)

    def _flush_events_later(self) -> None:
        self._event_flush_pending = False
        self._flush_events()

    def accepted_tasks(self) -> frozenset[str]:
        """The task names this worker runs: recstop's own, none of Celery's built-ins."""
        return frozenset(name for name in self.app.tasks if not name.startswith("celery."))

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], None]:  # noqa: ANN401
        """Wrap Celery's handler: refuse poison first, and never let a message crash the consumer."""
        celery_handler = super().create_task_handler(*args, **kwargs)
        accepted = self.accepted_tasks()

        def on_task_received(message: Any) -> None:  # noqa: ANN401
            poison = inspect_message(message, accepted)
            if poison is not None:
                self.poison(message, poison)
                return
            try:
                timing = read_timing(message.headers, self.app.timezone)
            except TimingError as exc:
                self.poison(message, Poison(INVALID_MESSAGE, str(exc)))
                return
            mask_argument_reprs(message, self.redactor)
            if timing.delayed():
                self.deferral(message, timing)  # into recstop's schedule, never held in memory
                return
            strip(message.headers, timing)
            try:
                celery_handler(message)
            except self.broker_errors:
                raise
            except Exception as exc:  # noqa: BLE001 - a message Celery chokes on must not stop the worker
                if self.blueprint is not None and self.blueprint.state != RUN:
                    # Shutting down (the pool takes no more work): not the message's fault. Left
                    # unacked, it goes back to the head of its lane when the channel closes.
                    log.info("message_left_for_another_worker", task_id=short(message.headers.get("id")))
                    return
                self.poison(
                    message, Poison(INVALID_MESSAGE, f"refused by Celery: {type(exc).__name__}: {exc!s:.200}")
                )

        return on_task_received

    def on_decode_error(self, message: Any, exc: BaseException) -> None:  # noqa: ANN401
        """The body could not be decoded (or its content type is not accepted)."""
        reason = CONTENT_TYPE_REFUSED if isinstance(exc, ContentDisallowed) else UNDECODABLE
        self.poison(message, Poison(reason, f"{type(exc).__name__}: {exc!s:.200}"))

    def on_unknown_message(self, _body: object, message: Any) -> None:  # noqa: ANN401
        """Neither protocol 2 headers nor a protocol 1 body."""
        self.poison(message, Poison(INVALID_MESSAGE, "not a Celery task message"))

    def on_unknown_task(self, _body: object, message: Any, exc: BaseException) -> None:  # noqa: ANN401
        """A task name this worker does not run."""
        self.poison(message, Poison(UNKNOWN_TASK, f"no task named {exc!s:.120}"))

    def on_invalid_task(self, _body: object, message: Any, exc: BaseException) -> None:  # noqa: ANN401
        """Celery refused the message (bad ETA/expires, content type, structure)."""
        reason = CONTENT_TYPE_REFUSED if isinstance(exc, ContentDisallowed) else INVALID_MESSAGE
        self.poison(message, Poison(reason, f"{type(exc).__name__}: {exc!s:.200}"))


def consumer_class(
    deadletters: DeadLetters, redactor: Redactor, store: StopStore, *, default_auth_id: str | None = None
) -> type[RecstopConsumer]:
    """Celery's ``worker_consumer``: :class:`RecstopConsumer` bound to this worker's collaborators.

    Its mailbox answers ``revoke`` with recstop's durable revoke (``celeryapp.revoke``), and
    ``heartbeat`` as Celery does and by announcing the stops waiting in Redis (``celeryapp.announce``).
    """
    return type(
        "RecstopConsumer",
        (RecstopConsumer,),
        {
            "deadletters": deadletters,
            "redactor": redactor,
            "store": store,
            "default_auth_id": default_auth_id,
        },
    )
