"""Cancelling a stop (``recstop cancel``) or the run of a task id (Celery's revoke): ``lua/cancel.lua``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from recstop.worker.model.vocabulary import NotFound, Origin, State, TaskEvent
from recstop.worker.state import keys, taskevents
from recstop.worker.state.context import ScriptSettings, StoreContext, read_status
from recstop.worker.state.results import results_args, store_copies
from recstop.worker.state.scripts import LuaScript, reply_json

#: How often a cancel reads the stop again when its run changed under it.
CANCEL_ROUNDS: Final = 5


@dataclass(frozen=True)
class Cancelled:
    """What a cancel or a revoke did: the stop's state afterwards, and whether this call cancelled it.

    ``running``: an attempt held the stop when it was cancelled; a DELETE already sent cannot be
    recalled, and if it stops the recording the stop ends ``stopped``, not ``cancelled``.
    """

    state: State | NotFound
    cancelled: bool
    task_id: str | None = None
    running: bool = False
    member: str | None = None
    #: The revoked task id only joined the run ``task_id`` (another request waits for it): not cancelled.
    joiner: bool = False


@dataclass(frozen=True)
class CancelReply:
    """The reply of ``cancel.lua``; ``changed``: the stop has another run than the one named."""

    state: State | NotFound
    cancelled: bool
    task_id: str | None
    running: bool
    changed: bool
    joiner: bool
    #: Task ids that joined the cancelled run, and the result the caller writes for them.
    joined: tuple[str, ...]
    result_status: str
    result: object

    @classmethod
    def parse(cls, raw: object) -> CancelReply:
        """Read the script's JSON."""
        reply: Mapping[str, Any] = reply_json(raw)
        state = reply["state"]
        return cls(
            NotFound(state) if state in NotFound.__members__.values() else State(state),
            bool(reply["cancelled"]),
            reply.get("task_id"),
            bool(reply.get("running")),
            bool(reply.get("changed")),
            bool(reply.get("joiner")),
            tuple(reply.get("joined") or ()),
            reply.get("result_status", ""),
            reply.get("result"),
        )


CANCEL: Final = LuaScript("cancel", CancelReply.parse)


class Cancels:
    """Cancels runs; whichever process cancels, the outcome, its event and its result are one script."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self._revoked_channel = ctx.events_channel(TaskEvent.REVOKED)

    def cancel(self, call_uuid: str, url: str | None) -> tuple[State | NotFound, bool]:
        """Cancel a pending stop; its state afterwards and whether this call cancelled it."""
        name = keys.stop_key(call_uuid, url)
        for _ in range(CANCEL_ROUNDS):
            record = read_status(self.ctx.client, call_uuid, url)
            outcome = self.cancel_run(name, record.task_id if record else None, Origin.CANCEL)
            if outcome is not None:
                return outcome.state, outcome.cancelled
        raise RuntimeError(f"the stop {name} changed run {CANCEL_ROUNDS} times while being cancelled")

    def revoke(self, task_id: str) -> Cancelled:
        """Cancel the stop whose run has this task id (a Celery revoke), durably.

        A task id no run has yet (its message still queued, or an ETA message not yet received) is
        remembered: the worker that admits it cancels it instead of calling the API.
        """
        client = self.ctx.client
        found = client.get(keys.task_key(task_id))
        if found is None:
            client.set(keys.revoked_key(task_id), "1", ex=self.ctx.retention.status_s)
            found = client.get(keys.task_key(task_id))  # a run that started meanwhile
            if found is None:
                return Cancelled(NotFound.UNKNOWN, cancelled=True, task_id=task_id)
        name = found.decode() if isinstance(found, bytes) else str(found)
        outcome = self.cancel_run(name, task_id, Origin.REVOKE)
        if outcome is None:  # the stop has a newer run: this task id's run is finished
            return Cancelled(NotFound.FINISHED, cancelled=False, task_id=task_id, member=name)
        return outcome

    def cancel_run(self, name: str, task_id: str | None, origin: Origin) -> Cancelled | None:
        """One ``cancel.lua`` call for the run ``task_id`` of the stop ``name``; None when the run changed."""
        ctx = self.ctx
        call = prepare_cancel(ctx, name, task_id, origin, revoked_channel=self._revoked_channel)
        reply = ctx.scripts.run(CANCEL, call.keys, call.args, call.extra)
        if reply.changed:
            return None
        if reply.joined and reply.result_status:
            store_copies(ctx.client, reply.joined, reply.result_status, reply.result, ctx.retention.result_s)
        return cancelled(name, reply)


@dataclass(frozen=True)
class PreparedCancel:
    """The keys and arguments of one ``cancel`` script call."""

    keys: list[str]
    args: dict[str, Any]
    extra: list[str]


def prepare_cancel(
    settings: ScriptSettings, name: str, task_id: str | None, origin: Origin, *, revoked_channel: str
) -> PreparedCancel:
    """The ``cancel.lua`` call for the run ``task_id`` of the stop ``name`` (no I/O).

    ``revoked_channel`` is ``settings.events_channel(TaskEvent.REVOKED)``, computed once by the caller.
    """
    call_uuid, target = keys.split_member(name)
    extra_keys = [keys.result_key(task_id)] if task_id else []
    return PreparedCancel(
        [keys.call_key(call_uuid), keys.SCHEDULE, keys.METRICS, keys.AUDIT_STREAM, *extra_keys],
        {
            "member": name,
            "target": target,
            "retention_s": settings.retention.status_s,
            "events_channel": revoked_channel,
            "task_id": task_id,
            "results": results_args(settings.retention.result_s),
            "audit": settings.audit(origin),
        },
        [taskevents.task_revoked(task_id)] if task_id else [],
    )


def cancelled(name: str, reply: CancelReply) -> Cancelled:
    """What a cancel that did not find its run changed did (the caller wrote the joined results)."""
    return Cancelled(reply.state, reply.cancelled, reply.task_id, reply.running, name, joiner=reply.joiner)
