"""The ``recstop`` command line. Exit 0 on success, 2 on bad input, 1 on any other failure."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from redis.exceptions import RedisError
from tqdm import tqdm

from producers.producer import Producer, StopSpec
from worker.connection import redis_client
from worker.errors import ConfigError, InvalidStopRequest, RecstopError
from worker.settings import HealthThresholds, Settings
from worker.status import iso

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CommandFailedError(Exception):
    """A command failed for a reason other than bad input (exit 1)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recstop", description="Stop Vobiz call recordings through a queue."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    enqueue = sub.add_parser(
        "enqueue", help="enqueue a stop (now, after --delay, or --at a time), or many from --file"
    )
    enqueue.add_argument("call_uuid", nargs="?", help="the call (or give --file)")
    enqueue.add_argument(
        "--file",
        metavar="PATH",
        help="enqueue a stop for every call_uuid in this file, one per line ('-' reads stdin); "
        "all lines are validated before any is sent",
    )
    enqueue.add_argument("--urgent", action="store_true", help="the urgent lane: ahead of every routine stop")
    enqueue.add_argument("--no-progress", action="store_true", help="no progress bar with --file")
    enqueue.add_argument("--url", help="stop only this recording (default: every recording)")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument(
        "--delay", type=float, metavar="SECONDS", help="run the stop this many seconds from now"
    )
    when.add_argument("--at", metavar="ISO8601", help="run the stop at this time (with a timezone)")
    enqueue.add_argument("--auth-id", help="Vobiz account (default: VOBIZ_AUTH_ID)")
    enqueue.add_argument("--request-id", help="correlation id carried into logs and status")
    enqueue.add_argument("--not-after", metavar="ISO8601", help="give up after this time")
    enqueue.add_argument("--json", action="store_true", help="print JSON")

    cancel = sub.add_parser("cancel", help="cancel a pending or scheduled stop")
    cancel.add_argument("call_uuid")
    cancel.add_argument("--url")

    status = sub.add_parser("status", help="show whether and when a recording was stopped")
    status.add_argument("call_uuid")
    status.add_argument("--url")
    status.add_argument("--json", action="store_true")

    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq.add_parser("list", help="list dead letters, newest first")
    dlq_list.add_argument("--json", action="store_true")
    dlq_list.add_argument("--limit", type=int, default=100)
    dlq.add_parser("show", help="show one dead letter with every attempt").add_argument("id")
    replay = dlq.add_parser("replay", help="enqueue dead letters again")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true")
    dlq.add_parser("purge", help="delete every dead letter")

    sandbox = sub.add_parser("sandbox", help="run the Vobiz API sandbox (for tests and demos)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--auth-id", default=os.environ.get("VOBIZ_AUTH_ID") or "MA_DEMO0001")
    sandbox.add_argument("--auth-token", default=os.environ.get("VOBIZ_AUTH_TOKEN") or "demo-token")
    sandbox.add_argument(
        "--auto-calls", action="store_true", help="treat unknown calls as live and recording"
    )
    sandbox.add_argument("--nothing-to-stop", choices=["404", "204"], default="404")

    health = sub.add_parser("health", help="check Redis, workers, dead letters and the schedule (exit 0/1)")
    health.add_argument("--json", action="store_true", help="print a JSON report")
    health.add_argument(
        "--max-dead-letters", type=int, metavar="N", help="default RECSTOP_HEALTH_MAX_DEAD_LETTERS"
    )
    health.add_argument(
        "--max-overdue-s", type=float, metavar="S", help="default RECSTOP_HEALTH_MAX_OVERDUE_S"
    )
    health.add_argument(
        "--max-heartbeat-age-s", type=float, metavar="S", help="default RECSTOP_HEALTH_MAX_HEARTBEAT_AGE_S"
    )

    metrics = sub.add_parser("metrics", help="serve Prometheus metrics on /metrics until SIGTERM")
    metrics.add_argument("--host", default="127.0.0.1")
    metrics.add_argument("--port", type=int, default=9808)
    return parser


