"""What ``Producer`` and ``AsyncProducer`` share: the results they return, and all they do without I/O.

Validation, the account a stop is for, its timing, the enqueue and replay script calls (built by
the same functions the worker's store uses, ``state.enqueue.prepare_enqueue``), the handles read
from a reply, and the error a failed Redis call raises (``producers.failures``). The two producers
add only the I/O: threads and ``redis``, or ``asyncio`` and ``redis.asyncio``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from recstop.producers.failures import broker_error
from recstop.worker.config.fields import env_name
from recstop.worker.config.producer import ProducerSettings
from recstop.worker.config.settings import RetryPolicy, Settings
from recstop.worker.model.errors import InvalidBulkItem, InvalidStopRequest, RecstopError, UnknownAccountError
from recstop.worker.model.ids import new_id
from recstop.worker.model.status import ReplayedFrom, span
from recstop.worker.model.validation import StopRequest, decode_task_message, parse_instant, validate_stop
from recstop.worker.model.vocabulary import NotFound, Origin, State, TaskEvent
from recstop.worker.state.context import ScriptSettings
from recstop.worker.state.deadletters import DeadLetter
from recstop.worker.state.enqueue import (
    Enqueued,
    NewStop,
    PreparedEnqueue,
    Refused,
    accepted,
    prepare_enqueue,
)

#: Stops per script call (one atomic round trip, about 6 ms of Redis time) in ``stop_recordings``.
BULK_CHUNK: Final = 200
#: Longest delay accepted: a stop further out than this is almost certainly a unit mistake.
MAX_DELAY: Final = timedelta(days=30)
#: How far in the past ``at`` may lie and still be accepted, as due now: the clock skew between the
#: producer, Redis and whoever computed the time, or a moment computed just before the call. Further
#: back is refused: a mistyped date or a local time given as UTC would otherwise stop a recording
#: at once, at a moment nobody meant.
AT_SKEW: Final = timedelta(seconds=60)


@dataclass(frozen=True)
class StopHandle:
    """What ``stop_recording`` returns: the task that will stop the recording."""

    task_id: str
    deduplicated: bool
    state: State
    call_uuid: str
    url: str | None


@dataclass(frozen=True)
class StopSpec:
    """One item of a bulk enqueue: a call, and optionally one recording, account, idempotency key."""

    call_uuid: str
    url: str | None = None
    auth_id: str | None = None
    request_id: str | None = None
    not_after: datetime | str | None = None


@dataclass(frozen=True)
class CancelResult:
    """What ``cancel`` found and did: the stop's state afterwards (``NotFound.MISSING``: no such stop)."""

    state: State | NotFound
    cancelled: bool


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of replaying one dead letter."""

    entry_id: str
    task_id: str | None
    deduplicated: bool = False
    error: str | None = None


class StopPlan:
    """What both producers do without I/O: validate, build script calls, read replies, name errors."""

    def __init__(self, settings: Settings | ProducerSettings, origin: Origin) -> None:
        self.settings = ProducerSettings.of(settings)
        self.origin = origin
        given = self.settings
        self.scripts = ScriptSettings(
            retry=given.retry,
            retention=given.retention,
            redis=given.redis,
            watchdog_s=given.watchdog_s,
            audit_max=given.audit.stream_max,
        )
        self.sent_channel = self.scripts.task_group_channel()
        self.revoked_channel = self.scripts.events_channel(TaskEvent.REVOKED)

    def one(
        self,
        call_uuid: str,
        url: str | None,
        *,
        auth_id: str | None,
        delay: float | timedelta | None,
        at: datetime | str | None,
        request_id: str | None,
        not_after: datetime | str | None,
        urgent: bool,
    ) -> tuple[StopRequest, PreparedEnqueue]:
        """A validated stop and its enqueue call (InvalidStopRequest for bad input)."""
        request = self.with_account(validate_stop(call_uuid, url, auth_id, request_id, not_after))
        now = datetime.now(UTC)
        delay_s, at_epoch = _timing(delay, at, now)
        _check_deadline(request, delay_s, at_epoch, now, deadline_s=self.settings.retry.deadline_s)
        stop = NewStop(request, new_id(), delay_s=delay_s, at_epoch=at_epoch)
        return request, self.prepare([stop], urgent=urgent)

    def prepare(self, stops: list[NewStop], *, urgent: bool, origin: Origin | None = None) -> PreparedEnqueue:
        """One ``enqueue.lua`` call for ``stops``."""
        return prepare_enqueue(
            self.scripts, stops, urgent=urgent, origin=origin or self.origin, sent_channel=self.sent_channel
        )

    def chunk(self, requests: list[StopRequest], *, urgent: bool) -> PreparedEnqueue:
        """The enqueue call of one chunk of a bulk enqueue (each stop a new task id)."""
        return self.prepare([NewStop(request, new_id()) for request in requests], urgent=urgent)

    def bulk(self, stops: Iterable[str | StopSpec], chunk_size: int = BULK_CHUNK) -> list[list[StopRequest]]:
        """Every item validated (InvalidBulkItem names the first bad one), in chunks of ``chunk_size``."""
        requests = [self._bulk_item(index, item) for index, item in enumerate(stops)]
        size = max(1, chunk_size)
        return [requests[start : start + size] for start in range(0, len(requests), size)]

    def _bulk_item(self, index: int, item: str | StopSpec) -> StopRequest:
        spec = StopSpec(item) if isinstance(item, str) else item
        try:
            request = validate_stop(spec.call_uuid, spec.url, spec.auth_id, spec.request_id, spec.not_after)
            _check_deadline(request, None, None, datetime.now(UTC), deadline_s=self.settings.retry.deadline_s)
            return self.with_account(request)
        except InvalidStopRequest as exc:
            raise InvalidBulkItem(index, exc) from None

    def with_account(self, request: StopRequest) -> StopRequest:
        """The request with its account: the one named (if known here), else the default one."""
        accounts = self.settings.accounts
        auth_id = request.auth_id or accounts.default_auth_id
        if auth_id is None:
            raise InvalidStopRequest("auth_id", "not given, and no default account (VOBIZ_AUTH_ID) is set")
        if accounts.auth_ids and auth_id not in accounts.auth_ids:
            raise UnknownAccountError(auth_id)
        return StopRequest(request.call_uuid, request.url, auth_id, request.request_id, request.not_after)

    def replay_request(self, entry_id: str, entry: DeadLetter | None) -> StopRequest | ReplayResult:
        """The stop a dead letter holds, with a fresh deadline; or why it cannot be replayed."""
        if entry is None:
            return ReplayResult(entry_id, None, error="no such dead letter")
        payload = entry.payload if isinstance(entry.payload, dict) else {}
        if payload.get("raw") is True:
            return ReplayResult(
                entry_id,
                None,
                error=f"cannot replay a malformed message ({entry.reason}): the worker refused it before "
                "decoding, so it holds no stop to enqueue",
            )
        try:
            original = decode_task_message(payload.get("args", ()), payload.get("kwargs"))
        except InvalidStopRequest as exc:
            return ReplayResult(entry_id, None, error=f"cannot replay a malformed message: {exc}")
        # A replay gets a fresh deadline: the old one is what may have killed it. It runs with the
        # account the dead stop ran with (a message that named none ran with the worker's default).
        auth_id = original.auth_id or entry.auth_id
        return StopRequest(original.call_uuid, original.url, auth_id, original.request_id)

    def replay_call(self, request: StopRequest, entry_id: str, entry: DeadLetter) -> PreparedEnqueue:
        """The enqueue call of a replayed dead letter (its own stop key, audit origin ``replay``).

        The new run's record keeps what the dead run did (``replayed_from`` in ``recstop status``).
        """
        replay = ReplayedFrom(
            dlq_id=entry_id,
            task_id=entry.task_id,
            reason=entry.reason,
            dead_at=entry.dead_at,
            attempts=entry.attempt_count if entry.attempt_count is not None else len(entry.attempts),
            attempt_log=entry.attempts,
        )
        stop = NewStop(request, new_id(), dlq_id=entry_id, replay=replay)
        return self.prepare([stop], urgent=False, origin=Origin.REPLAY)

    def error(self, what: str, exc: Exception, *, marks: bool, writes: bool = True) -> RecstopError:
        """The error a failed Redis call raises (see ``producers.failures``)."""
        return broker_error(self.settings.redis, what, exc, marks=marks, writes=writes)


def handles(requests: list[StopRequest], replies: list[Enqueued | Refused]) -> list[StopHandle]:
    """The handle of each stop of one enqueue call (a refused one raises its InvalidStopRequest)."""
    return [_handle(request, accepted(reply)) for request, reply in zip(requests, replies, strict=True)]


def chunk_failed(exc: RecstopError, done: int, size: int) -> RecstopError:
    """A failed chunk of a bulk enqueue: the same error, naming its stops; the earlier ones are enqueued."""
    return type(exc)(f"could not store stops {done}..{done + size - 1} (earlier ones are enqueued): {exc}")


def _handle(request: StopRequest, result: Enqueued) -> StopHandle:
    return StopHandle(result.task_id, result.deduplicated, result.state, request.call_uuid, request.url)


def _timing(
    delay: float | timedelta | None, at: datetime | str | None, now: datetime
) -> tuple[float | None, float | None]:
    """(delay_s, at_epoch) of a stop: at most one, within ``MAX_DELAY``; ``at`` at most ``AT_SKEW`` past."""
    if delay is not None and at is not None:
        raise InvalidStopRequest("delay", "give either delay or at, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds != seconds:  # noqa: PLR0124
            raise InvalidStopRequest("delay", "must be a number of seconds")
        if seconds < 0 or seconds > MAX_DELAY.total_seconds():
            raise InvalidStopRequest(
                "delay", f"must be between 0 and {int(MAX_DELAY.total_seconds())} seconds"
            )
        return (float(seconds) if seconds > 0 else None), None
    moment = parse_instant("at", at)
    if moment is None:
        return None, None
    ahead = moment - now
    if ahead > MAX_DELAY:
        raise InvalidStopRequest(
            "at",
            f"{moment.isoformat()} is {span(ahead.total_seconds())} ahead: at most {MAX_DELAY.days} days",
        )
    if -ahead > AT_SKEW:
        raise InvalidStopRequest(
            "at",
            f"{moment.isoformat()} is {span(ahead.total_seconds())} in the past: a time up to "
            f"{AT_SKEW.total_seconds():g} s past runs at once (clock skew), an earlier one is refused; "
            "leave at out to stop now",
        )
    return None, moment.timestamp()


def _check_deadline(
    request: StopRequest, delay_s: float | None, at_epoch: float | None, now: datetime, *, deadline_s: float
) -> None:
    """Refuse a stop whose ``not_after`` (given, or due + ``deadline_s``) is past, or before it is due.

    ``enqueue.lua`` checks the same with Redis' clock; this says what was given and what was defaulted.
    """
    due = at_epoch if at_epoch is not None else now.timestamp() + (delay_s or 0.0)
    when = (
        f"at {datetime.fromtimestamp(at_epoch, UTC).isoformat()}"
        if at_epoch is not None
        else f"in {delay_s:g} s"
        if delay_s
        else "now"
    )
    if request.not_after is None:
        default = due + deadline_s
        if default <= now.timestamp():
            raise InvalidStopRequest(
                "at",
                f"the stop's deadline (not_after, by default the time it is due + {deadline_s:g} s: "
                f"{env_name(RetryPolicy, 'deadline_s')}) would be {span(now.timestamp() - default)} past: "
                f"it is due {when}",
            )
        return
    given = request.not_after.timestamp()
    if given <= now.timestamp():
        raise InvalidStopRequest(
            "not_after", f"{request.not_after.isoformat()} is {span(now.timestamp() - given)} in the past"
        )
    if given < due:
        raise InvalidStopRequest(
            "not_after",
            f"{request.not_after.isoformat()} is {span(due - given)} before the stop is due ({when})",
        )
