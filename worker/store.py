"""The stop store: every state transition of a stop key, each one atomic in Redis."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis import Redis

from worker import keys
from worker.envelope import stop_message
from worker.errors import InvalidStopRequest
from worker.scripts import Scripts
from worker.settings import Retention, RetryPolicy
from worker.status import StatusRecord, iso
from worker.validation import StopRequest

#: How long a just-enqueued stop waits in the schedule before the scheduler publishes it again,
#: in case the producer died between storing it and publishing its message.
PUBLISH_GRACE_S: Final = 15.0


@dataclass(frozen=True)
class Enqueued:
    """What ``enqueue`` did: the task id that will stop the recording, and whether it was new."""

    task_id: str
    deduplicated: bool
    state: str
    schedule_score: str
    #: The message went onto the queue in the same script (a new queued stop, a scheduled one
    #: pulled forward, or a pending one joined by an urgent stop).
    pushed: bool = False


@dataclass(frozen=True)
class Due:
    """A stop the scheduler leased for publishing."""

    member: str
    lease_score: str
    task_id: str
    kwargs: dict[str, str | None]
    attempts: int
    republished: int = 0  # how often this run's watchdog fired (0: an ordinary due entry)
    urgent: bool = False  # enqueued on the urgent lane: published there again


@dataclass(frozen=True)
class Admission:
    """The worker's verdict on a message: run it, or why not."""

    decision: str  # run | expired | skip
    detail: str = ""
    attempts: int = 0
    auth_id: str | None = None
    not_after: float | None = None


