"""The worker's message consumer: poison messages are dead-lettered with a reason, never decoded unsafely.

Celery on its own logs and drops the messages it refuses, and some structurally broken messages
(a body that is not ``[args, kwargs, embed]``, no ``id`` header, a ``timelimit`` that is not a
pair) even stop the worker or make it reconnect in a loop. ``RecstopConsumer`` checks every task
message before Celery sees it and dead-letters what it refuses:

``content_type_refused``  anything but ``application/json`` (pickle, yaml, msgpack, raw bytes ...);
                          such a body is stored as bytes and never handed to a decoder.
``undecodable``           the body is not valid JSON (or UTF-8), or its compression is broken.
``unknown_task``          a task name this worker does not run.
``invalid_message``       headers or body that are not a Celery protocol 2 task message recstop runs.

A message of the right task whose keyword arguments are wrong passes here and is dead-lettered
by the task itself with reason ``malformed``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from celery.bootsteps import RUN
from celery.utils.saferepr import saferepr
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed
from redis.exceptions import RedisError

from recstop.worker.broker.queueitem import BAD_ENVELOPE
from recstop.worker.celeryapp import announce, revoke
from recstop.worker.celeryapp.deferral import Deferral
from recstop.worker.celeryapp.timing import TimingError, read_timing, strip
from recstop.worker.model.redaction import Redactor
from recstop.worker.state.deadletters import DeadLetters
from recstop.worker.state.store import StopStore

log = structlog.get_logger("recstop.consumer")
#: Celery's ack helpers log through a stdlib logger; ours goes through the same structlog pipeline.
stdlib_log = logging.getLogger("recstop.consumer")

ACCEPTED_CONTENT_TYPE: Final = "application/json"
CONTENT_TYPE_REFUSED: Final = "content_type_refused"
UNDECODABLE: Final = "undecodable"
UNKNOWN_TASK: Final = "unknown_task"
INVALID_MESSAGE: Final = "invalid_message"
#: Reasons of dead letters written by the consumer (raw entries: the body was never decoded as a stop).
RAW_REASONS: Final = frozenset({CONTENT_TYPE_REFUSED, UNDECODABLE, UNKNOWN_TASK, INVALID_MESSAGE})
MAX_TASK_ID_CHARS: Final = 255
#: Task events are published in batches at most this often (Flower sees them this much later).
EVENT_FLUSH_S: Final = 0.1
#: Celery's own headers take well under 4 KiB (argsrepr and kwargsrepr are cut at 1 KiB each).
MAX_HEADERS_CHARS: Final = 16_384


@dataclass(frozen=True)
class Poison:
    """Why a message is refused: a dead-letter reason and a readable detail."""

    reason: str
    detail: str


def inspect_message(message: Any, accepted_tasks: Collection[str]) -> Poison | None:  # noqa: ANN401
    """Check a kombu message before Celery handles it; None means Celery can run it safely.

    The body is decoded only once its content type is JSON, with kombu's JSON decoder (the result
    is cached on the message, so Celery does not decode it again).
    """
    headers = message.headers
    if not isinstance(headers, Mapping):
        return Poison(INVALID_MESSAGE, f"headers must be a JSON object, got {type(headers).__name__}")
    if message.errors:
        return Poison(UNDECODABLE, "the body could not be decompressed or encoded")
    content_type = message.content_type
    if content_type == BAD_ENVELOPE:
        return Poison(UNDECODABLE, "the queue item is not a kombu message envelope (kept as raw bytes)")
    if content_type != ACCEPTED_CONTENT_TYPE:
        return Poison(CONTENT_TYPE_REFUSED, f"content type {content_type!r:.80} is not accepted (JSON only)")
    return _check_task(headers, accepted_tasks) or _check_options(headers) or _check_body(message)


def _check_task(headers: Mapping[str, Any], accepted_tasks: Collection[str]) -> Poison | None:
    if "task" not in headers:
        return Poison(INVALID_MESSAGE, "no 'task' header: only Celery protocol 2 messages are accepted")
    task = headers["task"]
    if not isinstance(task, str):
        return Poison(INVALID_MESSAGE, f"the 'task' header must be a string, got {type(task).__name__}")
    if task not in accepted_tasks:
        return Poison(
            UNKNOWN_TASK, f"no task named {task!r:.120} (this worker runs {sorted(accepted_tasks)})"
        )
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID_CHARS:
        return Poison(
            INVALID_MESSAGE, f"the 'id' header must be a string of 1-{MAX_TASK_ID_CHARS} characters"
        )
    return None


def _check_options(headers: Mapping[str, Any]) -> Poison | None:
    size = len(json.dumps(headers, default=repr))
    if size > MAX_HEADERS_CHARS:
        # Celery logs and sends argsrepr/kwargsrepr to Flower: huge headers would flood both.
        return Poison(INVALID_MESSAGE, f"headers are {size} characters, more than {MAX_HEADERS_CHARS}")
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list | tuple) and len(timelimit) == 2 and all(map(_limit_ok, timelimit))  # noqa: PLR2004
    ):
        return Poison(INVALID_MESSAGE, "the 'timelimit' header must be [hard, soft] (numbers or null)")
    return None


def _limit_ok(value: object) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 10**9
    )


def _check_body(message: Any) -> Poison | None:  # noqa: ANN401
    try:
        body = message.decode()
    except ContentDisallowed as exc:
        return Poison(CONTENT_TYPE_REFUSED, f"content refused: {exc!s:.200}")
    except Exception as exc:  # noqa: BLE001 - any failure of the JSON decoder on hostile bytes
        return Poison(UNDECODABLE, f"body is not valid JSON: {type(exc).__name__}: {exc!s:.200}")
    if not (isinstance(body, list) and len(body) == 3):  # noqa: PLR2004
        return Poison(INVALID_MESSAGE, "the body must be the JSON array [args, kwargs, embed]")
    args, kwargs, embed = body
    wrong = (
        ("args must be a JSON array", args, not isinstance(args, list)),
        ("kwargs must be a JSON object", kwargs, not isinstance(kwargs, dict)),
        ("embed must be a JSON object or null", embed, embed is not None and not isinstance(embed, dict)),
    )
    for what, value, bad in wrong:
        if bad:
            return Poison(INVALID_MESSAGE, f"{what}, got {type(value).__name__}")
    if "self" in kwargs:
        # Celery's task call takes ``self`` positionally: such a message fails before the task runs.
        return Poison(INVALID_MESSAGE, "kwargs may not contain 'self' (Celery cannot pass it to a task)")
    return None


class PoisonHandler:
    """Dead-letters one refused message, then acks it; without a dead letter it is not acked."""

    def __init__(
        self, deadletters: DeadLetters, connection_errors: tuple[type[BaseException], ...] = ()
    ) -> None:
        self.deadletters = deadletters
        self.connection_errors = connection_errors

    def __call__(self, message: Any, poison: Poison) -> str | None:  # noqa: ANN401
        """Store the dead letter and ack; return its id, or None when Redis could not store it."""
        headers = message.headers if isinstance(message.headers, Mapping) else {}
        body = message.body
        try:
            entry_id = self.deadletters.add_raw(
                poison.reason,
                poison.detail,
                body=body,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                headers=headers,
            )
        except RedisError as exc:
            # Not acked on purpose: acking would lose the only copy, and a requeue would bring it
            # straight back while Redis is failing. Unacked, it stays in this consumer's in-flight
            # list and goes back to its lane when the channel closes (or the consumer is reaped).
            log.error(  # noqa: TRY400 - the error type is the whole story; no traceback wanted
                "dead_letter_failed",
                reason=poison.reason,
                task_id=_short(headers.get("id")),
                error=type(exc).__name__,
            )
            return None
        log.warning(
            "message_dead_lettered",
            reason=poison.reason,
            detail=poison.detail,
            dlq_id=entry_id,
            task=_short(headers.get("task")),
            task_id=_short(headers.get("id")),
            content_type=_short(message.content_type),
            body_bytes=len(body) if isinstance(body, bytes | str) else None,
        )
        if not message.acknowledged:
            message.ack_log_error(stdlib_log, self.connection_errors)
        return entry_id


def _short(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text[:120]


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
                    log.info("message_left_for_another_worker", task_id=_short(message.headers.get("id")))
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
