"""The whole Redis key layout in one place.

Every key recstop writes starts with ``recstop:``; kombu's own keys (the ``recstop`` queue list,
``unacked``, ``unacked_index``, ``_kombu.binding.*``) sit beside them in the same database.

A *stop key* identifies what is being stopped: one call and one recording URL, or ``all``.
"""

from __future__ import annotations

import hashlib
from typing import Final

PREFIX: Final = "recstop"
QUEUE: Final = "recstop"
#: The urgent lane: workers always take from it first (see ``worker.transport.Channel``).
URGENT_QUEUE: Final = "recstop.urgent"
TASK_NAME: Final = "recstop.stop_recording"

#: zset: stop key → due time (epoch seconds). Holds delayed stops, retries waiting for their
#: backoff, and just-enqueued stops until their message is known to be published.
SCHEDULE: Final = f"{PREFIX}:schedule"
#: zset: dead-letter id → time it was dead-lettered.
DLQ_INDEX: Final = f"{PREFIX}:dlq"
#: hash per worker: heartbeat of live workers.
WORKERS: Final = f"{PREFIX}:workers"
#: hash: cumulative counters shared by every worker process (``recstop metrics`` exports them).
#: Written by ``finish.lua`` in the same script that records the outcome, so a count is exact:
#: ``stops:<state>`` (stopped, already_stopped, retried, cancelled, superseded), ``dead:<reason>``,
#: ``settled`` (URL stops settled by a stop-all), ``attempts``, per HTTP status (``none`` for a
#: timeout or connection error) ``latency_count:<status>``, ``latency_sum:<status>`` and
#: ``latency_bucket:<status>:<le>`` (non-cumulative), ``rate_limited`` (429 answers),
#: ``retry_after`` and ``retry_after_seconds`` (Retry-After waits honoured, capped). ``claim.lua``
#: adds ``watchdog_republishes``, ``deadletter.lua`` adds ``rejected:<reason>`` (messages refused).
METRICS: Final = f"{PREFIX}:metrics"
ALL_TARGET: Final = "all"


def target_of(url: str | None) -> str:
    """The per-call part of a stop key: ``all`` or a short hash of the recording URL."""
    if url is None:
        return ALL_TARGET
    return "url-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]


def stop_key(call_uuid: str, url: str | None) -> str:
    """The idempotency key of a stop: ``<call_uuid>/<target>`` (call_uuid lower-cased)."""
    return f"{call_uuid.lower()}/{target_of(url)}"


def status_key(key: str) -> str:
    """hash: the status record of a stop key."""
    return f"{PREFIX}:status:{key}"


def attempts_key(key: str) -> str:
    """list: one JSON entry per attempt of the current run of a stop key."""
    return f"{PREFIX}:attempts:{key}"


def lock_key(key: str) -> str:
    """string: held by the one worker calling the API for this stop key."""
    return f"{PREFIX}:lock:{key}"


def call_targets_key(call_uuid: str) -> str:
    """set: every target of a call that has a status record (used by stop-all settling)."""
    return f"{PREFIX}:call:{call_uuid.lower()}"


def task_key(task_id: str) -> str:
    """string: the final state of a finished task id, so a redelivered message is recognised."""
    return f"{PREFIX}:task:{task_id}"


def dlq_entry_key(entry_id: str) -> str:
    """hash: one dead letter."""
    return f"{PREFIX}:dlq:{entry_id}"


def rate_key(auth_id: str) -> str:
    """hash: the shared rate limiter of one account (tat, rate, penalized_at, blocked_until)."""
    return f"{PREFIX}:rate:{auth_id}"
