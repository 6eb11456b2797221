"""``recstop audit verify``: walk the chain in ``seq`` order and name the first row that breaks it.

In one snapshot of the database: the rows from the retention horizon (or the first recorded at or
after ``since``) to the head must be numbered without a gap, each row's ``prev_hash`` must be its
predecessor's hash, each hash must be that of the row's contents, the last one must be the head's,
each day's digest must match its last row, and no row may sit before the horizon or after the
head. An edited, deleted or inserted row breaks one of these. docs/audit.md says what it does
not catch: someone with write access who recomputes every hash after their change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from recstop.worker.audit import chain
from recstop.worker.audit.db import snapshot
from recstop.worker.audit.ledger import head_row
from recstop.worker.audit.schema import digests, events

_BATCH = 2000


@dataclass(frozen=True)
class Break:
    """The first row where the chain does not hold (``stream_id`` None: the row is missing)."""

    seq: int
    stream_id: str | None
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: rows checked, their span, the head, and the first break if any."""

    rows: int
    first_seq: int | None
    last_seq: int | None
    head_seq: int
    head_hash: str
    broken: Break | None

    @property
    def ok(self) -> bool:
        """Whether the chain holds over every row checked."""
        return self.broken is None


class _Walk:
    """The state of one walk along the chain."""

    def __init__(self, start: int, anchors: Mapping[int, str]) -> None:
        self.expected = start
        self.prev: str | None = None
        self.rows = 0
        self.first: int | None = None
        self.anchors = anchors

    def check(self, row: Mapping[Any, Any], head_seq: int) -> Break | None:
        """The break at ``row`` (the next in ``seq`` order), or None and the walk moves on."""
        seq = int(row["seq"])
        if self.expected < seq <= head_seq:
            return Break(self.expected, None, f"rows {self.expected}..{seq - 1} are missing (deleted)")
        reason = self._fault(row, seq, head_seq)
        if reason is not None:
            return Break(seq, str(row["stream_id"]), reason)
        self.prev, self.expected, self.rows = row["hash"], seq + 1, self.rows + 1
        self.first = seq if self.first is None else self.first
        return None

    def _fault(self, row: Mapping[Any, Any], seq: int, head_seq: int) -> str | None:
        """What is wrong with the row itself: the first fault found."""
        prev, own = row["prev_hash"], row["hash"]
        faults = (
            (seq > head_seq, f"after the chain head (seq {head_seq}): a row was inserted"),
            (
                self.prev is None and seq == 1 and prev != chain.GENESIS,
                "the first row is not chained to genesis",
            ),
            (self.prev not in (None, prev), f"prev_hash is not the hash of row {seq - 1}: one was changed"),
            (chain.link(prev, row) != own, "the row's contents do not match its hash: it was changed"),
            (self.anchors.get(seq, own) != own, "the row's hash differs from its day's digest"),
        )
        return next((reason for faulty, reason in faults if faulty), None)


def _start(connection: Connection, horizon: int, head_seq: int, since: float | None) -> int:
    """The first seq to check: the horizon, or the first row recorded at or after ``since``."""
    if since is None:
        return horizon
    first = connection.scalar(select(func.min(events.c.seq)).where(events.c.recorded_at >= since))
    return head_seq + 1 if first is None else min(max(horizon, int(first)), head_seq + 1)


def verify(engine: Engine, since: float | None = None) -> Verdict:
    """Check the chain from the horizon (or from the first row recorded at or after ``since``) to the head."""
    with snapshot(engine) as connection:
        head = head_row(connection)
        head_seq, horizon = int(head["seq"]), int(head["horizon_seq"])
        start = _start(connection, horizon, head_seq, since)
        anchors = {
            int(d.last_seq): str(d.last_hash)
            for d in connection.execute(select(digests).where(digests.c.last_seq >= start))
        }
        walk = _Walk(start, anchors)
        broken = _before_horizon(connection, horizon) if since is None else None
        if broken is None:
            result = connection.execution_options(stream_results=True, yield_per=_BATCH).execute(
                select(events).where(events.c.seq >= start).order_by(events.c.seq)
            )
            for row in result.mappings():
                broken = walk.check(row, head_seq)
                if broken is not None:
                    break
        if broken is None:
            broken = _tail(walk, start, head_seq, str(head["hash"]))
    return Verdict(
        walk.rows, walk.first, walk.expected - 1 if walk.rows else None, head_seq, str(head["hash"]), broken
    )


def _before_horizon(connection: Connection, horizon: int) -> Break | None:
    row = connection.execute(
        select(events.c.seq, events.c.stream_id).where(events.c.seq < horizon).order_by(events.c.seq).limit(1)
    ).first()
    if row is None:
        return None
    return Break(int(row.seq), str(row.stream_id), f"before the retention horizon (seq {horizon}): inserted")


def _tail(walk: _Walk, start: int, head_seq: int, head_hash: str) -> Break | None:
    """After the last row: the chain must end where the head says."""
    if start > head_seq:
        return None
    if walk.expected <= head_seq:
        return Break(walk.expected, None, f"rows {walk.expected}..{head_seq} are missing (deleted)")
    if walk.prev != head_hash:
        return Break(head_seq, None, "the last row's hash differs from the chain head's")
    return None
