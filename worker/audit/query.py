"""Reading the audit table: one call's events, or every event of a time range, streamed row by row.

Both are generators over a server-side cursor (``stream_results``/``yield_per`` in PostgreSQL, the
sqlite3 cursor's own stepping in SQLite): memory stays constant whatever the number of rows. A
call's events come off ``ix_audit_events_call`` in time order; a range off ``ix_audit_events_at``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from sqlalchemy import Engine, Select, func, select

from recstop.worker.audit.schema import events
from recstop.worker.model.status import iso
from recstop.worker.model.vocabulary import AuditEvent

#: What ``recstop audit show`` prints per event.
SHOW_FIELDS: Final = ("at", "event", "attempt", "http_status", "reason", "task_id", "request_id", "detail")
#: The columns of ``recstop audit export`` (and of ``show --json``), one row per event.
EXPORT_FIELDS: Final = (
    "at",
    "call_uuid",
    "event",
    "url",
    "target",
    "task_id",
    "request_id",
    "auth_id",
    "attempt",
    "http_status",
    "reason",
    "error",
    "duration_ms",
    "retry_in_s",
    "urgent",
    "due_at",
    "origin",
    "extra",
    "stream_id",
    "seq",
    "recorded_at",
)
_TIMES: Final = frozenset({"at", "due_at", "recorded_at"})
#: Rows fetched per round trip.
BATCH: Final = 1000


def _row(row: Any) -> dict[str, Any]:  # noqa: ANN401 - a SQLAlchemy row mapping
    """One event as JSON-ready data: times as ISO-8601 UTC (ms)."""
    return {name: iso(row[name]) if name in _TIMES else row[name] for name in EXPORT_FIELDS}


def _stream(engine: Engine, statement: Select[Any]) -> Iterator[dict[str, Any]]:
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(statement)
        for row in result.mappings():
            yield _row(row)


def show(engine: Engine, call_uuid: str, url: str | None = None) -> Iterator[dict[str, Any]]:
    """Every event of a call (of one recording with ``url``), oldest first."""
    statement = select(*(events.c[name] for name in EXPORT_FIELDS)).where(
        events.c.call_uuid == call_uuid.lower()
    )
    if url is not None:
        statement = statement.where(events.c.url == url)
    return _stream(engine, statement.order_by(events.c.at, events.c.seq))


def _range(statement: Select[Any], since: float, until: float | None) -> Select[Any]:
    statement = statement.where(events.c.at >= since)
    return statement if until is None else statement.where(events.c.at < until)


def export(engine: Engine, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
    """Every event whose time is in ``[since, until)``, oldest first."""
    statement = select(*(events.c[name] for name in EXPORT_FIELDS))
    return _stream(engine, _range(statement, since, until).order_by(events.c.at, events.c.seq))


def count(engine: Engine, since: float, until: float | None = None) -> int:
    """How many events ``export`` yields for the same range (the progress bar's total)."""
    with engine.connect() as connection:
        return int(connection.scalar(_range(select(func.count()).select_from(events), since, until)) or 0)


def detail(row: Mapping[str, Any]) -> str | None:
    """What the listing of ``recstop audit show`` says beside an event's columns.

    A confirmed recording: when it ended as Vobiz reported it, how long after its stop was due, and
    its URL (kept in ``extra``: ``recording_end_ms``, ``ended_after_ms``); a failed confirmation:
    the error.
    """
    if row.get("event") == AuditEvent.RECORDING_CONFIRMED:
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        end_ms, after_ms = extra.get("recording_end_ms"), extra.get("ended_after_ms")
        ended = "end unknown" if end_ms is None else f"ended {iso(end_ms / 1000)}"
        after = "" if after_ms is None else f" ({after_ms / 1000:+.2f} s after the stop was due)"
        return f"{ended}{after} {row.get('url')}"
    if row.get("event") == AuditEvent.CONFIRMATION_FAILED:
        return str(row.get("error") or "")
    return None
