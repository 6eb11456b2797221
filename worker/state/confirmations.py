"""The confirmations' schedule: stops whose recordings are looked up, leased and recorded in Redis.

``finish.lua`` puts a successful stop in ``recstop:confirm`` (``keys.CONFIRMS``), due a little
after it stopped. A worker's confirmer (``run.confirmer``) leases what is due (``claim.lua``, the
schedule's own script), reads each stop's record, looks its recordings up, and records the lookup
with ``confirm.lua``: look again later, or settle the confirmation. A confirmer that dies leaves
a lease that expires, and another takes the stop up; one that loses its lease records nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from recstop.worker.config.confirm import ConfirmSettings
from recstop.worker.model.recording import Recording
from recstop.worker.model.vocabulary import Confirmation, Origin, State
from recstop.worker.state import keys
from recstop.worker.state.context import StoreContext
from recstop.worker.state.results import results_args, store_copies
from recstop.worker.state.schedule import CLAIM, Claimed, Lease
from recstop.worker.state.scripts import LuaScript, reply_json

#: How long a confirmer holds the stops it claimed: longer than one lookup's pages take.
LEASE_S: Final = 60.0
#: The labels of the ended-after histogram's buckets, as ``confirm.lua`` counts them.
_BUCKET_LABELS: Final = [keys.bucket_label(bound) for bound in keys.ENDED_AFTER_BUCKETS]


@dataclass(frozen=True)
class Job:
    """One stop whose recordings are due to be looked up: what the lookup needs, from its record."""

    lease: Lease
    task_id: str
    call_uuid: str
    url: str | None
    auth_id: str | None
    state: State
    #: When the lookups end (epoch seconds, Redis' clock).
    confirm_until: float
    #: Lookups made so far (the next waits longer each time).
    lookups: int = 0

    @property
    def target(self) -> str:
        """The stop's target within its call (``all`` or the URL's hash)."""
        return keys.split_member(self.lease.member)[1]


@dataclass(frozen=True)
class ConfirmReply:
    """The reply of ``confirm.lua``."""

    #: False: nothing was recorded (a newer run, no longer pending, or the lease was lost).
    recorded: bool
    #: The confirmation is final.
    settled: bool = False
    joined: tuple[str, ...] = ()
    result_status: str = ""
    result: object = None

    @classmethod
    def parse(cls, raw: object) -> ConfirmReply:
        """Read the script's JSON (an empty Lua table arrives as ``{}``)."""
        reply: Mapping[str, Any] = reply_json(raw)
        return cls(
            bool(reply["recorded"]),
            bool(reply.get("settled")),
            tuple(reply.get("joined") or ()),
            reply.get("result_status", ""),
            reply.get("result"),
        )


CONFIRM: Final = LuaScript("confirm", ConfirmReply.parse)


class Confirmations:
    """The confirmations' schedule on one store context."""

    def __init__(self, ctx: StoreContext, settings: ConfirmSettings) -> None:
        self.ctx = ctx
        self.settings = settings

    def backlog(self) -> int:
        """Messages waiting in the lanes: while any wait, every worker is busy with stops."""
        with self.ctx.client.pipeline(transaction=False) as pipe:
            for lane in keys.LANES:
                for name in keys.lane_lists(lane):
                    pipe.llen(name)
            return sum(int(length) for length in pipe.execute())

    def claim_due(self, limit: int) -> Claimed:
        """Lease up to ``limit`` stops whose lookup is due."""
        return self.ctx.scripts.run(CLAIM, [keys.CONFIRMS], {"lease_s": LEASE_S, "limit": limit})

    def jobs(self, leases: Sequence[Lease]) -> list[Job]:
        """The leased stops that are still waiting for their confirmation (one read of their calls)."""
        if not leases:
            return []
        found: list[Job] = []
        raws = self.ctx.client.mget([keys.call_key_of(lease.member) for lease in leases])
        for lease, raw in zip(leases, raws, strict=True):
            record = json.loads(raw).get(keys.split_member(lease.member)[1]) if raw else None
            if record is not None and record.get("confirmation") == Confirmation.PENDING:
                found.append(
                    Job(
                        lease,
                        record["task_id"],
                        record["call_uuid"],
                        record.get("url"),
                        record.get("auth_id"),
                        State(record["state"]),
                        float(record.get("confirm_until", 0)),
                        int(record.get("confirm_lookups", 0)),
                    )
                )
            else:  # a newer run, or settled meanwhile: the script drops its entry
                self.record(_orphan(lease), looked_up=False, next_s=0.0)
        return found

    def record(
        self,
        job: Job,
        *,
        looked_up: bool,
        next_s: float,
        confirmation: Confirmation | None = None,
        reason: str = "",
        error: str = "",
        recordings: Sequence[Recording] = (),
    ) -> ConfirmReply:
        """Record one lookup: look again ``next_s`` later (``confirmation`` None), or settle it."""
        ctx = self.ctx
        reply = ctx.scripts.run(
            CONFIRM,
            [
                keys.call_key(job.call_uuid),
                keys.CONFIRMS,
                keys.METRICS,
                keys.AUDIT_STREAM,
                keys.result_key(job.task_id),
            ],
            {
                "member": job.lease.member,
                "target": job.target,
                "task_id": job.task_id,
                "lease": job.lease.lease,
                "confirmation": confirmation,
                "reason": reason or None,
                "error": error[:500] or None,
                "recordings": [recording.to_dict() for recording in recordings],
                "next_s": round(next_s, 3),
                "looked_up": looked_up,
                "buckets": _BUCKET_LABELS,
                "results": results_args(ctx.retention.result_s),
                "audit": ctx.audit(Origin.WORKER),
            },
        )
        if reply.joined and reply.result_status:
            store_copies(ctx.client, reply.joined, reply.result_status, reply.result, ctx.retention.result_s)
        return reply


def _orphan(lease: Lease) -> Job:
    """A leased entry whose stop no longer waits: recording it only removes the entry."""
    call_uuid, _ = keys.split_member(lease.member)
    return Job(lease, "", call_uuid, None, None, State.STOPPED, 0.0)
