"""The Python producer: enqueue, cancel and inspect stops without ever calling the Vobiz API."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self

from redis import Redis
from redis.exceptions import RedisError

from recstop.producers.plan import (
    BULK_CHUNK,
    CancelResult,
    ReplayResult,
    StopHandle,
    StopPlan,
    StopSpec,
    chunk_failed,
    handles,
)
from recstop.worker.config.producer import ProducerSettings
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import BrokerMisconfiguredError, BrokerUnavailableError
from recstop.worker.model.status import StatusRecord
from recstop.worker.model.validation import StopRequest, validate_call_uuid, validate_url
from recstop.worker.model.vocabulary import Origin
from recstop.worker.state.connections import tracks_sending
from recstop.worker.state.deadletters import DeadLetter, DeadLetters
from recstop.worker.state.enqueue import Enqueued, PreparedEnqueue, Refused
from recstop.worker.state.redisclient import ReplicaShortfall, redis_client
from recstop.worker.state.store import StopStore

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["CancelResult", "Producer", "ReplayResult", "StopHandle", "StopSpec"]


class Producer:
    """Enqueues stops from threads. The connection is explicit: ``redis_client(settings.redis)``.

    A stop and its Celery message are written by one script on Redis (``worker/state/lua/enqueue.lua``):
    no Celery app is needed to publish. One producer serves every thread of a process (its pool
    waits for a free connection); after a ``fork`` the child opens connections of its own.
    ``AsyncProducer`` is the same for ``asyncio``.
    """

    def __init__(
        self, settings: Settings | ProducerSettings, redis: Redis, *, origin: Origin = Origin.PYTHON
    ) -> None:
        """``origin`` names this producer in the audit trail (``python``; the CLI says ``cli``)."""
        self.plan = StopPlan(settings, origin)
        #: The settings as given (a worker's ``Settings`` stays one); the producer's part: ``plan.settings``.
        self.settings = settings
        self.redis = redis
        self.origin = origin
        given = self.plan.settings
        self.store = StopStore(
            redis,
            given.retry,
            given.retention,
            redis_settings=given.redis,
            watchdog_s=given.watchdog_s,
            audit_max=given.audit.stream_max,
        )
        self.dead_letters = DeadLetters(redis, given.retention)
        self._marks = tracks_sending(redis)

    @classmethod
    def from_env(cls) -> Producer:
        """Build from ``ProducerSettings.from_env()`` (for scripts; services should pass settings)."""
        settings = ProducerSettings.from_env()
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
        """Enqueue a stop, now or later; its handle.

        Raises InvalidStopRequest for bad input; StopNotStoredError (nothing stored: retry),
        StopOutcomeUnknownError (perhaps stored: retry with the same ``request_id``) or
        BrokerMisconfiguredError when Redis does not complete the call. ``urgent=True`` puts it on
        the urgent lane: workers take it before any routine stop, and it does not wait behind
        other stops in the account's rate limit.
        """
        request, call = self.plan.one(
            call_uuid,
            url,
            auth_id=auth_id,
            delay=delay,
            at=at,
            request_id=request_id,
            not_after=not_after,
            urgent=urgent,
        )
        return handles([request], self._run_enqueue(call, "could not store the stop"))[0]

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
        validated before anything is sent: one bad item raises InvalidBulkItem naming its
        position, and nothing is enqueued. ``on_progress(n)`` is called after each chunk.
        """
        chunks = self.plan.bulk(stops, chunk_size)
        done: list[StopHandle] = []
        # One chunk in flight while the next is prepared: Redis runs one while Python builds the other.
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - a bulk enqueue only

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recstop-bulk") as sender:
            pending: Future[list[Enqueued | Refused]] | None = None
            sent: list[StopRequest] = []
            for chunk in [*chunks, None]:
                call = None if chunk is None else self.plan.chunk(chunk, urgent=urgent)
                if pending is not None:
                    try:
                        replies = pending.result()
                    except (BrokerUnavailableError, BrokerMisconfiguredError) as exc:
                        raise chunk_failed(exc, len(done), len(sent)) from None
                    done += handles(sent, replies)
                    if on_progress is not None:
                        on_progress(len(done))
                if chunk is not None and call is not None:
                    pending, sent = sender.submit(self._run_enqueue, call), chunk
        return done

    def _run_enqueue(self, call: PreparedEnqueue, what: str = "could not store") -> list[Enqueued | Refused]:
        """Run one prepared enqueue (atomic, one round trip; WAIT for replicas if asked)."""
        try:
            return self.store.enqueues.run(call)
        except (RedisError, ReplicaShortfall) as exc:
            raise self.plan.error(what, exc, marks=self._marks) from None

    def cancel(self, call_uuid: str, url: str | None = None) -> CancelResult:
        """Cancel a pending or scheduled stop (state ``cancelled``); no effect once it ran."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            state, changed = self.store.cancels.cancel(call_uuid, url)
        except RedisError as exc:
            raise self.plan.error("could not cancel", exc, marks=self._marks) from None
        return CancelResult(state, changed)

    def status(self, call_uuid: str, url: str | None = None) -> StatusRecord | None:
        """The status record of the stop, or None when there is none."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            return self.store.status(call_uuid, url)
        except RedisError as exc:
            raise self.plan.error("could not read the status", exc, marks=self._marks, writes=False) from None

    def replay(self, entry_ids: Iterable[str] | None = None) -> list[ReplayResult]:
        """Re-enqueue dead letters (all when ``entry_ids`` is None) under their own stop key."""
        try:
            if entry_ids is None:
                limit = self.plan.settings.retention.dlq_max_entries
                entries: list[DeadLetter | None] = list(self.dead_letters.list(limit=limit))
                wanted = [e.id for e in entries if e is not None]
            else:
                wanted = list(entry_ids)
                entries = [self.dead_letters.get(entry_id) for entry_id in wanted]
        except RedisError as exc:
            raise self.plan.error(
                "could not read the dead letters", exc, marks=self._marks, writes=False
            ) from None
        return [self._replay_one(entry_id, entry) for entry_id, entry in zip(wanted, entries, strict=True)]

    def _replay_one(self, entry_id: str, entry: DeadLetter | None) -> ReplayResult:
        request = self.plan.replay_request(entry_id, entry)
        if isinstance(request, ReplayResult):
            return request
        assert entry is not None  # narrowing: replay_request answered a missing one above
        (handle,) = handles([request], self._run_enqueue(self.plan.replay_call(request, entry_id, entry)))
        return ReplayResult(entry_id, handle.task_id, handle.deduplicated)
