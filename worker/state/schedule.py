"""The schedule's two steps: lease what is due (``lua/claim.lua``), publish it (``lua/publish.lua``).

``recstop:schedule`` holds every stop that must wait: a delayed stop, a retry, and the watchdog of
a published one. Any worker's scheduler loop (``run.scheduler``) leases the due entries, then
publishes the message of each stop that is still pending, under the same lease.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from recstop.worker.model.status import iso
from recstop.worker.model.vocabulary import TaskEvent
from recstop.worker.state import keys, taskevents
from recstop.worker.state.context import StoreContext
from recstop.worker.state.envelope import stop_message
from recstop.worker.state.scripts import LuaScript, reply_json

#: How long a scheduler holds the due entries it claimed before another may publish them.
LEASE_S: Final = 30.0
#: Stops published per scheduler round trip.
CLAIM_BATCH: Final = 500


@dataclass(frozen=True)
class Lease:
    """A due schedule entry this scheduler claimed: its score when due, and the lease it carries now."""

    member: str
    score: str
    lease: str


@dataclass(frozen=True)
class Claimed:
    """The reply of ``claim.lua``: the leased entries, and seconds until the next one is due."""

    leases: tuple[Lease, ...]
    #: None when the schedule is empty.
    wait_s: float | None

    @classmethod
    def parse(cls, raw: object) -> Claimed:
        """Read the script's JSON."""
        reply: Mapping[str, Any] = reply_json(raw)
        leases = tuple(Lease(d["member"], d["score"], d["lease"]) for d in reply.get("due", []))
        wait_s = reply.get("wait_s")
        return cls(leases, None if wait_s is None else float(wait_s))


@dataclass(frozen=True)
class PublishReply:
    """One item of ``publish.lua``'s reply: whether its message went out, and the watchdog's count."""

    published: bool
    #: How often this run's watchdog has fired (0: an ordinary due entry).
    republished: int

    @classmethod
    def parse_all(cls, raw: object) -> list[PublishReply]:
        """Read the script's JSON array."""
        return [cls(bool(item["published"]), int(item["republished"])) for item in reply_json(raw)]


CLAIM: Final = LuaScript("claim", Claimed.parse)
PUBLISH: Final = LuaScript("publish", PublishReply.parse_all)


@dataclass(frozen=True)
class Published:
    """What the scheduler did with one lease."""

    member: str
    task_id: str
    published: bool
    #: How often this run's watchdog has fired (0: an ordinary due entry).
    republished: int = 0


class Schedule:
    """Leases due entries and publishes their stops; the connection is the store's."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self._sent_channel = ctx.events_channel(TaskEvent.SENT)

    def claim_due(self, *, lease_s: float = LEASE_S, limit: int = CLAIM_BATCH) -> Claimed:
        """Lease due schedule entries for publishing."""
        return self.ctx.scripts.run(CLAIM, [keys.SCHEDULE], {"lease_s": lease_s, "limit": limit})

    def publish_due(self, leases: Sequence[Lease]) -> list[Published]:
        """Publish the message of every leased stop that is still pending; arm its watchdog."""
        if not leases:
            return []
        call_keys = [keys.call_key_of(lease.member) for lease in leases]
        items: list[dict[str, Any]] = []
        messages: list[str] = []
        for lease, raw in zip(leases, self.ctx.client.mget(call_keys), strict=True):
            target = keys.split_member(lease.member)[1]
            record = json.loads(raw).get(target) if raw else None
            task_id = record.get("task_id", "") if record else ""
            items.append(
                {"member": lease.member, "target": target, "task_id": task_id}
                | {"score": lease.score, "lease": lease.lease}
            )
            messages.extend(_republish(record) if record else ("", ""))
        reply = self.ctx.durable(
            PUBLISH,
            [keys.SCHEDULE, keys.QUEUE, keys.URGENT_QUEUE, keys.METRICS, *call_keys],
            {"watchdog_s": self.ctx.watchdog_s, "events_channel": self._sent_channel, "items": items},
            messages,
        )
        return [
            Published(item["member"], item["task_id"], one.published, one.republished)
            for item, one in zip(items, reply, strict=True)
        ]


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
        taskevents.task_sent(record["task_id"], kwargs, queue=lane, retries=retries),
    )
