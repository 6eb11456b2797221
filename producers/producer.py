"""The Python producer: enqueue, cancel and inspect stops without ever calling the Vobiz API."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Self

import structlog
from celery import Celery
from redis import Redis
from redis.exceptions import RedisError

from worker.config import celery_config
from worker.deadletters import DeadLetter, DeadLetters
from worker.errors import BrokerUnavailableError, InvalidStopRequest, UnknownAccountError
from worker.keys import stop_key
from worker.publish import publish_stop
from worker.settings import Settings
from worker.status import StatusRecord
from worker.store import StopStore, redis_client
from worker.validation import (
    StopRequest,
    decode_task_message,
    parse_instant,
    validate_call_uuid,
    validate_stop,
    validate_url,
)

log = structlog.get_logger("recstop.producer")

#: Longest delay accepted: a stop further out than this is almost certainly a unit mistake.
MAX_DELAY: Final = timedelta(days=30)


@dataclass(frozen=True)
class StopHandle:
    """What ``stop_recording`` returns: the task that will stop the recording."""

    task_id: str
    deduplicated: bool
    state: str
    call_uuid: str
    url: str | None


@dataclass(frozen=True)
class CancelResult:
    """What ``cancel`` found and did."""

    state: str
    cancelled: bool


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of replaying one dead letter."""

    entry_id: str
    task_id: str | None
    deduplicated: bool = False
    error: str | None = None


class Producer:
    """Enqueues stops. Connections are explicit: pass a Redis client (and optionally a Celery app)."""

    def __init__(self, settings: Settings, redis: Redis, app: Celery | None = None) -> None:
        self.settings = settings
        self.redis = redis
        if app is None:
            app = Celery("recstop-producer", set_as_current=False)
            app.conf.update(celery_config(settings))
        self.app = app
        self.store = StopStore(redis, settings.retry, settings.retention, watchdog_s=settings.watchdog_s)
        self.dead_letters = DeadLetters(redis, settings.retention)

    @classmethod
    def from_env(cls) -> Producer:
        """Build from ``Settings.from_env()`` (for scripts; services should pass settings)."""
        settings = Settings.from_env()
        return cls(settings, redis_client(settings.redis))

    def close(self) -> None:
        """Release the broker and Redis connections."""
        self.app.close()
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
    ) -> StopHandle:
        """Enqueue a stop, now or later. Raises InvalidStopRequest or BrokerUnavailableError."""
        request = validate_stop(call_uuid, url, auth_id, request_id, not_after)
        request = self._with_account(request)
        delay_s, at_epoch = _timing(delay, at)
        return self._enqueue(request, delay_s=delay_s, at_epoch=at_epoch)

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
        dlq_id: str = "",
    ) -> StopHandle:
        task_id = str(uuid.uuid4())
        try:
            result = self.store.enqueue(request, task_id, delay_s=delay_s, at_epoch=at_epoch, dlq_id=dlq_id)
        except RedisError as exc:
            raise BrokerUnavailableError(f"could not store the stop: {type(exc).__name__}") from None
        handle = StopHandle(result.task_id, result.deduplicated, result.state, request.call_uuid, request.url)
        if not result.publish:
            return handle
        member = stop_key(request.call_uuid, request.url)
        try:
            publish_stop(self.app, result.task_id, request.to_kwargs())
        except Exception as exc:  # noqa: BLE001 - kombu, redis or socket errors alike: not stored
            if not result.deduplicated:
                self._rollback(member, result.task_id)
            # A pulled-forward stop stays in the schedule: the scheduler publishes it shortly.
            raise BrokerUnavailableError(f"could not publish the stop: {type(exc).__name__}") from None
        try:
            self.store.confirm_published(member, result.schedule_score)
        except RedisError:
            # Harmless: the scheduler publishes it once more after the grace period; the
            # worker recognises the duplicate.
            log.warning("confirm_failed", task_id=result.task_id)
        return handle

    def _rollback(self, member: str, task_id: str) -> None:
        try:
            self.store.rollback(member, task_id)
        except RedisError:
            # The schedule entry stays: the stop is published when Redis is back, and the
            # caller's retry is deduplicated against it.
            log.warning("rollback_failed", task_id=task_id)

    def cancel(self, call_uuid: str, url: str | None = None) -> CancelResult:
        """Cancel a pending or scheduled stop (state ``cancelled``); no effect once it ran."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            state, changed = self.store.cancel(call_uuid, url)
        except RedisError as exc:
            raise BrokerUnavailableError(f"could not cancel: {type(exc).__name__}") from None
        return CancelResult(state, changed)

    def status(self, call_uuid: str, url: str | None = None) -> StatusRecord | None:
        """The status record of the stop, or None when there is none."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            return self.store.status(call_uuid, url)
        except RedisError as exc:
            raise BrokerUnavailableError(f"could not read the status: {type(exc).__name__}") from None

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
        # A replay gets a fresh deadline: the old one is what may have killed it.
        request = StopRequest(original.call_uuid, original.url, original.auth_id, original.request_id)
        handle = self._enqueue(request, dlq_id=entry_id)
        return ReplayResult(entry_id, handle.task_id, handle.deduplicated)


def _timing(delay: float | timedelta | None, at: datetime | str | None) -> tuple[float | None, float | None]:
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
    if moment - datetime.now(UTC) > MAX_DELAY:
        raise InvalidStopRequest("at", f"is more than {MAX_DELAY.days} days ahead")
    return None, moment.timestamp()
