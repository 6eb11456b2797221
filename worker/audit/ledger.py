"""Writing the chained audit table: append a batch, close a day, prune by age; each one transaction.

Every write locks the head row first (``SELECT ... FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE``
already holds its write lock), so writers take turns and the chain never forks. Inside that lock
an append skips the entries already stored (a redelivered or claimed entry), numbers the rest after
the head, chains their hashes and moves the head, all in the transaction that inserts them: a crash
leaves either the whole batch with its head, or neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, RowMapping, delete, func, insert, select, update

from recstop.worker.audit import chain
from recstop.worker.audit.event import AuditEvent
from recstop.worker.audit.schema import HEAD_ID, digests, events, head

#: Rows deleted per retention transaction (each one short, so writers never wait long).
PRUNE_CHUNK: Final = 10_000


@dataclass(frozen=True)
class Digest:
    """A finished UTC day of the chain: its rows' ``seq`` span and its last hash (the anchor to log)."""

    day: str
    first_seq: int
    last_seq: int
    last_hash: str


@dataclass(frozen=True)
class Appended:
    """What one append did: rows inserted and skipped (already stored), the head after it, a day closed."""

    inserted: int
    skipped: int
    head_seq: int
    digest: Digest | None = None


def _lock_head(connection: Connection) -> dict[str, Any]:
    row = connection.execute(select(head).where(head.c.id == HEAD_ID).with_for_update()).mappings().one()
    return dict(row)


def _roll_day(connection: Connection, current: dict[str, Any], day: str, now: float) -> Digest | None:
    """Start ``day`` if the head is on an earlier one; the earlier one's digest when it had rows."""
    if current["day"] >= day:
        return None
    closed = None
    if current["day"] and current["seq"] >= current["day_first_seq"]:
        closed = Digest(current["day"], current["day_first_seq"], current["seq"], current["hash"])
        connection.execute(insert(digests).values(**asdict(closed), closed_at=now))
    current.update(day=day, day_first_seq=current["seq"] + 1)
    connection.execute(update(head).values(day=day, day_first_seq=current["day_first_seq"]))
    return closed


def append(engine: Engine, batch: Sequence[AuditEvent], now: float) -> Appended:
    """Store the events of ``batch`` not stored yet, chained after the head, in one transaction."""
    with engine.begin() as connection:
        current = _lock_head(connection)
        recorded = max(now, current["recorded_at"])  # never earlier than the row before: prunable by age
        digest = _roll_day(connection, current, chain.day_of(recorded), recorded)
        unique = {item.stream_id: item for item in batch}
        stored = set(connection.scalars(select(events.c.stream_id).where(events.c.stream_id.in_(unique))))
        fresh = [item for stream_id, item in sorted(unique.items(), key=_order) if stream_id not in stored]
        seq, last = current["seq"], current["hash"]
        rows = []
        for item in fresh:
            seq += 1
            row = {**asdict(item), "seq": seq, "recorded_at": recorded, "prev_hash": last}
            last = row["hash"] = chain.link(last, row)
            rows.append(row)
        if rows:
            connection.execute(insert(events), rows)
            connection.execute(update(head).values(seq=seq, hash=last, recorded_at=recorded))
    return Appended(len(rows), len(batch) - len(rows), seq, digest)


def _order(item: tuple[str, AuditEvent]) -> tuple[int, int]:
    """Stream order: a batch is chained in the order Redis added its entries."""
    ms, _, counter = item[0].partition("-")
    return int(ms), int(counter or 0)


def close_day(engine: Engine, now: float) -> Digest | None:
    """Close the head's day if ``now`` is a later one (an idle sink still logs yesterday's digest)."""
    with engine.begin() as connection:
        current = _lock_head(connection)
        return _roll_day(connection, current, chain.day_of(max(now, current["recorded_at"])), now)


def prune(engine: Engine, before: float, chunk: int = PRUNE_CHUNK) -> int:
    """Delete the rows recorded before ``before`` (a prefix of the chain), moving the horizon; the count."""
    deleted = 0
    while True:
        with engine.begin() as connection:
            current = _lock_head(connection)
            last = connection.scalar(select(func.max(events.c.seq)).where(events.c.recorded_at < before))
            if last is None or last < current["horizon_seq"]:
                return deleted
            upto = min(int(last), current["horizon_seq"] + chunk - 1)
            deleted += connection.execute(delete(events).where(events.c.seq <= upto)).rowcount
            connection.execute(update(head).values(horizon_seq=upto + 1))


def head_row(connection: Connection) -> RowMapping:
    """The chain head as it is now (no lock)."""
    return connection.execute(select(head).where(head.c.id == HEAD_ID)).mappings().one()
