"""The asyncio producer: ``Producer``'s operations, scripts, validation, results and errors, awaited.

Built on ``redis.asyncio``: a call waiting on Redis never blocks the event loop, so an ASGI
service keeps answering its other requests while Redis is slow or hung (each call then ends after
``RECSTOP_REDIS_SOCKET_TIMEOUT_S`` with ``StopOutcomeUnknownError``). Everything that is not I/O
is ``producers.plan``'s, shared with the threaded producer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Self

from redis.asyncio import Redis
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
from recstop.worker.state import keys
from recstop.worker.state.asyncclient import async_redis_client, async_tracks_sending
from recstop.worker.state.cancels import CANCEL, CANCEL_ROUNDS, prepare_cancel
from recstop.worker.state.context import parse_status
from recstop.worker.state.deadletters import DeadLetter
from recstop.worker.state.enqueue import ENQUEUE, Enqueued, PreparedEnqueue, Refused
from recstop.worker.state.redisclient import ReplicaShortfall, check_wait
from recstop.worker.state.results import result_copies
from recstop.worker.state.scripts import AsyncScripts

__all__ = ["AsyncProducer"]


class AsyncProducer:
    """Enqueues stops from ``asyncio`` code; the connection is explicit (``async_redis_client``).

    The same scripts, validation, results and errors as ``Producer``; every operation is a
    coroutine. Create it (and its client) inside the event loop that uses it, and ``await
    aclose()`` at shutdown (or ``async with``).
    """

    def __init__(
        self, settings: Settings | ProducerSettings, redis: Redis, *, origin: Origin = Origin.PYTHON
    ) -> None:
        """``origin`` names this producer in the audit trail (``python``)."""
        self.plan = StopPlan(settings, origin)
        #: The settings as given (a worker's ``Settings`` stays one); the producer's part: ``plan.settings``.
        self.settings = settings
        self.redis = redis
        self.origin = origin
        self.scripts = AsyncScripts(redis)
        self._marks = async_tracks_sending(redis)

    @classmethod
    def from_env(cls) -> AsyncProducer:
        """Build from ``ProducerSettings.from_env()`` (for scripts; services should pass settings)."""
        settings = ProducerSettings.from_env()
        return cls(settings, async_redis_client(settings.redis))

    async def aclose(self) -> None:
        """Release the Redis connections."""
        await self.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def stop_recording(
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
        """Enqueue a stop, now or later; its handle. Raises as ``Producer.stop_recording`` does."""
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
        return handles([request], await self._run_enqueue(call, "could not store the stop"))[0]

    async def stop_recordings(
        self,
        stops: Iterable[str | StopSpec],
        *,
        urgent: bool = False,
        chunk_size: int = BULK_CHUNK,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[StopHandle]:
        """Enqueue many stops now: one atomic script call per ``chunk_size`` stops.

        Every item is validated before anything is sent (InvalidBulkItem names a bad one). One
        chunk is in flight while the next is prepared; ``on_progress(n)`` after each chunk.
        """
        chunks = self.plan.bulk(stops, chunk_size)
        done: list[StopHandle] = []
        pending: asyncio.Task[list[Enqueued | Refused]] | None = None
        sent: list[StopRequest] = []
        for chunk in [*chunks, None]:
            call = None if chunk is None else self.plan.chunk(chunk, urgent=urgent)
            if pending is not None:
                try:
                    replies = await pending
                except (BrokerUnavailableError, BrokerMisconfiguredError) as exc:
                    raise chunk_failed(exc, len(done), len(sent)) from None
                done += handles(sent, replies)
                if on_progress is not None:
                    on_progress(len(done))
            if chunk is not None and call is not None:
                pending, sent = asyncio.create_task(self._run_enqueue(call)), chunk
        return done

    async def _run_enqueue(
        self, call: PreparedEnqueue, what: str = "could not store"
    ) -> list[Enqueued | Refused]:
        """Run one prepared enqueue (atomic, one round trip; WAIT for replicas if asked)."""
        redis = self.plan.settings.redis
        try:
            if redis.wait_replicas <= 0:
                return await self.scripts.run(ENQUEUE, call.keys, call.args, call.messages)
            async with self.redis.pipeline(transaction=False) as pipe:
                await self.scripts.queue(pipe, ENQUEUE, call.keys, call.args, call.messages)
                pipe.execute_command("WAIT", redis.wait_replicas, redis.wait_timeout_ms)
                raw, acked = await pipe.execute()
            check_wait(acked, redis)
            return ENQUEUE.parse(raw)
        except (RedisError, ReplicaShortfall) as exc:
            raise self.plan.error(what, exc, marks=self._marks) from None

    async def cancel(self, call_uuid: str, url: str | None = None) -> CancelResult:
        """Cancel a pending or scheduled stop (state ``cancelled``); no effect once it ran."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            return await self._cancel(call_uuid, url)
        except RedisError as exc:
            raise self.plan.error("could not cancel", exc, marks=self._marks) from None

    async def _cancel(self, call_uuid: str, url: str | None) -> CancelResult:
        name = keys.stop_key(call_uuid, url)
        retention = self.plan.settings.retention
        for _ in range(CANCEL_ROUNDS):
            record = parse_status(await self.redis.get(keys.call_key(call_uuid)), url)
            call = prepare_cancel(
                self.plan.scripts,
                name,
                record.task_id if record else None,
                Origin.CANCEL,
                revoked_channel=self.plan.revoked_channel,
            )
            reply = await self.scripts.run(CANCEL, call.keys, call.args, call.extra)
            if reply.changed:
                continue
            copies = result_copies(reply.joined, reply.result_status, reply.result, retention.result_s)
            if copies and reply.result_status:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, value in copies:
                        pipe.set(key, value, ex=retention.result_s)
                        pipe.publish(key, value)
                    await pipe.execute()
            return CancelResult(reply.state, reply.cancelled)
        raise RuntimeError(f"the stop {name} changed run {CANCEL_ROUNDS} times while being cancelled")

    async def status(self, call_uuid: str, url: str | None = None) -> StatusRecord | None:
        """The status record of the stop, or None when there is none."""
        validate_call_uuid(call_uuid)
        validate_url(url)
        try:
            return parse_status(await self.redis.get(keys.call_key(call_uuid)), url)
        except RedisError as exc:
            raise self.plan.error("could not read the status", exc, marks=self._marks, writes=False) from None

    async def replay(self, entry_ids: Iterable[str] | None = None) -> list[ReplayResult]:
        """Re-enqueue dead letters (all when ``entry_ids`` is None) under their own stop key."""
        try:
            if entry_ids is None:
                limit = self.plan.settings.retention.dlq_max_entries
                found = await self.redis.zrange(keys.DLQ_INDEX, 0, limit - 1, desc=True)
                wanted = [str(entry_id) for entry_id in found]
            else:
                wanted = list(entry_ids)
            rows = await self.redis.hmget(keys.DLQ_ENTRIES, wanted) if wanted else []
        except RedisError as exc:
            raise self.plan.error(
                "could not read the dead letters", exc, marks=self._marks, writes=False
            ) from None
        entries = [DeadLetter.from_row(row) for row in rows]
        if entry_ids is None:  # an entry removed since it was listed is not asked for
            wanted = [entry_id for entry_id, entry in zip(wanted, entries, strict=True) if entry is not None]
            entries = [entry for entry in entries if entry is not None]
        results = []
        for entry_id, entry in zip(wanted, entries, strict=True):
            request = self.plan.replay_request(entry_id, entry)
            if isinstance(request, ReplayResult):
                results.append(request)
                continue
            assert entry is not None  # narrowing: replay_request answered a missing one above
            (handle,) = handles(
                [request], await self._run_enqueue(self.plan.replay_call(request, entry_id, entry))
            )
            results.append(ReplayResult(entry_id, handle.task_id, handle.deduplicated))
        return results
