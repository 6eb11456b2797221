"""The stop store: every state transition of a stop, each one an atomic script on the call's key."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis import Redis

from recstop.worker.config.settings import RedisSettings, Retention, RetryPolicy
from recstop.worker.model.errors import InvalidStopRequest
from recstop.worker.model.status import StatusRecord, iso
from recstop.worker.model.validation import StopRequest
from recstop.worker.model.vocabulary import Outcome, Skipped, State
from recstop.worker.state import keys
from recstop.worker.state import taskevents as events
from recstop.worker.state.envelope import stop_message
from recstop.worker.state.inflight import Fetched
from recstop.worker.state.redisclient import check_wait, queue_wait
from recstop.worker.state.results import results_args, settled_result, store_copies
from recstop.worker.state.scripts import Scripts, decode

#: How long a scheduler holds the due entries it claimed before another may publish them.
LEASE_S: Final = 30.0
#: Stops published per scheduler round trip.
CLAIM_BATCH: Final = 500
#: How often a cancel reads the stop again when its run changed under it.
CANCEL_ROUNDS: Final = 5


@dataclass(frozen=True)
class NewStop:
    """One stop to enqueue: the request, the task id a new run gets, and when it is due."""

    request: StopRequest
    task_id: str
    delay_s: float | None = None
    at_epoch: float | None = None
    #: A dead letter this run replays: removed once the run succeeds.
    dlq_id: str | None = None


@dataclass(frozen=True)
class Enqueued:
    """What ``enqueue`` did: the task id that will stop the recording, and whether it was new."""

    task_id: str
    deduplicated: bool
    state: State
    #: The message went onto a queue in the same script (a new stop due now, a scheduled one pulled
    #: forward, or a pending one joined by an urgent stop).
    pushed: bool = False


@dataclass(frozen=True)
class PreparedEnqueue:
    """The keys and arguments of one ``enqueue`` script call (bulk enqueues prepare the next chunk)."""

    keys: list[str]
    args: dict[str, Any]
    messages: list[str]


@dataclass(frozen=True)
class Lease:
    """A due schedule entry this scheduler claimed: its score when due, and the lease it carries now."""

    member: str
    score: str
    lease: str


@dataclass(frozen=True)
class Published:
    """What the scheduler did with one lease."""

    member: str
    task_id: str
    published: bool
    #: How often this run's watchdog has fired (0: an ordinary due entry).
    republished: int = 0


@dataclass(frozen=True)
class Admission:
    """The worker's verdict on a message: run it, or why not."""

    decision: str  # run | expired | cancelled | skip
    detail: str = ""
    attempts: int = 0
    auth_id: str | None = None
    not_after: float | None = None

    @classmethod
    def parse(cls, reply: Mapping[str, Any]) -> Admission:
        """The reply of ``begin.lua``."""
        return cls(
            reply["decision"],
            reply.get("detail", ""),
            int(reply.get("attempts", 0)),
            reply.get("auth_id"),
            reply.get("not_after"),
        )


@dataclass(frozen=True)
class Finished:
    """What ``finish`` recorded: the stop's state afterwards and the dead reason or next due time."""

    state: State | Skipped  # a State, or "superseded"
    detail: str = ""
    #: Task ids of the single-recording stops this stop-all settled.
    settled: tuple[str, ...] = ()
    #: Task ids of the messages that joined this run, and the Celery result the run got (theirs too).
    joined: tuple[str, ...] = ()
    result_status: str = ""
    result: object = None

    @classmethod
    def parse(cls, reply: Mapping[str, Any]) -> Finished:
        """The reply of ``finish.lua`` (an empty Lua table arrives as ``{}``)."""
        state = reply["state"]
        return cls(
            "superseded" if state == "superseded" else State(state),
            reply.get("detail", ""),
            tuple(reply.get("settled") or ()),
            tuple(reply.get("joined") or ()),
            reply.get("result_status", ""),
            reply.get("result"),
        )


