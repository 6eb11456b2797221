"""Poison messages: what the consumer refuses before Celery sees it, and how it is dead-lettered.

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
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from kombu.exceptions import ContentDisallowed
from redis.exceptions import RedisError

from recstop.worker.broker.queueitem import BAD_ENVELOPE
from recstop.worker.model import vocabulary
from recstop.worker.model.vocabulary import DeadReason
from recstop.worker.state.deadletters import DeadLetters

log = structlog.get_logger("recstop.consumer")
#: Celery's ack helpers log through a stdlib logger; ours goes through the same structlog pipeline.
stdlib_log = logging.getLogger("recstop.consumer")


ACCEPTED_CONTENT_TYPE: Final = "application/json"
CONTENT_TYPE_REFUSED: Final = DeadReason.CONTENT_TYPE_REFUSED
UNDECODABLE: Final = DeadReason.UNDECODABLE
UNKNOWN_TASK: Final = DeadReason.UNKNOWN_TASK
INVALID_MESSAGE: Final = DeadReason.INVALID_MESSAGE
#: Reasons of dead letters written by the consumer (raw entries: the body was never decoded as a stop).
RAW_REASONS: Final = vocabulary.RAW_REASONS
MAX_TASK_ID_CHARS: Final = 255
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
                task_id=short(headers.get("id")),
                error=type(exc).__name__,
            )
            return None
        log.warning(
            "message_dead_lettered",
            reason=poison.reason,
            detail=poison.detail,
            dlq_id=entry_id,
            task=short(headers.get("task")),
            task_id=short(headers.get("id")),
            content_type=short(message.content_type),
            body_bytes=len(body) if isinstance(body, bytes | str) else None,
        )
        if not message.acknowledged:
            message.ack_log_error(stdlib_log, self.connection_errors)
        return entry_id


def short(value: object) -> str | None:
    """A header value for a log line: text, at most 120 characters."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text[:120]
