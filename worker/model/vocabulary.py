"""recstop's vocabulary: every word a stop's life is told in, said once, for Python and Lua alike.

Status records, attempt logs, dead letters, metrics, the audit trail, Celery results and task
events all use these strings. The Lua scripts get them from here too: ``state.prelude`` turns
each enum below into a Lua table (``STATE.QUEUED`` ...) prepended to every script, and a test fails
when a script spells one of these words as a literal instead.

Four words are about retrying, each for one thing: an attempt's verdict is ``Outcome.RETRY``;
the stop then stands ``State.RETRYING``; the audit trail records ``AuditEvent.RETRY_SCHEDULED``
and the metrics count it under ``stops:retried`` (``state.keys.Counter.RETRIED``). The last two
are kept as they were first published: a year of audit rows and every dashboard use them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Outcome(StrEnum):
    """What one attempt came to (``api.classify`` decides it from the API's answer)."""

    STOPPED = "stopped"  # 2xx: the recording is stopped
    ALREADY_STOPPED = "already_stopped"  # nothing was recording, or the call is gone
    RETRY = "retry"  # transient (429, 5xx, timeout, reset): try again after a backoff
    DEAD = "dead"  # permanent (4xx): trying again cannot help

    @property
    def succeeded(self) -> bool:
        """The recording is not being recorded any more, by this attempt or before it."""
        return self in {Outcome.STOPPED, Outcome.ALREADY_STOPPED}


class State(StrEnum):
    """Where a stop stands: the ``state`` of its status record."""

    SCHEDULED = "scheduled"  # waiting in the schedule for its due time
    QUEUED = "queued"  # its message is on a queue, or being run
    RETRYING = "retrying"  # an attempt failed; the next one waits in the schedule
    STOPPED = "stopped"
    ALREADY_STOPPED = "already_stopped"
    DEAD = "dead"  # given up: a dead letter holds it, with the reason
    CANCELLED = "cancelled"

    @property
    def pending(self) -> bool:
        """Still going to be attempted."""
        return self in PENDING

    @property
    def succeeded(self) -> bool:
        """The recording is stopped (by this stop or before it)."""
        return self in SUCCEEDED


PENDING: Final = frozenset({State.SCHEDULED, State.QUEUED, State.RETRYING})
SUCCEEDED: Final = frozenset({State.STOPPED, State.ALREADY_STOPPED})
TERMINAL: Final = frozenset({State.STOPPED, State.ALREADY_STOPPED, State.DEAD, State.CANCELLED})


class Phase(StrEnum):
    """Where a pending run is: in the schedule until ``due_at``, or its message published."""

    WAITING = "waiting"
    READY = "ready"


class Decision(StrEnum):
    """The worker's verdict on a task message before its attempt (``begin.lua``)."""

    RUN = "run"
    EXPIRED = "expired"  # its not_after passed: dead, reason deadline
    CANCELLED = "cancelled"  # cancelled (recstop cancel, or a revoke) before the attempt
    SKIP = "skip"  # no DELETE of its own: see Skip and Dedup


class Skip(StrEnum):
    """Why a task message is skipped without joining anything (``begin.lua``)."""

    DUPLICATE = "duplicate"  # a message of a run already finished, or delivered again
    EARLY = "early"  # its run is still waiting in the schedule
    BUSY = "busy"  # its own run's lock is held (looked at again when the lock expires)
    DEFERRED = "deferred"  # another run of the stop holds the lock: this run waits in the schedule


class Sidelined(StrEnum):
    """A task run that did not move its stop to a state (the task's SKIPPED)."""

    SKIPPED = "skipped"  # no attempt of its own: a Skip, or a Dedup reason says why
    SUPERSEDED = "superseded"  # its outcome came after the run was cancelled and replaced by a newer one


class Dedup(StrEnum):
    """Why a stop or a message was deduplicated (the audit event ``deduplicated``, its ``reason``)."""

    PENDING = "pending"  # a stop of the same call and recording is pending: its task id comes back
    DUPLICATE_REQUEST = "duplicate_request"  # the same request_id already stopped the recording
    MERGED = "merged"  # a message of another task id joined the pending run


class DeadReason(StrEnum):
    """Why a stop is dead, besides an HTTP status (``http_<status>``, see :func:`http_reason`)."""

    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    DEADLINE = "deadline"  # its not_after passed before it could stop the recording
    UNKNOWN_ACCOUNT = "unknown_account"  # no credentials for its auth_id
    MALFORMED = "malformed"  # a task message whose arguments are not a valid stop
    # Messages refused before they became a stop (``celeryapp.consumer``):
    CONTENT_TYPE_REFUSED = "content_type_refused"  # anything but JSON: never decoded
    UNDECODABLE = "undecodable"  # not valid JSON (or UTF-8), broken compression, not an envelope
    UNKNOWN_TASK = "unknown_task"
    INVALID_MESSAGE = "invalid_message"  # not a Celery protocol 2 message recstop runs


#: The prefix of a dead reason that is an HTTP status: ``http_403``.
HTTP_REASON_PREFIX: Final = "http_"
#: Dead letters of messages refused before decoding: their body is kept raw and cannot be replayed.
RAW_REASONS: Final = frozenset(
    {
        DeadReason.CONTENT_TYPE_REFUSED,
        DeadReason.UNDECODABLE,
        DeadReason.UNKNOWN_TASK,
        DeadReason.INVALID_MESSAGE,
    }
)


def http_reason(status: int | None) -> str:
    """The dead reason of a permanent HTTP answer: ``http_403``."""
    return f"{HTTP_REASON_PREFIX}{status}"


class Confirmation(StrEnum):
    """Whether Vobiz confirms that the recordings a successful stop covered have ended."""

    PENDING = "pending"  # looked up again until every covered recording has its end, or a deadline
    CONFIRMED = "confirmed"  # every covered recording has its recording_end_ms
    UNCONFIRMED = "unconfirmed"  # not confirmed, for a ConfirmReason (the stop itself is still stopped)
    NOTHING_LISTED = "nothing_listed"  # already stopped, and the call lists no recording it covers


class ConfirmReason(StrEnum):
    """Why a stop's recordings are unconfirmed, besides an HTTP status (``http_<status>``)."""

    DEADLINE = "deadline"  # not every end was there by the deadline (not finalized, or lookups failing)
    NOT_LISTED = "not_listed"  # the recording the stop covered is not in the call's list
    BAD_ANSWER = "bad_answer"  # not the documented JSON (HTML, truncated), or an end before the start
    NO_END_TIME = "no_end_time"  # an answer that never carries an end (the older list shape)


class AuditEvent(StrEnum):
    """The kinds of event in the audit trail (``audit.event``); a terminal one is its state's word."""

    ACCEPTED = "accepted"
    REPLAYED = "replayed"  # accepted again from a dead letter
    DEDUPLICATED = "deduplicated"
    ATTEMPT = "attempt"
    RETRY_SCHEDULED = "retry_scheduled"
    STOPPED = State.STOPPED.value
    ALREADY_STOPPED = State.ALREADY_STOPPED.value
    DEAD = State.DEAD.value
    CANCELLED = State.CANCELLED.value
    SETTLED = "settled"  # a single-recording stop settled by a stop-all
    RECORDING_CONFIRMED = "recording_confirmed"  # one covered recording, with its end as Vobiz reported it
    CONFIRMATION_FAILED = "confirmation_failed"  # the stop's recordings stay unconfirmed, with the reason


class Origin(StrEnum):
    """Who caused an audit event (its ``origin``; for ``cancelled`` also its ``reason``)."""

    PYTHON = "python"  # the Python producer
    CLI = "cli"  # the recstop command line
    REPLAY = "replay"  # recstop dlq replay
    CELERY = "celery"  # a Celery message no recstop producer recorded (send_task, an ETA, a raw LPUSH)
    WORKER = "worker"  # the worker recording an attempt's outcome
    CANCEL = "cancel"  # recstop cancel
    REVOKE = "revoke"  # celery control revoke


class TaskEvent(StrEnum):
    """The Celery task events recstop publishes itself (a worker sends the others)."""

    SENT = "task-sent"  # a stop accepted or published again, with its ETA
    RETRIED = "task-retried"  # a retry waiting (announced to a monitor that connected later)
    REVOKED = "task-revoked"  # cancelled
    SKIPPED = "task-skipped"  # a message that made no DELETE of its own


class CeleryState(StrEnum):
    """The Celery task states a stop shows (``AsyncResult``, Flower), from its recstop state."""

    PENDING = "PENDING"  # scheduled or queued: no result record yet
    SUCCESS = "SUCCESS"  # stopped or already_stopped
    FAILURE = "FAILURE"  # dead: StopDead
    RETRY = "RETRY"  # retrying
    REVOKED = "REVOKED"  # cancelled
    SKIPPED = "SKIPPED"  # recstop's own: a message consumed without a DELETE of its own


class NotFound(StrEnum):
    """What a cancel or revoke found instead of a stop to cancel."""

    MISSING = "missing"  # no stop of that call and recording
    UNKNOWN = "unknown"  # a task id no run has yet (its message not received): remembered
    FINISHED = "finished"  # the task id's run is over (its stop has a newer run)


#: The enums the Lua scripts see, by the name of their Lua table (``state.prelude``).
LUA_TABLES: Final[dict[str, type[StrEnum]]] = {
    "OUTCOME": Outcome,
    "STATE": State,
    "PHASE": Phase,
    "DECISION": Decision,
    "SKIP": Skip,
    "SIDELINED": Sidelined,
    "DEDUP": Dedup,
    "DEAD_REASON": DeadReason,
    "CONFIRMATION": Confirmation,
    "CONFIRM_REASON": ConfirmReason,
    "AUDIT": AuditEvent,
    "ORIGIN": Origin,
    "TASK_EVENT": TaskEvent,
    "CELERY_STATE": CeleryState,
    "NOT_FOUND": NotFound,
}
