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

from recstop.worker.model.errors import RetryScheduled
from recstop.worker.model.status import iso
from recstop.worker.model.vocabulary import PENDING, Phase, State, TaskEvent
from recstop.worker.state import keys, taskevents
from recstop.worker.state.context import StoreContext
from recstop.worker.state.envelope import stop_message
from recstop.worker.state.scripts import LuaScript, reply_json

#: How long a scheduler holds the due entries it claimed before another may publish them.
LEASE_S: Final = 30.0
#: Stops published per scheduler round trip.
CLAIM_BATCH: Final = 500
#: The most stops :meth:`Schedule.announce` tells a monitor about: the soonest due. (Flower keeps
#: 10,000 tasks as recstop ships it; a backlog larger than this shows its first part.)
ANNOUNCE_MAX: Final = 1000


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

    def announce(self, *, limit: int = ANNOUNCE_MAX) -> int:
        """Tell a monitor that connected late which stops wait in the schedule; how many were told.

        Flower learns of a task from its events: a stop whose ``task-sent`` went out before Flower
        started (or while it was down) would be missing from its list until its next attempt.
        This publishes, for each pending stop among the ``limit`` soonest schedule entries, a
        ``task-sent`` (its ETA when it waits) and, for a retry, a ``task-retried`` saying what
        failed and when the next attempt is due. Nothing changes in Redis; events are advisory.
        """
        members = [str(m) for m in self.ctx.client.zrange(keys.SCHEDULE, 0, limit - 1)]
        call_keys = sorted({keys.call_key_of(member) for member in members})
        calls = {
            key: json.loads(raw) if raw else {}
            for key, raw in zip(call_keys, self.ctx.client.mget(call_keys) if call_keys else [], strict=True)
        }
        retried = self.ctx.events_channel(TaskEvent.RETRIED)
        told = 0
        with self.ctx.client.pipeline(transaction=False) as pipe:
            for member in members:
                record = calls[keys.call_key_of(member)].get(keys.split_member(member)[1])
                if not record or record.get("state") not in PENDING:
                    continue
                waiting = record.get("phase") == Phase.WAITING
                pipe.publish(
                    self._sent_channel, _events(record, eta=record.get("due_at") if waiting else None)[1]
                )
                if record["state"] == State.RETRYING:
                    retry = RetryScheduled.after(
                        int(record.get("attempts", 0)),
                        record.get("last_http_status"),
                        record.get("last_error"),
                        float(record.get("due_at") or 0),
                    )
                    pipe.publish(retried, taskevents.task_retried(record["task_id"], str(retry)))
                told += 1
            pipe.execute()
        return told


def _republish(record: Mapping[str, Any]) -> tuple[str, str]:
    """The task message of a stored run, published again by the scheduler (delay, retry, watchdog)."""
    return _events(record)


def _events(record: Mapping[str, Any], *, eta: float | None = None) -> tuple[str, str]:
    """A stored run's task message and its ``task-sent`` event (a replay's names the stop it replays)."""
    kwargs = {
        "call_uuid": record["call_uuid"],
        "url": record.get("url"),
        "auth_id": record.get("auth_id"),
        "request_id": record.get("request_id"),
        "not_after": iso(record.get("not_after")),
    }
    lane = keys.URGENT_QUEUE if record.get("urgent") else keys.QUEUE
    retries = int(record.get("attempts", 0))
    parent = (record.get("replayed_from") or {}).get("task_id")
    return (
        stop_message(kwargs, queue=lane, retries=retries, parent_id=parent),
        taskevents.task_sent(
            record["task_id"], kwargs, queue=lane, retries=retries, eta=eta, parent_id=parent
        ),
    )
