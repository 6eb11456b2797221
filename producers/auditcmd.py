"""``recstop audit``: migrate the schema, run the sink, apply the retention; show, export, verify.

Every action reads ``RECSTOP_AUDIT_DB`` (docs/audit.md); in PostgreSQL each runs as its own role
(``worker/audit/roles.py``): ``migrate`` as the owner, ``sink``, ``retention``, and the readers
``show``/``export``/``verify``. ``migrate`` and ``retention`` exit 1 when the database refuses them;
``show`` exits 1 when the call has no event; ``verify`` exits 0 when the chain holds and 1 naming
the first row that does not; a bad option or time exits 2. The database is named by its URL with
the password masked, always. The audit modules (SQLAlchemy) are imported only when an audit action
runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, TextIO

from recstop.worker.config.settings import Settings
from recstop.worker.model import exitcodes
from recstop.worker.model.errors import ConfigError, InvalidStopRequest
from recstop.worker.model.redaction import Redactor
from recstop.worker.model.status import iso
from recstop.worker.model.validation import parse_instant, validate_call_uuid

if TYPE_CHECKING:  # a progress bar is imported only when an export shows one
    from tqdm import tqdm


class AuditFailedError(Exception):
    """An audit action failed (exit 1): the database cannot be read, no event, a broken chain."""


def add_parser(sub: Any) -> None:  # noqa: ANN401 - argparse's private _SubParsersAction
    """Add ``audit`` and its actions (migrate, sink, retention, show, export, verify) to ``sub``."""
    audit = sub.add_parser(
        "audit",
        help="the audit trail in RECSTOP_AUDIT_DB: migrate its schema, run its sink, apply its retention; "
        "show, export, verify events",
    )
    actions = audit.add_subparsers(
        dest="audit_command", required=True, metavar="{migrate,sink,retention,show,export,verify}"
    )
    actions.add_parser(
        "migrate",
        help="create or upgrade the audit tables and (PostgreSQL) grant each audit role that exists exactly "
        "its privileges; run as recstop_audit_owner",
    )
    sink = actions.add_parser("sink", help="copy the audit stream into the database until SIGTERM")
    sink.add_argument("--name", help="this sink's consumer name in the group (default: host-pid)")
    sink.add_argument(
        "--batch", type=int, default=500, metavar="N", help="events per transaction (default 500)"
    )
    sink.add_argument(
        "--claim-idle-s",
        type=float,
        default=5.0,
        metavar="S",
        help="take over the events a sink left pending this long (a dead sink's; default 5)",
    )
    sink.add_argument(
        "--retention",
        action="store_true",
        help="also delete, hourly, what is older than RECSTOP_AUDIT_RETENTION_DAYS (SQLite, or one database "
        "user for everything; else run `recstop audit retention` as its own role)",
    )
    actions.add_parser(
        "retention",
        help="delete the events recorded more than RECSTOP_AUDIT_RETENTION_DAYS ago (oldest first) and exit; "
        "run as recstop_audit_retention",
    )
    show = actions.add_parser("show", help="every audit event of a call, oldest first")
    show.add_argument("call_uuid", help="the call")
    show.add_argument("--url", help="only the events of the stop of this recording")
    show.add_argument("--json", action="store_true", help="print a JSON array with every column")
    export = actions.add_parser("export", help="every audit event of a time range, one row each")
    export.add_argument("--since", required=True, metavar="ISO8601", help="from this time (or a UTC date)")
    export.add_argument("--until", metavar="ISO8601", help="up to this time, excluded (default: now)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="jsonl (default) or csv")
    export.add_argument("--output", metavar="PATH", help="write to this file (default: stdout)")
    verify = actions.add_parser(
        "verify", help="check the hash chain; exit 0 when it holds, 1 naming the first row that does not"
    )
    verify.add_argument("--since", metavar="ISO8601", help="only rows recorded from this time (or UTC date)")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run one audit action; its exit code."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        err.write(f"recstop: error: {exc}\n")
        return exitcodes.USAGE
    if args.audit_command == "sink":
        return _sink(settings, args)
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - only when an audit action runs

    redactor = Redactor(settings.secrets())
    where = settings.audit.safe_url
    try:
        action = {
            "migrate": _migrate,
            "retention": _retention,
            "show": _show,
            "export": _export,
            "verify": _verify,
        }[args.audit_command]
        return action(settings, args, out, err)
    except InvalidStopRequest as exc:
        err.write(f"recstop: error: {exc}\n")
        return exitcodes.USAGE
    except AuditFailedError as exc:
        err.write(f"recstop: {exc}\n")
        return exitcodes.FAILURE
    except SQLAlchemyError as exc:
        reason = redactor.text(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
        hint = " (has `recstop audit sink` run against it?)" if "no such table" in str(exc) else ""
        verb = "change" if args.audit_command in {"migrate", "retention"} else "read"
        err.write(
            f"recstop: cannot {verb} the audit database at {where}: {reason[0] if reason else exc}{hint}\n"
        )
        return exitcodes.FAILURE


def _reader(settings: Settings) -> Any:  # noqa: ANN401 - a SQLAlchemy Engine, imported lazily
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    from recstop.worker.audit.db import audit_engine, driver_url  # noqa: PLC0415

    url = settings.audit.db_url
    parsed = make_url(driver_url(url))
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        where = settings.audit.safe_url
        raise AuditFailedError(
            f"no audit database at {where} (RECSTOP_AUDIT_DB; has `recstop audit sink` run?)"
        )
    return audit_engine(url, writer=False)


def _instant(option: str, text: str) -> float:
    """Epoch seconds of an ISO-8601 time with a timezone, or of a date's UTC midnight."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        moment = parse_instant(option, text)
        assert moment is not None
        return moment.timestamp()
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _sink(settings: Settings, args: argparse.Namespace) -> int:
    """Run the sink until SIGTERM or SIGINT (exit 0)."""
    import structlog  # noqa: PLC0415

    from recstop.worker.audit.db import audit_engine  # noqa: PLC0415
    from recstop.worker.audit.sink import AuditSink, fail_fast  # noqa: PLC0415
    from recstop.worker.observability.logs import configure_logging  # noqa: PLC0415
    from recstop.worker.state.redisclient import redis_client  # noqa: PLC0415

    configure_logging(
        log_level=settings.log_level, log_format=settings.log_format, secrets=settings.secrets()
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sink = AuditSink(
        fail_fast(redis_client(settings.redis, decode=False)),
        audit_engine(settings.audit.db_url),
        name=args.name,
        batch=args.batch,
        claim_idle_s=args.claim_idle_s,
        retention_days=settings.audit.retention_days if args.retention else None,
        redactor=Redactor(settings.secrets()),
    )
    structlog.get_logger("recstop.audit").info(
        "audit_sink_starting", db=settings.audit.safe_url, redis=settings.redis.safe_url, consumer=sink.name
    )
    sink.run(stop)
    return exitcodes.OK


def _migrate(settings: Settings, _args: argparse.Namespace, out: TextIO, _err: TextIO) -> int:
    from recstop.worker.audit import roles  # noqa: PLC0415
    from recstop.worker.audit.db import audit_engine, is_postgres  # noqa: PLC0415
    from recstop.worker.audit.schema import LATEST, migrate  # noqa: PLC0415

    engine = audit_engine(settings.audit.db_url)
    found = migrate(engine)
    out.write(f"audit schema at version {LATEST} (found {found}) in {settings.audit.safe_url}\n")
    if not is_postgres(engine):
        return exitcodes.OK
    with engine.begin() as connection:
        granted = roles.grant(connection)
    missing = [role.name for role in roles.GRANTEES if role.name not in granted]
    out.write(f"granted their privileges to: {', '.join(granted) or 'no role'}\n")
    if missing:
        out.write(
            f"absent roles, not granted: {', '.join(missing)} "
            "(create them with deploy/audit-postgres-roles.sql, then migrate again)\n"
        )
    return exitcodes.OK


def _retention(settings: Settings, _args: argparse.Namespace, out: TextIO, _err: TextIO) -> int:
    import time  # noqa: PLC0415

    from recstop.worker.audit import ledger  # noqa: PLC0415
    from recstop.worker.audit.db import audit_engine  # noqa: PLC0415

    days = settings.audit.retention_days
    before = time.time() - days * 86400.0
    engine = audit_engine(settings.audit.db_url)
    deleted = ledger.prune(engine, before)
    with engine.connect() as connection:
        horizon = int(ledger.head_row(connection)["horizon_seq"])
    out.write(
        f"deleted {deleted} audit event(s) recorded before {iso(before)} "
        f"(RECSTOP_AUDIT_RETENTION_DAYS {days}); the chain now starts at seq {horizon}\n"
    )
    return exitcodes.OK


def _show(settings: Settings, args: argparse.Namespace, out: TextIO, _err: TextIO) -> int:
    from recstop.worker.audit.query import SHOW_FIELDS, detail, show  # noqa: PLC0415

    call_uuid = validate_call_uuid(args.call_uuid)
    rows = list(show(_reader(settings), call_uuid, args.url))
    if not rows:
        what = f"recording {args.url} of call {call_uuid}" if args.url else f"call {call_uuid}"
        raise AuditFailedError(f"no audit event for {what} in {settings.audit.safe_url}")
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return exitcodes.OK
    rows = [{**row, "detail": detail(row)} for row in rows]
    widths = {name: max(len(name), *(len(_cell(row[name])) for row in rows)) for name in SHOW_FIELDS}
    lines = [[name.ljust(widths[name]) for name in SHOW_FIELDS]]
    lines += [[_cell(row[name]).ljust(widths[name]) for name in SHOW_FIELDS] for row in rows]
    out.writelines("  ".join(cells).rstrip() + "\n" for cells in lines)
    return exitcodes.OK


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _export(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from recstop.worker.audit.query import EXPORT_FIELDS, count, export  # noqa: PLC0415

    since = _instant("--since", args.since)
    until = None if args.until is None else _instant("--until", args.until)
    engine = _reader(settings)
    progress = err.isatty()
    total = count(engine, since, until) if progress else None
    target: IO[str] = out if args.output is None else open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115, PTH123
    try:
        from tqdm import tqdm  # noqa: PLC0415 - only an export shows a progress bar

        with tqdm(total=total, unit="event", disable=not progress, file=err, mininterval=0.5) as bar:
            written = _write(export(engine, since, until), args.format, EXPORT_FIELDS, target, bar)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exitcodes.OK
    finally:
        if target is not out:
            target.close()
    err.write(f"exported {written} event(s) from {iso(since)} to {iso(until) or 'now'}\n")
    return exitcodes.OK


def _write(
    rows: Iterator[dict[str, Any]], fmt: str, fields: tuple[str, ...], target: IO[str], bar: tqdm[Any]
) -> int:
    """Write each row as it comes (constant memory); the count."""
    writer = csv.DictWriter(target, fieldnames=fields, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    written = 0
    for row in rows:
        if writer is not None:
            writer.writerow(row)
        else:
            target.write(json.dumps(row) + "\n")
        written += 1
        bar.update(1)
    return written


def _verify(settings: Settings, args: argparse.Namespace, out: TextIO, _err: TextIO) -> int:
    from recstop.worker.audit.verify import verify  # noqa: PLC0415

    since = None if args.since is None else _instant("--since", args.since)
    verdict = verify(_reader(settings), since)
    if args.json:
        out.write(json.dumps({"ok": verdict.ok, **asdict(verdict)}, indent=2) + "\n")
    elif verdict.ok:
        span = f"seq {verdict.first_seq}..{verdict.last_seq}" if verdict.rows else "no rows"
        out.write(
            f"audit chain holds: {verdict.rows} row(s) checked ({span}); "
            f"head seq {verdict.head_seq} hash {verdict.head_hash}\n"
        )
    else:
        assert verdict.broken is not None
        row = f"seq {verdict.broken.seq}" + (
            f" (stream id {verdict.broken.stream_id})" if verdict.broken.stream_id else ""
        )
        out.write(f"audit chain BROKEN at row {row}: {verdict.broken.reason}\n")
    return exitcodes.OK if verdict.ok else exitcodes.FAILURE
