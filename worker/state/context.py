"""What every transition of a stop is run with: the client, its scripts, the settings they read.

The stop store (``state.store``) is split by transition (``enqueue``, ``attempts``, ``schedule``,
``cancels``); each part gets this one context, so a setting reaches the scripts through one path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis import Redis

from recstop.worker.config.redis import RedisSettings
from recstop.worker.config.settings import Retention, RetryPolicy
from recstop.worker.model.status import StatusRecord
from recstop.worker.model.validation import StopRequest
from recstop.worker.model.vocabulary import Origin, TaskEvent
from recstop.worker.state import keys, taskevents
from recstop.worker.state.arguments import Raw
from recstop.worker.state.redisclient import check_wait, queue_wait
from recstop.worker.state.scripts import LuaScript, Scripts

R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class ScriptSettings:
    """The settings the scripts are given, without a connection: what a script call is prepared from.

    ``redis`` names the broker database (task events go to its channels) and whether publishes wait
    for replicas. The threaded store (:class:`StoreContext`) and the asyncio producer prepare their
    calls from the same settings, with the same functions (``enqueue.prepare_enqueue`` ...).
    """

    retry: RetryPolicy
    retention: Retention
    redis: RedisSettings
    #: A published stop nothing settled within this is published again (``Settings.watchdog_s``).
    watchdog_s: float
    #: The audit outbox's bound (``AuditSettings.stream_max``; 0: no audit events).
    audit_max: int

    def audit(self, origin: Origin) -> Raw:
        """The ``audit`` argument of a script: the outbox's bound, and who asked for the change."""
        return Raw(f'{{"max":{int(self.audit_max)},"origin":{json.dumps(str(origin))}}}')

    def events_channel(self, event: TaskEvent) -> str:
        """The Redis channel a task event of this broker database is published on."""
        return taskevents.channel(self.redis.url, event)

    def task_group_channel(self) -> str:
        """The Redis channel a group of task events (``task.multi``, one message) is published on."""
        return taskevents.group_channel(self.redis.url)


@dataclass(frozen=True, kw_only=True)
class StoreContext(ScriptSettings):
    """The Redis client of the state store, its scripts, and the settings the scripts are given.

    When ``redis`` asks for replicas (``RECSTOP_REDIS_WAIT_REPLICAS``), the scripts that publish a
    message (enqueue, publish) wait until that many replicas hold their writes (:meth:`durable`).
    """

    client: Redis
    scripts: Scripts = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scripts", Scripts(self.client))

    def durable(
        self, script: LuaScript[R], keys_: Sequence[str], args: Mapping[str, Any], extra: Sequence[str]
    ) -> R:
        """Run a script that publishes messages; WAIT for replicas on the same connection if asked."""
        if self.redis.wait_replicas <= 0:
            return self.scripts.run(script, keys_, args, extra)
        with self.client.pipeline(transaction=False) as pipe:
            self.scripts.queue(pipe, script, keys_, args, extra)
            queue_wait(pipe, self.redis)
            raw, acked = pipe.execute()
        check_wait(acked, self.redis)
        return script.parse(raw)


def request_args(request: StopRequest) -> dict[str, Any]:
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


def read_status(client: Redis, call_uuid: str, url: str | None) -> StatusRecord | None:
    """The status record of a stop, or None when there is none (or it expired)."""
    return parse_status(client.get(keys.call_key(call_uuid)), url)


def parse_status(raw: object, url: str | None) -> StatusRecord | None:
    """The status record of the stop of ``url`` in a call key's value (None: no such stop)."""
    record = json.loads(raw).get(keys.target_of(url)) if isinstance(raw, str | bytes) and raw else None
    return StatusRecord.from_record(record) if record else None