def _print_json(data: Any, out: TextIO) -> None:  # noqa: ANN401
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def _enqueue(producer: Producer, args: argparse.Namespace, out: TextIO) -> None:
    if args.file is not None:
        _enqueue_file(producer, args, out)
        return
    if args.call_uuid is None:
        raise InvalidStopRequest("call_uuid", "give a call_uuid, or --file with one per line")
    handle = producer.stop_recording(
        args.call_uuid,
        args.url,
        auth_id=args.auth_id,
        delay=args.delay,
        at=args.at,
        request_id=args.request_id,
        not_after=args.not_after,
        urgent=args.urgent,
    )
    if args.json:
        _print_json(handle.__dict__, out)
    else:
        note = " (deduplicated: a stop for this recording is already pending)" if handle.deduplicated else ""
        out.write(f"{handle.state} task_id={handle.task_id}{note}\n")


def _enqueue_file(producer: Producer, args: argparse.Namespace, out: TextIO) -> None:
    """Bulk: every non-blank line of the file is a call_uuid; pipelined, with a progress bar."""
    if args.call_uuid is not None or args.delay is not None or args.at is not None or args.url is not None:
        raise InvalidStopRequest("file", "--file takes no call_uuid, --url, --delay or --at")
    lines = _read_lines(args.file)
    stops = [StopSpec(line, auth_id=args.auth_id, not_after=args.not_after) for line in lines if line.strip()]
    with tqdm(
        total=len(stops), unit="stop", disable=args.no_progress, file=sys.stderr, mininterval=0.2
    ) as bar:

        def progress(done: int) -> None:
            bar.update(done - bar.n)

        handles = producer.stop_recordings(stops, urgent=args.urgent, on_progress=progress)
    fresh = sum(1 for handle in handles if not handle.deduplicated)
    summary = {"enqueued": fresh, "deduplicated": len(handles) - fresh}
    if args.json:
        _print_json(summary, out)
    else:
        out.write(f"enqueued {fresh}, deduplicated {len(handles) - fresh}\n")


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return [line.strip() for line in sys.stdin]
    try:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - a plain text file
            return [line.strip() for line in handle]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidStopRequest("file", f"cannot read {path!r}: {exc.__class__.__name__}") from None


def _cancel(producer: Producer, args: argparse.Namespace, out: TextIO) -> None:
    result = producer.cancel(args.call_uuid, args.url)
    if not result.cancelled:
        raise CommandFailedError(f"nothing to cancel: the stop is {result.state}")
    out.write("cancelled\n")


def _status(producer: Producer, args: argparse.Namespace, out: TextIO) -> None:
    record = producer.status(args.call_uuid, args.url)
    if record is None:
        raise CommandFailedError("no stop is known for this call and URL")
    data = record.to_dict()
    if args.json:
        _print_json(data, out)
        return
    for name in (
        "call_uuid",
        "url",
        "state",
        "attempts",
        "last_http_status",
        "last_error",
        "task_id",
        "request_id",
        "enqueued_at",
        "first_attempt_at",
        "finished_at",
        "dead_reason",
        "settled_by",
    ):
        if data.get(name) not in (None, ""):
            out.write(f"{name:17} {data[name]}\n")


def _dlq(producer: Producer, args: argparse.Namespace, out: TextIO) -> None:
    store = producer.dead_letters
    if args.dlq_command == "list":
        entries = store.list(limit=args.limit)
        if args.json:
            _print_json([e.to_dict() for e in entries], out)
            return
        out.writelines(
            f"{e.id}  {iso(e.dead_at)}  {e.reason:20}  {e.call_uuid or '-'}  {e.error or ''}\n"
            for e in entries
        )
        out.write(f"{store.count()} dead letter(s)\n")
    elif args.dlq_command == "show":
        entry = store.get(args.id)
        if entry is None:
            raise CommandFailedError(f"no dead letter {args.id!r}")
        _print_json(entry.to_dict(), out)
    elif args.dlq_command == "replay":
        if bool(args.ids) == bool(args.all):
            raise InvalidStopRequest("replay", "give dead-letter IDs or --all, not both or neither")
        results = producer.replay(None if args.all else args.ids)
        failed = [r for r in results if r.error]
        out.writelines(
            f"{r.entry_id}  {'error: ' + r.error if r.error else 'task_id=' + str(r.task_id)}\n"
            for r in results
        )
        if failed:
            raise CommandFailedError(f"{len(failed)} of {len(results)} dead letter(s) could not be replayed")
    else:
        out.write(f"purged {store.purge()} dead letter(s)\n")


