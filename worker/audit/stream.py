"""The sink's side of the Redis stream ``recstop:audit``: its consumer group, reads, claims, acks, trims.

Sinks share the consumer group ``sinks``; each reads as a consumer of its own name. An entry read
stays pending (in the group's PEL) until a sink acknowledges it, which it does only after the
database committed it. A sink reads its own pending entries again before new ones (after a
database failure, a restart under the same name), and claims those of a sink silent for longer
than ``claim_idle_ms`` (``XAUTOCLAIM``). The stream is trimmed below the oldest entry not
acknowledged, so it never loses what no sink has committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis import Redis
from redis.exceptions import ResponseError

from recstop.worker.state import keys

#: One stream entry: its id and its fields (empty when the entry is gone from the stream).
Entry = tuple[str, Mapping[bytes, bytes]]
#: XAUTOCLAIM rounds per claim (each scans up to ``count`` pending entries).
_CLAIM_ROUNDS: Final = 10


def _text(value: Any) -> str:  # noqa: ANN401 - redis-py answers bytes or str
    return value.decode() if isinstance(value, bytes) else str(value)


def next_id(stream_id: str) -> str:
    """The smallest id after ``stream_id`` (``ms-seq`` → ``ms-(seq+1)``)."""
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


@dataclass(frozen=True)
class Claimed:
    """Entries taken over from silent sinks, and the ids that were already gone from the stream."""

    entries: list[Entry]
    gone: list[str]


class AuditStream:
    """One sink's consumer of the audit stream (``client`` must answer bytes: entries hold anything)."""

    def __init__(
        self,
        client: Redis,
        consumer: str,
        *,
        stream: str = keys.AUDIT_STREAM,
        group: str = keys.AUDIT_GROUP,
        count: int = 500,
        block_ms: int = 1000,
        claim_idle_ms: int = 5000,
    ) -> None:
        self.client = client
        self.consumer = consumer
        self.stream = stream
        self.group = group
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; from the first entry, so nothing is skipped."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, start: str, block: int | None) -> list[Entry]:
        try:
            answer: Any = self.client.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=self.count, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # a fresh or restarted Redis without the group
            return []
        return [(_text(i), fields or {}) for _, items in answer or [] for i, fields in items]

    def own_pending(self) -> list[Entry]:
        """The entries this consumer read and has not acknowledged (gone ones with empty fields)."""
        return self._read("0", None)

    def new(self) -> list[Entry]:
        """Entries never delivered to any sink, waiting up to ``block_ms`` for some."""
        return self._read(">", self.block_ms)

    def claim(self) -> Claimed:
        """Take over the pending entries of sinks silent for ``claim_idle_ms`` (up to ``count``)."""
        entries: list[Entry] = []
        gone: list[str] = []
        cursor = "0-0"
        for _ in range(_CLAIM_ROUNDS):
            try:
                answer = self.client.xautoclaim(
                    self.stream, self.group, self.consumer, self.claim_idle_ms, cursor, count=self.count
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                return Claimed([], [])
            cursor = _text(answer[0])
            entries += [(_text(i), fields or {}) for i, fields in answer[1]]
            gone += [_text(i) for i in (answer[2] if len(answer) > 2 else [])]  # noqa: PLR2004 - Redis 7
            if cursor == "0-0" or len(entries) >= self.count:
                break
        return Claimed(entries, gone)

    def ack(self, ids: Sequence[str]) -> None:
        """Acknowledge entries the database committed."""
        if ids:
            self.client.xack(self.stream, self.group, *ids)

    def trim(self) -> int:
        """Trim the stream below the oldest entry not acknowledged; the number of entries removed."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xinfo_groups(self.stream)
        pipe.xpending(self.stream, self.group)
        try:
            groups, pending = pipe.execute()
        except ResponseError:  # no stream or no group (a restarted Redis): nothing to trim
            return 0
        group = next((g for g in groups if _text(g["name"]) == self.group), None)
        if group is None:
            return 0
        if int(pending["pending"]):
            keep_from = _text(pending["min"])
        else:
            keep_from = next_id(_text(group["last-delivered-id"]))
        return int(self.client.xtrim(self.stream, minid=keep_from))