@dataclass(frozen=True)
class Cancelled:
    """What a cancel or a revoke did: the stop's state afterwards, and whether this call cancelled it.

    ``running``: an attempt held the stop when it was cancelled; a DELETE already sent cannot be
    recalled, and if it stops the recording the stop ends ``stopped``, not ``cancelled``.
    """

    state: str  # a State, "missing" (no such stop), "unknown" (an unseen task id), "finished"
    cancelled: bool
    task_id: str | None = None
    running: bool = False
    member: str | None = None
    #: The revoked task id only joined the run ``task_id`` (another request waits for it): not cancelled.
    joiner: bool = False


def parse_enqueued(reply: Mapping[str, Any]) -> Enqueued:
    """One stop's reply of ``enqueue.lua``; a refused ``not_after`` raises InvalidStopRequest."""
    if "error" in reply:
        raise InvalidStopRequest("not_after", reply["error"])
    return Enqueued(reply["task_id"], reply["deduplicated"], State(reply["state"]), reply["pushed"])


class StopStore:
    """Status records, the schedule and per-stop locks; the connection is passed in.

    ``redis_settings`` names the broker database (task events go to its channels) and, when it asks
    for replicas (``RECSTOP_REDIS_WAIT_REPLICAS``), the scripts that publish a message (enqueue,
    publish) wait until that many replicas hold their writes.
    """

    def __init__(
        self,
        client: Redis,
        retry: RetryPolicy,
        retention: Retention,
        *,
        watchdog_s: float = 300.0,
        redis_settings: RedisSettings | None = None,
        audit_max: int = 1_000_000,
    ) -> None:
        self.client = client
        #: The audit outbox's bound (``AuditSettings.stream_max``; 0: no audit events).
        self.audit_max = audit_max
        self.retry = retry
        self.retention = retention
        self.watchdog_s = watchdog_s
        self.redis_settings = redis_settings or RedisSettings()
        self.events_channel = events.channel(self.redis_settings.url, "task-sent")
        self.revoked_channel = events.channel(self.redis_settings.url, "task-revoked")
        self.scripts = Scripts(client)

    def audit(self, origin: str) -> dict[str, Any]:
        """The ``audit`` argument of a script: the outbox's bound, and who asked for the change."""
        return {"max": self.audit_max, "origin": origin}

    def prepare_enqueue(
        self, stops: Sequence[NewStop], *, urgent: bool = False, origin: str = "python"
    ) -> PreparedEnqueue:
        """One ``enqueue`` call for ``stops`` (all on one lane): keys, arguments, messages.

        ``origin`` names the producer path in the audit trail: python, cli, replay, celery.
        """
        lane = keys.URGENT_QUEUE if urgent else keys.QUEUE
        return PreparedEnqueue(
            keys=[
                keys.SCHEDULE,
                lane,
                keys.AUDIT_STREAM,
                keys.METRICS,
                *(keys.call_key(s.request.call_uuid) for s in stops),
                *(keys.task_key(s.task_id) for s in stops),
            ],
            args={
                "deadline_s": self.retry.deadline_s,
                "retention_s": self.retention.status_s,
                "watchdog_s": self.watchdog_s,
                "urgent": urgent,
                "events_channel": self.events_channel,
                "audit": self.audit(origin),
                "stops": [_stop_args(s) for s in stops],
            },
            messages=[part for s in stops for part in _message_and_event(s, lane)],
        )

    def run_enqueue(self, call: PreparedEnqueue) -> list[Mapping[str, Any]]:
        """Run a prepared ``enqueue`` (atomic, one round trip); the raw reply of each stop."""
        reply: list[Mapping[str, Any]] = self._durable("enqueue", call.keys, call.args, call.messages)
        return reply

    def enqueue(self, stop: NewStop, *, urgent: bool = False, origin: str = "python") -> Enqueued:
        """Create a run for the stop unless one is pending; push its message if it is due now."""
        (reply,) = self.run_enqueue(self.prepare_enqueue([stop], urgent=urgent, origin=origin))
        return parse_enqueued(reply)

    def defer(self, stop: NewStop, fetched: Fetched | None, *, urgent: bool = False) -> Enqueued:
        """Move a received Celery message with an ETA into the schedule, acked in the same script.

        The stop keeps the message's task id (``AsyncResult`` and revoke find it); a stop whose
        ``not_after`` (the message's ``expires``) passes before it is due is kept, and dead-lettered
        when it is due, never refused here: the message is already taken off its queue.
        """
        call = self.prepare_enqueue([stop], urgent=urgent, origin="celery")
        call.args["stops"][0] |= {"keep_expired": True, "join": True}
        if fetched is not None:
            call.args["ack"] = True
            call.keys.append(fetched.inflight)
            call.messages.append(fetched.message)  # type: ignore[arg-type] # bytes, as fetched
        call.args["results"] = results_args(self.retention.result_s)
        call.keys.append(keys.result_key(stop.task_id))
        (reply,) = self.run_enqueue(call)
        enqueued = parse_enqueued(reply)
        if not enqueued.deduplicated and self.client.exists(keys.revoked_key(stop.task_id)):
            # Revoked while its message waited in the queue: cancelled before it is ever due.
            self._cancel(keys.stop_key(stop.request.call_uuid, stop.request.url), stop.task_id, "revoke")
            return Enqueued(enqueued.task_id, deduplicated=False, state=State.CANCELLED)
        return enqueued

    def claim_due(
        self, *, lease_s: float = LEASE_S, limit: int = CLAIM_BATCH
    ) -> tuple[list[Lease], float | None]:
        """Lease due schedule entries for publishing; also return seconds until the next one is due."""
        reply = self.scripts.run("claim", [keys.SCHEDULE], {"lease_s": lease_s, "limit": limit})
        leases = [Lease(d["member"], d["score"], d["lease"]) for d in reply.get("due", [])]
        return leases, reply.get("wait_s")

    def publish_due(self, leases: Sequence[Lease]) -> list[Published]:
        """Publish the message of every leased stop that is still pending; arm its watchdog."""
        if not leases:
            return []
        call_keys = [keys.call_key_of(lease.member) for lease in leases]
        items: list[dict[str, Any]] = []
        messages: list[str] = []
        for lease, raw in zip(leases, self.client.mget(call_keys), strict=True):
            target = lease.member.split("/", 1)[1]
            record = json.loads(raw).get(target) if raw else None
            task_id = record.get("task_id", "") if record else ""
            items.append({"member": lease.member, "target": target, "task_id": task_id, **_lease(lease)})
            messages.extend(_republish(record) if record else ("", ""))
        reply = self._durable(
            "publish",
            [keys.SCHEDULE, keys.QUEUE, keys.URGENT_QUEUE, keys.METRICS, *call_keys],
            {"watchdog_s": self.watchdog_s, "events_channel": self.events_channel, "items": items},
            messages,
        )
        return [
            Published(item["member"], item["task_id"], r["published"], int(r["republished"]))
            for item, r in zip(items, reply, strict=True)
        ]

    def cancel(self, call_uuid: str, url: str | None) -> tuple[str, bool]:
        """Cancel a pending stop; return its state afterwards and whether this call cancelled it."""
        member = keys.stop_key(call_uuid, url)
        for _ in range(CANCEL_ROUNDS):
            record = self.status(call_uuid, url)
            outcome = self._cancel(member, record.task_id if record else None, "cancel")
            if outcome is not None:
                return outcome.state, outcome.cancelled
        raise RuntimeError(f"the stop {member} changed run {CANCEL_ROUNDS} times while being cancelled")

    def revoke(self, task_id: str) -> Cancelled:
        """Cancel the stop whose run has this task id (a Celery revoke), durably.

        A task id no run has yet (its message still queued, or an ETA message not yet received) is
        remembered: the worker that admits it cancels it instead of calling the API.
        """
        member = self.client.get(keys.task_key(task_id))
        if member is None:
            self.client.set(keys.revoked_key(task_id), "1", ex=self.retention.status_s)
            member = self.client.get(keys.task_key(task_id))  # a run that started meanwhile
            if member is None:
                return Cancelled("unknown", cancelled=True, task_id=task_id)
        name = member.decode() if isinstance(member, bytes) else str(member)
        outcome = self._cancel(name, task_id, "revoke")
        if outcome is None:  # the stop has a newer run: this task id's run is finished
            return Cancelled("finished", cancelled=False, task_id=task_id, member=name)
        return outcome

    def _cancel(self, member: str, task_id: str | None, origin: str) -> Cancelled | None:
        """One ``cancel.lua`` call for the run ``task_id`` of ``member``; None when the run changed."""
        call_uuid, target = member.split("/", 1)
        extra = [keys.result_key(task_id)] if task_id else []
        reply = self.scripts.run(
            "cancel",
            [keys.call_key(call_uuid), keys.SCHEDULE, keys.METRICS, keys.AUDIT_STREAM, *extra],
            {
                "member": member,
                "target": target,
                "retention_s": self.retention.status_s,
                "events_channel": self.revoked_channel,
                "origin": events.origin(),
                "task_id": task_id,
                "results": results_args(self.retention.result_s),
                "audit": self.audit(origin),
            },
        )
        if reply.get("changed"):
            return None
        if reply.get("joined") and reply.get("result_status"):
            store_copies(
                self.client, reply["joined"], reply["result_status"], reply["result"], self.retention.result_s
            )
        return Cancelled(
            reply["state"],
            reply["cancelled"],
            reply.get("task_id"),
            bool(reply.get("running")),
            member,
            joiner=bool(reply.get("joiner")),
        )

    def begin(
        self,
        request: StopRequest,
        task_id: str,
        *,
        lock_token: str,
        lock_ttl_ms: int,
        consumer: str | None = None,
    ) -> Admission:
        """Admit a task message: decide duplicate, merge, defer or run, and take the stop's lock.

        ``consumer`` (the worker connection that fetched the message) owns the lock: if it is reaped
        as dead, the next message for the stop takes the lock over at once.
        """
        reply = self.scripts.run(
            "begin",
            [
                keys.call_key(request.call_uuid),
                keys.SCHEDULE,
                keys.CONSUMERS,
                keys.task_key(task_id),
                keys.revoked_key(task_id),
                keys.result_key(task_id),
                keys.METRICS,
                keys.AUDIT_STREAM,
            ],
            {
                **_request_args(request),
                "task_id": task_id,
                "lock_token": lock_token,
                "lock_ttl_ms": lock_ttl_ms,
                "consumer": consumer,
                "deadline_s": self.retry.deadline_s,
                "retention_s": self.retention.status_s,
                "defer_s": 1.0,
                "watchdog_s": self.watchdog_s,
                "results": results_args(self.retention.result_s),
                "audit": self.audit("celery"),
            },
        )
        return Admission.parse(reply)

    def finish(
        self,
        request: StopRequest,
        task_id: str,
        *,
        lock_token: str,
        outcome: Outcome,
        attempt: Mapping[str, Any] | None,
        http_status: int | None = None,
        error: str = "",
        delay_s: float = 0.0,
        reason: str = "",
        dlq_id: str = "",
        payload: str = "",
        started_at: float = 0.0,
        ack: Fetched | None = None,
    ) -> Finished:
        """Record an attempt and move the stop on: terminal, retrying, or dead (dead-lettered).

        With ``ack`` (the task's message as fetched), the message is acknowledged in the same script.
        """
        ack_keys, ack_args = ([ack.inflight], [ack.message]) if ack is not None else ([], [])
        reply = self.scripts.run(
            "finish",
            [
                keys.call_key(request.call_uuid),
                keys.SCHEDULE,
                keys.DLQ_INDEX,
                keys.DLQ_ENTRIES,
                keys.METRICS,
                keys.result_key(task_id),
                keys.AUDIT_STREAM,
                *ack_keys,
            ],
            {
                **_request_args(request),
                "call": request.call_uuid.lower(),
                "task_id": task_id,
                "lock_token": lock_token,
                "outcome": str(outcome),
                "attempt": attempt,
                "http_status": http_status,
                "error": error or None,
                "delay_s": round(delay_s, 3),
                "reason": reason or None,
                "dlq_id": dlq_id or None,
                "payload": payload or None,
                "retention_s": self.retention.status_s,
                "dlq_max_entries": self.retention.dlq_max_entries,
                "dlq_max_age_s": self.retention.dlq_max_age_s,
                "started_at": round(started_at, 3),
                "results": results_args(self.retention.result_s),
                "audit": self.audit("worker"),
            },
            ack_args,
        )
        finished = Finished.parse(reply)
        expires_s = self.retention.result_s
        if finished.settled:
            store_copies(self.client, finished.settled, "SUCCESS", settled_result(task_id), expires_s)
        if finished.joined and finished.result_status:
            store_copies(self.client, finished.joined, finished.result_status, finished.result, expires_s)
        return finished

    def status(self, call_uuid: str, url: str | None = None) -> StatusRecord | None:
        """The status record of a stop, or None when there is none (or it expired)."""
        raw = self.client.get(keys.call_key(call_uuid))
        record = json.loads(raw).get(keys.target_of(url)) if raw else None
        return StatusRecord.from_record(record) if record else None

    def _durable(self, name: str, keys_: Sequence[str], args: Mapping[str, Any], extra: Sequence[str]) -> Any:  # noqa: ANN401 - the script's reply
        """Run a script that publishes messages; WAIT for replicas on the same connection if asked."""
        if self.redis_settings.wait_replicas <= 0:
            return self.scripts.run(name, keys_, args, extra)
        with self.client.pipeline(transaction=False) as pipe:
            self.scripts.queue(pipe, name, keys_, args, extra)
            queue_wait(pipe, self.redis_settings)
            raw, acked = pipe.execute()
        check_wait(acked, self.redis_settings)
        return decode(raw)