def _sandbox(args: argparse.Namespace, _out: TextIO, _err: TextIO) -> int:
    from vobiz_sandbox import serve  # noqa: PLC0415 - the sandbox is only imported when asked for

    serve(
        args.host,
        args.port,
        accounts={args.auth_id: args.auth_token},
        auto_calls=args.auto_calls,
        nothing_to_stop=args.nothing_to_stop,
    )
    return EXIT_OK


def _thresholds(settings: Settings, args: argparse.Namespace) -> HealthThresholds:
    """The health thresholds of the settings, with each ``--max-*`` flag given overriding its own."""
    flags = {
        "max_dead_letters": args.max_dead_letters,
        "max_overdue_s": args.max_overdue_s,
        "max_heartbeat_age_s": args.max_heartbeat_age_s,
    }
    return dataclasses.replace(settings.health, **{k: v for k, v in flags.items() if v is not None})


def _health(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Exit 0 when every check passes, 1 otherwise (a bad setting or an unreachable Redis included)."""
    from worker.health import check_health, render  # noqa: PLC0415

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        err.write(f"recstop: error: {exc}\n")
        return EXIT_FAILURE
    client = redis_client(settings.redis)
    try:
        report = check_health(client, _thresholds(settings, args), redis_url=settings.redis.safe_url)
    finally:
        client.close()
    if args.json:
        _print_json(report.to_dict(), out)
    else:
        out.write(render(report))
    return EXIT_OK if report.healthy else EXIT_FAILURE


def _metrics(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve /metrics until SIGTERM or SIGINT (exit 0), or fail to start (exit 2 or 1)."""
    from worker.metrics import serve  # noqa: PLC0415

    try:
        settings = Settings.from_env()

        def ready(url: str) -> None:
            out.write(
                f"serving Prometheus metrics on {url} (reading {settings.redis.safe_url}); Ctrl-C stops\n"
            )
            out.flush()

        serve(
            redis_client(settings.redis),
            host=args.host,
            port=args.port,
            max_heartbeat_age_s=settings.health.max_heartbeat_age_s,
            on_ready=ready,
        )
    except ConfigError as exc:
        err.write(f"recstop: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        err.write(f"recstop: cannot serve metrics on {args.host}:{args.port}: {exc}\n")
        return EXIT_FAILURE
    return EXIT_OK


#: Commands that run without a producer, returning their own exit code.
STANDALONE: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "sandbox": _sandbox,
    "health": _health,
    "metrics": _metrics,
}

COMMANDS: dict[str, Callable[[Producer, argparse.Namespace, TextIO], None]] = {
    "enqueue": _enqueue,
    "cancel": _cancel,
    "status": _status,
    "dlq": _dlq,
}


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI and return its exit code."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command in STANDALONE:
        return STANDALONE[args.command](args, stdout, stderr)
    try:
        settings = Settings.from_env()
        with Producer(settings, redis_client(settings.redis)) as producer:
            COMMANDS[args.command](producer, args, stdout)
    except (InvalidStopRequest, ConfigError) as exc:
        stderr.write(f"recstop: error: {exc}\n")
        return EXIT_USAGE
    except (CommandFailedError, RecstopError) as exc:
        stderr.write(f"recstop: {exc}\n")
        return EXIT_FAILURE
    except RedisError as exc:
        stderr.write(f"recstop: Redis unavailable: {type(exc).__name__}\n")
        return EXIT_FAILURE
    return EXIT_OK


def main() -> NoReturn:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
