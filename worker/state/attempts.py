"""One attempt's two transitions: admission (``lua/begin.lua``) and its outcome (``lua/finish.lua``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from recstop.worker.config.confirm import ConfirmSettings
from recstop.worker.model.validation import StopRequest
from recstop.worker.model.vocabulary import Decision, Dedup, Origin, Outcome, Sidelined, Skip, State
from recstop.worker.state import keys
from recstop.worker.state.arguments import raw
from recstop.worker.state.context import StoreContext, request_args
from recstop.worker.state.results import results_args, settled_result, store_copies
from recstop.worker.state.scripts import LuaScript, reply_json

if TYPE_CHECKING:  # the worker's in-flight protocol: a producer never loads it
    from recstop.worker.state.inflight import Fetched

#: How soon a message that found its stop locked by another run looks again, at the least.
DEFER_S: Final = 1.0
#: The labels of the latency histogram's buckets, as ``finish.lua`` counts them (encoded once).
_BUCKET_LABELS: Final = raw([keys.bucket_label(bound) for bound in keys.LATENCY_BUCKETS])


@dataclass(frozen=True)
class Admission:
    """The worker's verdict on a message: run it, or why not."""

    decision: Decision
    #: Why it is skipped (a :class:`Skip` or :class:`Dedup` word), or what cancelled it.
    detail: str = ""
    attempts: int = 0
    auth_id: str | None = None
    not_after: float | None = None

    @classmethod
    def parse(cls, raw: object) -> Admission:
        """The reply of ``begin.lua``."""
        reply: Mapping[str, Any] = reply_json(raw)
        return cls(
            Decision(reply["decision"]),
            reply.get("detail", ""),
            int(reply.get("attempts", 0)),
            reply.get("auth_id"),
            reply.get("not_after"),
        )

    @property
    def skip(self) -> Skip | Dedup | None:
        """The reason of a skip, typed."""
        if self.decision is not Decision.SKIP:
            return None
        return Dedup(self.detail) if self.detail in Dedup.__members__.values() else Skip(self.detail)


@dataclass(frozen=True)
class Finished:
    """What ``finish`` recorded: the stop's state afterwards and the dead reason or next due time."""

    state: State | Sidelined
    detail: str = ""
    #: Task ids of the single-recording stops this stop-all settled.
    settled: tuple[str, ...] = ()
    #: Task ids of the messages that joined this run, and the Celery result the run got (theirs too).
    joined: tuple[str, ...] = ()
    result_status: str = ""
    result: object = None

    @classmethod
    def parse(cls, raw: object) -> Finished:
        """The reply of ``finish.lua`` (an empty Lua table arrives as ``{}``)."""
        reply: Mapping[str, Any] = reply_json(raw)
        state = reply["state"]
        return cls(
            Sidelined(state) if state == Sidelined.SUPERSEDED else State(state),
            reply.get("detail", ""),
            tuple(reply.get("settled") or ()),
            tuple(reply.get("joined") or ()),
            reply.get("result_status", ""),
            reply.get("result"),
        )


BEGIN: Final = LuaScript("begin", Admission.parse)
FINISH: Final = LuaScript("finish", Finished.parse)


@dataclass(frozen=True)
class AttemptRecord:
    """What ``finish`` records of one attempt besides its outcome (all optional: no API call made)."""

    #: The attempt log entry (absent when no API call was made).
    attempt: Mapping[str, Any] | None = None
    http_status: int | None = None
    error: str = ""
    #: Seconds until the next attempt (a retry).
    delay_s: float = 0.0
    #: The dead reason (a dead outcome).
    reason: str = ""
    #: The dead letter the stop gets if it dies, and the message it keeps.
    dlq_id: str = ""
    payload: str = ""
    started_at: float = 0.0


