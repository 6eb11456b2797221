"""The Python producer: enqueue, cancel and inspect stops without ever calling the Vobiz API."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Self

from redis import Redis
from redis.exceptions import RedisError

from recstop.worker.config.fields import env_name
from recstop.worker.config.settings import RetryPolicy, Settings
from recstop.worker.model.errors import (
    BrokerUnavailableError,
    InvalidBulkItem,
    InvalidStopRequest,
    UnknownAccountError,
)
from recstop.worker.model.ids import new_id
from recstop.worker.model.status import ReplayedFrom, StatusRecord, span
from recstop.worker.model.validation import (
    StopRequest,
    decode_task_message,
    parse_instant,
    validate_call_uuid,
    validate_stop,
    validate_url,
)
from recstop.worker.model.vocabulary import NotFound, Origin, State
from recstop.worker.state.deadletters import DeadLetter, DeadLetters
from recstop.worker.state.enqueue import Enqueued, NewStop, PreparedEnqueue, Refused, accepted
from recstop.worker.state.redisclient import ReplicaShortfall, redis_client, redis_unavailable
from recstop.worker.state.store import StopStore

if TYPE_CHECKING:
    from concurrent.futures import Future

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


class Producer:
    """Enqueues stops. The connection is explicit: pass a Redis client.

    A stop and its Celery message are written by one script on Redis (``worker/lua/enqueue.lua``):
    no Celery app is needed to publish.
    """

    def __init__(self, settings: Settings, redis: Redis, *, origin: Origin = Origin.PYTHON) -> None:
        """``origin`` names this producer in the audit trail (``python``; the CLI says ``cli``)."""
        self.settings = settings
        self.redis = redis
        self.origin = origin
        self.store = StopStore.for_settings(redis, settings)
        self.dead_letters = DeadLetters(redis, settings.retention)

    @classmethod
    def from_env(cls) -> Producer:
        """Build from ``Settings.from_env()`` (for scripts; services should pass settings)."""
        settings = Settings.from_env()
        return cls(settings, redis_client(settings.redis))

    def close(self) -> None:
        """Release the Redis connections."""
        self.redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def stop_recording(
        self,
        call_uuid: str,
        url: str | None = None,
        *,
        auth_id: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | str | None = None,
        request_id: str | None = None,
        not_after: datetime | str | None = None,
        urgent: bool = False,
    ) -> StopHandle:
        """Enqueue a stop, now or later. Raises InvalidStopRequest or BrokerUnavailableError.

        ``urgent=True`` puts it on the urgent lane: workers take it before any routine stop, and
        it does not wait behind other stops in the account's rate limit.
        """
        request = validate_stop(call_uuid, url, auth_id, request_id, not_after)
        request = self._with_account(request)
        now = datetime.now(UTC)
        delay_s, at_epoch = _timing(delay, at, now)
        _check_deadline(request, delay_s, at_epoch, now, deadline_s=self.settings.retry.deadline_s)
        return self._enqueue(request, delay_s=delay_s, at_epoch=at_epoch, urgent=urgent)

    def stop_recordings(
        self,
        stops: Iterable[str | StopSpec],
        *,
        urgent: bool = False,
        chunk_size: int = BULK_CHUNK,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[StopHandle]:
        """Enqueue many stops now: one atomic script call per ``chunk_size`` stops.

        Each item is a call_uuid (stop every recording) or a :class:`StopSpec`. Every item is
        validated before anything is sent: one bad item raises InvalidStopRequest naming its
        position, and nothing is enqueued. ``on_progress(n)`` is called after each chunk.
        """
        requests = [self._bulk_item(index, item) for index, item in enumerate(stops)]
        size = max(1, chunk_size)
        chunks = [requests[start : start + size] for start in range(0, len(requests), size)]
        handles: list[StopHandle] = []
        # One chunk in flight while the next is prepared: Redis runs one while Python builds the other.
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - a bulk enqueue only

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recstop-bulk") as sender:
            pending: Future[list[Enqueued | Refused]] | None = None
            sent: list[StopRequest] = []
            for chunk in [*chunks, None]:
                call = (
                    None
                    if chunk is None
                    else self.store.enqueues.prepare(
                        [NewStop(r, new_id()) for r in chunk], urgent=urgent, origin=self.origin
                    )
                )
                if pending is not None:
                    what = f"could not store stops {len(handles)}..{len(handles) + len(sent) - 1}"
                    handles += self._collect(sent, pending, what + " (earlier ones are enqueued)")
                    if on_progress is not None:
                        on_progress(len(handles))
                if chunk is not None and call is not None:
                    pending, sent = sender.submit(self._run_enqueue, call), chunk
        return handles

    @staticmethod
    def _collect(
        sent: list[StopRequest], pending: Future[list[Enqueued | Refused]], what: str
    ) -> list[StopHandle]:
        try:
            replies = pending.result()
        except BrokerUnavailableError as exc:
            raise BrokerUnavailableError(f"{what}: {exc}") from None
        return [_handle(request, accepted(reply)) for request, reply in zip(sent, replies, strict=True)]

    def _run_enqueue(self, call: PreparedEnqueue, what: str = "could not store") -> list[Enqueued | Refused]:
        """Run one prepared enqueue (atomic, one round trip; WAIT for replicas if asked)."""
        try:
            return self.store.enqueues.run(call)
        except RedisError as exc:
            raise self._unavailable(what, exc) from None
        except ReplicaShortfall as exc:
            raise BrokerUnavailableError(f"{what}: {exc}") from None

    def _unavailable(self, what: str, exc: RedisError) -> BrokerUnavailableError:
        """The error for a failed Redis call: what failed, which Redis (password masked) and why."""
        return BrokerUnavailableError(f"{what}: {redis_unavailable(self.settings.redis, exc)}")

    def _bulk_item(self, index: int, item: str | StopSpec) -> StopRequest:
        spec = StopSpec(item) if isinstance(item, str) else item
        try:
            request = validate_stop(spec.call_uuid, spec.url, spec.auth_id, spec.request_id, spec.not_after)
            _check_deadline(request, None, None, datetime.now(UTC), deadline_s=self.settings.retry.deadline_s)
            return self._with_account(request)
        except InvalidStopRequest as exc:
            raise InvalidBulkItem(index, exc) from None

    def _with_account(self, request: StopRequest) -> StopRequest:
        accounts = self.settings.accounts
        auth_id = request.auth_id or accounts.default_auth_id
        if auth_id is None:
            raise InvalidStopRequest("auth_id", "not given, and no default account (VOBIZ_AUTH_ID) is set")
        if accounts.auth_ids and auth_id not in accounts.auth_ids:
            raise UnknownAccountError(auth_id)
        return StopRequest(request.call_uuid, request.url, auth_id, request.request_id, request.not_after)

    def _enqueue(
        self,
        request: StopRequest,
        *,
        delay_s: float | None = None,
        at_epoch: float | None = None,
        dlq_id: str | None = None,
        replay: ReplayedFrom | None = None,
        urgent: bool = False,
    ) -> StopHandle:
        """Record the stop and, when it is due now, push its message: one atomic script call."""
        stop = NewStop(request, new_id(), delay_s=delay_s, at_epoch=at_epoch, dlq_id=dlq_id, replay=replay)
        (reply,) = self._run_enqueue(
            self.store.enqueues.prepare(
                [stop], urgent=urgent, origin=Origin.REPLAY if dlq_id else self.origin
            ),
            "could not store the stop",
        )
        return _handle(request, accepted(reply))

    def cancel(self, call_uuid: str, url: str | None = None) -> CancelResult:
        """Cancel a pending or scheduled stop (state ``cancelled``); no effect once it ran."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            state, changed = self.store.cancels.cancel(call_uuid, url)
        except RedisError as exc:
            raise self._unavailable("could not cancel", exc) from None
        return CancelResult(state, changed)

    def status(self, call_uuid: str, url: str | None = None) -> StatusRecord | None:
        """The status record of the stop, or None when there is none."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            return self.store.status(call_uuid, url)
        except RedisError as exc:
            raise self._unavailable("could not read the status", exc) from None

    def replay(self, entry_ids: Iterable[str] | None = None) -> list[ReplayResult]:
        """Re-enqueue dead letters (all when ``entry_ids`` is None) under their own stop key."""
        if entry_ids is None:
            entries: list[DeadLetter | None] = list(
                self.dead_letters.list(limit=self.settings.retention.dlq_max_entries)
            )
            wanted = [e.id for e in entries if e is not None]
        else:
            wanted = list(entry_ids)
            entries = [self.dead_letters.get(entry_id) for entry_id in wanted]
        return [self._replay_one(entry_id, entry) for entry_id, entry in zip(wanted, entries, strict=True)]

    def _replay_one(self, entry_id: str, entry: DeadLetter | None) -> ReplayResult:
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
        request = StopRequest(original.call_uuid, original.url, auth_id, original.request_id)
        replay = ReplayedFrom(
            dlq_id=entry_id,
            task_id=entry.task_id,
            reason=entry.reason,
            dead_at=entry.dead_at,
            attempts=entry.attempt_count if entry.attempt_count is not None else len(entry.attempts),
            attempt_log=entry.attempts,
        )
        handle = self._enqueue(request, dlq_id=entry_id, replay=replay)
        return ReplayResult(entry_id, handle.task_id, handle.deduplicated)


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
