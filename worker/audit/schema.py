"""The audit tables (SQLAlchemy Core) and the sink's versioned migrations.

``audit_events``: one row per stream entry, ``seq`` its position in the chain, ``stream_id`` unique
(a redelivered entry is never stored twice). ``audit_head``: one row, the chain's end (``seq``,
``hash``), the current UTC day and the oldest ``seq`` retention kept (``horizon_seq``); writers lock
it. ``audit_digests``: each finished day's last hash. ``audit_schema``: the migrations applied.

The tables below are the latest schema; ``MIGRATIONS`` brings any older database to it, each step
once, under a lock (``pg_advisory_xact_lock`` in PostgreSQL, the write lock in SQLite), so sinks
started together migrate once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
)

from recstop.worker.audit.chain import GENESIS

metadata = MetaData()
_HASH = String(64)

events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", Text, nullable=False, unique=True),
    Column("recorded_at", Double, nullable=False),
    Column("event", Text, nullable=False),
    Column("at", Double, nullable=False),
    Column("call_uuid", Text),
    Column("url", Text),
    Column("target", Text),
    Column("task_id", Text),
    Column("request_id", Text),
    Column("auth_id", Text),
    Column("attempt", Integer),
    Column("http_status", Integer),
    Column("reason", Text),
    Column("error", Text),
    Column("duration_ms", Double),
    Column("retry_in_s", Double),
    Column("urgent", Boolean),
    Column("due_at", Double),
    Column("origin", Text),
    Column("extra", Text),
    Column("raw", Text),
    Column("prev_hash", _HASH, nullable=False),
    Column("hash", _HASH, nullable=False),
    # `audit show`: one call's events in time order, read straight off the index.
    Index("ix_audit_events_call", "call_uuid", "at", "seq"),
    # `audit export --since/--until`.
    Index("ix_audit_events_at", "at", "seq"),
    # retention and `audit verify --since` (recorded_at grows with seq).
    Index("ix_audit_events_recorded", "recorded_at"),
)

head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", _HASH, nullable=False),
    Column("recorded_at", Double, nullable=False),
    Column("day", String(10), nullable=False),
    Column("day_first_seq", BigInteger, nullable=False),
    Column("horizon_seq", BigInteger, nullable=False),
)

digests = Table(
    "audit_digests",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", _HASH, nullable=False),
    Column("closed_at", Double, nullable=False),
)

versions = Table(
    "audit_schema",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Double, nullable=False),
)

#: The one row of ``audit_head``.
HEAD_ID: Final = 1
#: The advisory lock key sinks take to migrate one at a time (PostgreSQL).
_MIGRATION_LOCK: Final = 0x72656373  # "recs"


def _v1(connection: Connection) -> None:
    """The first schema: events, head (at the genesis), digests."""
    for table in (events, head, digests):
        table.create(connection, checkfirst=True)
    connection.execute(
        insert(head).values(
            id=HEAD_ID, seq=0, hash=GENESIS, recorded_at=0.0, day="", day_first_seq=1, horizon_seq=1
        )
    )


#: (version, step): every schema change, in order; a step runs once, inside the migration transaction.
MIGRATIONS: Final[tuple[tuple[int, Callable[[Connection], None]], ...]] = ((1, _v1),)
LATEST: Final = MIGRATIONS[-1][0]


def migrate(engine: Engine) -> int:
    """Create or upgrade the schema to :data:`LATEST`; returns the version found before."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        versions.create(connection, checkfirst=True)
        found = connection.scalar(select(func.max(versions.c.version))) or 0
        for version, step in MIGRATIONS:
            if version > found:
                step(connection)
                connection.execute(insert(versions).values(version=version, applied_at=time.time()))
    return int(found)