class StopStore:
    """Status records, the schedule and per-key locks; the connection is passed in."""

    def __init__(
        self, client: Redis, retry: RetryPolicy, retention: Retention, *, watchdog_s: float = 300.0
    ) -> None:
        self.client = client
        self.retry = retry
        self.retention = retention
        self.watchdog_s = watchdog_s
        self.scripts = Scripts.register(client)

    def enqueue(
        self,
        request: StopRequest,
        task_id: str,
        *,
        delay_s: float | None = None,
        at_epoch: float | None = None,
        dlq_id: str = "",
        message: str | None = None,
        queue: str = keys.QUEUE,
        urgent: bool = False,
    ) -> Enqueued:
        """Create a run for the stop unless one is pending; push ``message`` if it is due now.

        ``message`` is the task message with its task id left as a placeholder (by default
        ``worker.envelope.stop_message`` of the request); it goes onto ``queue`` atomically with
        the record.
        """
        return self.parse_enqueued(
            self.scripts.run(  # the script takes any number of stops and answers one reply each
                "enqueue",
                *self.enqueue_call(
                    request,
                    task_id,
                    delay_s=delay_s,
                    at_epoch=at_epoch,
                    dlq_id=dlq_id,
                    message=message,
                    queue=queue,
                    urgent=urgent,
                ),
            )[0]
        )

    def enqueue_call(
        self,
        request: StopRequest,
        task_id: str,
        *,
        delay_s: float | None = None,
        at_epoch: float | None = None,
        dlq_id: str = "",
        message: str | None = None,
        queue: str = keys.QUEUE,
        urgent: bool = False,
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of one ``enqueue`` script call (pipelined by bulk enqueues)."""
        key = keys.stop_key(request.call_uuid, request.url)
        return (
            [
                keys.status_key(key),
                keys.SCHEDULE,
                keys.call_targets_key(request.call_uuid),
                keys.attempts_key(key),
            ],
            [
                key,
                task_id,
                *_request_args(request),
                self.retry.deadline_s,
                "" if delay_s is None else f"{delay_s:.3f}",
                "" if at_epoch is None else f"{at_epoch:.3f}",
                PUBLISH_GRACE_S,
                self.retention.status_s,
                keys.target_of(request.url),
                dlq_id,
                stop_message(request.to_kwargs(), queue=queue) if message is None else message,
                queue,
                "1" if urgent else "",
                self.watchdog_s,
            ],
        )

    @staticmethod
    def parse_enqueued(reply: Any) -> Enqueued:  # noqa: ANN401 - Lua reply
        """Turn the ``enqueue`` script's reply into an :class:`Enqueued`."""
        found_task, flag, state, score, pushed = reply
        if flag == "invalid":
            raise InvalidStopRequest("not_after", state)
        return Enqueued(found_task, flag == "1", state, score, pushed == "pushed")

    def confirm_published(self, member: str, score: str) -> bool:
        """The message is published: its safety-net schedule entry becomes the key's watchdog."""
        return bool(
            self.scripts.run(
                "confirm", [keys.SCHEDULE, keys.status_key(member)], [member, score, self.watchdog_s]
            )
        )

    def claim_due(self, *, lease_s: float, limit: int) -> tuple[list[Due], float | None]:
        """Lease due stops for publishing; also return seconds until the next one is due."""
        rows, wait = self.scripts.run("claim", [keys.SCHEDULE], [f"{keys.PREFIX}:status:", lease_s, limit])
        return [_due(row) for row in rows], float(wait) if wait else None

    def cancel(self, call_uuid: str, url: str | None) -> tuple[str, bool]:
        """Cancel a pending stop; return its state afterwards and whether this call cancelled it."""
        key = keys.stop_key(call_uuid, url)
        state, changed = self.scripts.run(
            "cancel",
            [keys.status_key(key), keys.SCHEDULE],
            [key, self.retention.status_s, f"{keys.PREFIX}:task:"],
        )
        return state, changed == "1"

    def begin(self, request: StopRequest, task_id: str, *, lock_token: str, lock_ttl_ms: int) -> Admission:
        """Admit a task message: decide duplicate, merge, defer or run, and take the key's lock."""
        key = keys.stop_key(request.call_uuid, request.url)
        reply = self.scripts.run(
            "begin",
            [
                keys.status_key(key),
                keys.lock_key(key),
                keys.SCHEDULE,
                keys.task_key(task_id),
                keys.attempts_key(key),
                keys.call_targets_key(request.call_uuid),
            ],
            [
                key,
                task_id,
                lock_token,
                lock_ttl_ms,
                *_request_args(request),
                self.retry.deadline_s,
                self.retention.status_s,
                keys.target_of(request.url),
                1.0,
                self.watchdog_s,
            ],
        )
        if reply[0] == "skip":
            return Admission("skip", reply[1])
        decision, _, attempts, auth_id, not_after, _enqueued = reply
        return Admission(decision, "", int(attempts), auth_id or None, float(not_after))

    def finish(
        self,
        request: StopRequest,
        task_id: str,
        *,
        lock_token: str,
        result: str,
        attempt: Mapping[str, Any] | None,
        http_status: int | None = None,
        error: str = "",
        delay_s: float = 0.0,
        reason: str = "",
        dlq_id: str = "",
        payload: str = "",
        started_at: float = 0.0,
    ) -> tuple[str, str]:
        """Record an attempt and move the stop on: terminal, retrying, or dead (dead-lettered)."""
        key = keys.stop_key(request.call_uuid, request.url)
        state, detail = self.scripts.run(
            "finish",
            [
                keys.status_key(key),
                keys.lock_key(key),
                keys.SCHEDULE,
                keys.task_key(task_id),
                keys.attempts_key(key),
                keys.call_targets_key(request.call_uuid),
                keys.DLQ_INDEX,
            ],
            [
                key,
                task_id,
                lock_token,
                result,
                json.dumps(attempt, separators=(",", ":")) if attempt else "",
                "" if http_status is None else http_status,
                error,
                f"{delay_s:.3f}",
                reason,
                dlq_id,
                payload,
                self.retention.status_s,
                self.retention.dlq_max_entries,
                self.retention.dlq_max_age_s,
                keys.PREFIX,
                f"{started_at:.3f}",
                keys.target_of(request.url),
                request.call_uuid.lower(),
            ],
        )
        return state, detail

    def status(self, call_uuid: str, url: str | None = None) -> StatusRecord | None:
        """The status record of a stop key, or None when there is none (or it expired)."""
        key = keys.stop_key(call_uuid, url)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.status_key(key))
        pipe.lrange(keys.attempts_key(key), 0, -1)
        data, log = pipe.execute()
        if not data:
            return None
        return StatusRecord.from_redis(data, log)


def _request_args(request: StopRequest) -> list[str]:
    """A stop's fields as script arguments, in the order every script takes them."""
    not_after = "" if request.not_after is None else f"{request.not_after.timestamp():.3f}"
    return [request.call_uuid, request.url or "", request.auth_id or "", request.request_id or "", not_after]


def _iso_or_none(epoch: str | None) -> str | None:
    return iso(float(epoch)) if epoch else None


def _due(row: list[str]) -> Due:
    """One row of the claim script's reply."""
    member, score, task_id, call_uuid, url, auth_id, request_id, not_after, attempts, republished, urgent = (
        row
    )
    return Due(
        member=member,
        lease_score=score,
        task_id=task_id,
        kwargs={
            "call_uuid": call_uuid,
            "url": url or None,
            "auth_id": auth_id or None,
            "request_id": request_id or None,
            "not_after": _iso_or_none(not_after),
        },
        attempts=int(attempts or 0),
        republished=int(republished or 0),
        urgent=urgent == "1",
    )