def _request_args(request: StopRequest) -> dict[str, Any]:
    """A stop's fields as script arguments, under the names every script uses."""
    return {
        "member": keys.stop_key(request.call_uuid, request.url),
        "target": keys.target_of(request.url),
        "call_uuid": request.call_uuid,
        "url": request.url,
        "auth_id": request.auth_id,
        "request_id": request.request_id,
        "not_after": None if request.not_after is None else round(request.not_after.timestamp(), 3),
    }


def _stop_args(stop: NewStop) -> dict[str, Any]:
    return {
        **_request_args(stop.request),
        "task_id": stop.task_id,
        "delay_s": None if stop.delay_s is None else round(stop.delay_s, 3),
        "at": None if stop.at_epoch is None else round(stop.at_epoch, 3),
        "dlq_id": stop.dlq_id,
    }


def _lease(lease: Lease) -> dict[str, str]:
    return {"score": lease.score, "lease": lease.lease}


def _message_and_event(stop: NewStop, lane: str) -> tuple[str, str]:
    """A new stop's task message and its ``task-sent`` event (with the ETA of a delayed stop)."""
    kwargs = stop.request.to_kwargs()
    eta = stop.at_epoch if stop.at_epoch is not None else None
    if eta is None and stop.delay_s is not None:
        eta = time.time() + stop.delay_s
    return stop_message(kwargs, queue=lane), events.task_sent(stop.task_id, kwargs, queue=lane, eta=eta)


def _republish(record: Mapping[str, Any]) -> tuple[str, str]:
    """The task message of a stored run, published again by the scheduler (delay, retry, watchdog)."""
    kwargs = {
        "call_uuid": record["call_uuid"],
        "url": record.get("url"),
        "auth_id": record.get("auth_id"),
        "request_id": record.get("request_id"),
        "not_after": iso(record.get("not_after")),
    }
    lane = keys.URGENT_QUEUE if record.get("urgent") else keys.QUEUE
    retries = int(record.get("attempts", 0))
    return (
        stop_message(kwargs, queue=lane, retries=retries),
        events.task_sent(record["task_id"], kwargs, queue=lane, retries=retries),
    )
