"""What the lanes and the consumers' in-flight lists hold: task ids, calls, and whose they are.

A message is always in exactly one list: a lane, or the in-flight list of the consumer that
fetched it (``recstop:inflight:<consumer>:<lane>``, the consumer id being ``<host>.<pid>.<random>``),
until its ack removes it. Messages are the raw kombu envelopes the lists hold.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Final

from redis import Redis

from harness.procs import wait_for
from recstop.worker.state.inflight import inflight_lists, inflight_messages
from recstop.worker.state.keys import INFLIGHT_MATCH, LANES

INFLIGHT_PREFIX: Final = INFLIGHT_MATCH.removesuffix("*")


def message_ids(raw: bytes | str) -> tuple[str, str] | None:
    """(task id, call_uuid) of a task message as a list holds it; None when it is not one."""
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        return str(envelope["headers"]["id"]), str(kwargs["call_uuid"])
    except (ValueError, LookupError, TypeError, AttributeError):
        return None


def inflight_task_ids(redis: Redis) -> set[str]:
    """The task ids of every message some consumer holds in flight (fetched, not acked), right now."""
    found = (message_ids(raw) for raw in inflight_messages(redis))
    return {ids[0] for ids in found if ids is not None}


def consumer_of(inflight_list: str) -> str:
    """The consumer id in an in-flight list's name (``recstop:inflight:<consumer>:<lane>``)."""
    return inflight_list.removeprefix(INFLIGHT_PREFIX).rsplit(":", 1)[0]


def pid_of(consumer: str) -> int | None:
    """The process id in a consumer id (``<host>.<pid>.<random>``)."""
    parts = consumer.rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None  # noqa: PLR2004


def held_by_process(redis: Redis, pid: int) -> dict[str, str]:
    """Task id to call_uuid of every message the consumers of process ``pid`` hold in flight."""
    held: dict[str, str] = {}
    for key in inflight_lists(redis):
        if pid_of(consumer_of(key)) != pid:
            continue
        for raw in redis.lrange(key, 0, -1):
            ids = message_ids(raw)
            if ids is not None:
                held[ids[0]] = ids[1]
    return held


def leftovers(redis: Redis) -> int:
    """Messages still in a lane or held in flight by some consumer."""
    return sum(int(redis.llen(lane)) for lane in LANES) + len(inflight_messages(redis))


def wait_drained(redis: Redis, timeout_s: float) -> int:
    """Wait until no message is left in a lane or in flight; return how many were left at the end."""
    with contextlib.suppress(AssertionError):  # timed out: the count says how far it got
        wait_for(lambda: leftovers(redis) == 0, timeout_s=timeout_s, interval_s=0.1, what="lanes drained")
    return leftovers(redis)