class Attempts:
    """Admits task messages and records their outcomes; each is one script on the call's key.

    With ``confirm`` (confirmation on), a successful stop's recordings are looked up afterwards:
    ``finish`` puts the stop in ``recstop:confirm`` (``state.confirmations``).
    """

    def __init__(self, ctx: StoreContext, confirm: ConfirmSettings | None) -> None:
        self.ctx = ctx
        self._confirm = (
            None
            if confirm is None or not confirm.enabled
            else raw({"deadline_s": confirm.deadline_s, "first_s": confirm.backoff_base_s})
        )

    def begin(
        self,
        request: StopRequest,
        task_id: str,
        *,
        lock_token: str,
        lock_ttl_ms: int,
        consumer: str | None = None,
        default_auth_id: str | None = None,
    ) -> Admission:
        """Admit a task message: decide duplicate, merge, defer or run, and take the stop's lock.

        ``consumer`` (the worker connection that fetched the message) owns the lock: if it is reaped
        as dead, the next message for the stop takes the lock over at once. ``default_auth_id``
        (the worker's default account) is the account of a message that names none: a run started
        here records it, so its record, dead letter and audit events say which account it used.
        """
        ctx = self.ctx
        return ctx.scripts.run(
            BEGIN,
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
                **request_args(request),
                "task_id": task_id,
                "lock_token": lock_token,
                "lock_ttl_ms": lock_ttl_ms,
                "consumer": consumer,
                "default_auth_id": default_auth_id,
                "deadline_s": ctx.retry.deadline_s,
                "retention_s": ctx.retention.status_s,
                "defer_s": DEFER_S,
                "watchdog_s": ctx.watchdog_s,
                "results": results_args(ctx.retention.result_s),
                "audit": ctx.audit(Origin.CELERY),
            },
        )

    def finish(
        self,
        request: StopRequest,
        task_id: str,
        *,
        lock_token: str,
        outcome: Outcome,
        record: AttemptRecord,
        ack: Fetched | None = None,
        auth_id: str | None = None,
    ) -> Finished:
        """Record an attempt and move the stop on: terminal, retrying, or dead (dead-lettered).

        With ``ack`` (the task's message as fetched), the message is acknowledged in the same script.
        ``auth_id``: the account the attempt was made with (the message's, else the worker's
        default), for the attempt's audit event.
        """
        ctx = self.ctx
        ack_keys, ack_args = ([ack.inflight], [ack.message]) if ack is not None else ([], [])
        finished = ctx.scripts.run(
            FINISH,
            [
                keys.call_key(request.call_uuid),
                keys.SCHEDULE,
                keys.DLQ_INDEX,
                keys.DLQ_ENTRIES,
                keys.METRICS,
                keys.result_key(task_id),
                keys.AUDIT_STREAM,
                keys.CONFIRMS,
                *ack_keys,
            ],
            {
                **request_args(request),
                "auth_id": auth_id or request.auth_id,
                "call": request.call_uuid.lower(),
                "task_id": task_id,
                "lock_token": lock_token,
                "outcome": outcome,
                "attempt": record.attempt,
                "http_status": record.http_status,
                "error": record.error or None,
                "delay_s": round(record.delay_s, 3),
                "reason": record.reason or None,
                "dlq_id": record.dlq_id or None,
                "payload": record.payload or None,
                "retention_s": ctx.retention.status_s,
                "dlq_max_entries": ctx.retention.dlq_max_entries,
                "dlq_max_age_s": ctx.retention.dlq_max_age_s,
                "started_at": round(record.started_at, 3),
                "buckets": _BUCKET_LABELS,
                "confirm": self._confirm,
                "results": results_args(ctx.retention.result_s),
                "audit": ctx.audit(Origin.WORKER),
            },
            ack_args,
        )
        expires_s = ctx.retention.result_s
        if finished.settled:
            store_copies(ctx.client, finished.settled, *settled_result(task_id), expires_s)
        if finished.joined and finished.result_status:
            store_copies(ctx.client, finished.joined, finished.result_status, finished.result, expires_s)
        return finished
