"""How far behind the audit sinks are, read from Redis: for ``recstop metrics`` and ``recstop health``.

Behind = entries no sink has delivered yet (the group's ``lag``) plus entries delivered and not
acknowledged (``pending``: read, not yet committed). The oldest of those gives the age. Dropped =
entries the producers' scripts trimmed before any sink read them (``audit:dropped`` of
``recstop:metrics``, counted by the script that trimmed them): a gap in the trail, never silent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from redis import Redis
from redis.exceptions import ResponseError

from recstop.worker.state import keys

#: The field of ``recstop:metrics`` counting audit events trimmed unread.
DROPPED_FIELD: Final = keys.Counter.AUDIT_DROPPED


@dataclass(frozen=True)
class AuditLag:
    """The audit stream as the sinks see it (``group`` False: no sink has ever read it)."""

    length: int
    undelivered: int
    pending: int
    oldest_unacked_age_s: float
    dropped: int
    group: bool
    #: False when Redis could not count the undelivered entries exactly (``length`` bounds them).
    exact: bool = True

    @property
    def behind(self) -> int:
        """Entries no sink has committed yet."""
        return self.undelivered + self.pending

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``behind``."""
        return {**asdict(self), "behind": self.behind}


def _text(value: Any) -> str:  # noqa: ANN401 - redis-py answers bytes or str
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(stream_id: str) -> int:
    return int(stream_id.partition("-")[0])


def read_lag(client: Redis, stream: str = keys.AUDIT_STREAM, group: str = keys.AUDIT_GROUP) -> AuditLag:
    """Read the lag of ``group`` on ``stream`` (a few round trips; an absent stream is no lag)."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    dropped = int(client.hget(keys.METRICS, DROPPED_FIELD) or 0)
    length = int(client.xlen(stream))
    try:
        found = [g for g in client.xinfo_groups(stream) if _text(g["name"]) == group]
    except ResponseError:  # no such stream
        found = []
    if not found:
        first = client.xrange(stream, count=1)
        oldest = _ms(_text(first[0][0])) if first else None
        return AuditLag(length, length, 0, _age(now_ms, oldest), dropped, group=False)
    info = found[0]
    exact = info.get("lag") is not None
    # The pending count and its oldest id from one XPENDING: a sink may ack between XINFO and here.
    summary = client.xpending(stream, group)
    pending = int(summary["pending"]) if summary["min"] is not None else 0
    undelivered = int(info["lag"]) if exact else max(0, length - pending)
    if pending:
        oldest_id = _text(summary["min"])
    else:
        after = client.xrange(stream, min="(" + _text(info["last-delivered-id"]), count=1)
        oldest_id = _text(after[0][0]) if after else ""
    oldest = _ms(oldest_id) if oldest_id else None
    return AuditLag(length, undelivered, pending, _age(now_ms, oldest), dropped, group=True, exact=exact)


def _age(now_ms: int, oldest_ms: int | None) -> float:
    return 0.0 if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000)
