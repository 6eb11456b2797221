"""The ``recstop`` command line (docs/cli.md). Exit codes: ``recstop.worker.model.exitcodes``.

0 on success, 2 on bad input, 1 on any other failure; ``recstop status`` also tells a pending (3),
dead (4), cancelled (5) or unknown (6) stop from a stopped one (0).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

from redis.exceptions import RedisError

from recstop.producers import auditcmd, render, sandboxcmd
from recstop.producers.plan import AT_SKEW
from recstop.producers.producer import Producer, StopHandle, StopSpec
from recstop.worker.config.fields import env_name
from recstop.worker.config.producer import ProducerSettings
from recstop.worker.config.redis import RedisSettings
from recstop.worker.config.settings import HealthThresholds, RetryPolicy, Settings
from recstop.worker.model import exitcodes
from recstop.worker.model.errors import (
    BrokerUnavailableError,
    ConfigError,
    InvalidBulkItem,
    InvalidStopRequest,
    RecstopError,
)
from recstop.worker.model.status import StatusRecord, iso
from recstop.worker.model.vocabulary import Origin, State
from recstop.worker.state.problems import redis_unavailable
from recstop.worker.state.redisclient import redis_client

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = exitcodes.OK, exitcodes.FAILURE, exitcodes.USAGE


class CommandFailedError(Exception):
    """A command failed for a reason other than bad input: exit ``code`` (1 unless a status says else)."""

    def __init__(self, message: str, code: int = exitcodes.FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recstop",
        description="Stop Vobiz call recordings through a queue. Reference and exit codes: docs/cli.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _enqueue_parser(sub)

    cancel = sub.add_parser("cancel", help="cancel a pending or scheduled stop")
    cancel.add_argument("call_uuid", help="the call whose stop to cancel")
    cancel.add_argument("--url", help="the stop of this recording (default: the stop of every recording)")

    status = sub.add_parser(
        "status",
        help="show whether and when a recording was stopped "
        "(exit 0 stopped, 3 pending, 4 dead, 5 cancelled, 6 unknown)",
    )
    status.add_argument("call_uuid", help="the call")
    status.add_argument("--url", help="the stop of this recording (default: the stop of every recording)")
    status.add_argument(
        "--json", action="store_true", help="print the whole record, attempt log included, as JSON"
    )

    _dlq_parser(sub)
    sandboxcmd.add_parser(sub)
    auditcmd.add_parser(sub)

    health = sub.add_parser(
        "health",
        help="check Redis, workers, dead letters and the schedule (exit 0 healthy, 1 not, 2 bad setting)",
    )
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
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    metrics.add_argument(
        "--port", type=int, default=9808, help="port to listen on (default 9808; 0 picks one)"
    )
    return parser


def _enqueue_parser(sub: Any) -> None:  # noqa: ANN401 - argparse's private _SubParsersAction
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
    when.add_argument(
        "--at",
        metavar="ISO8601",
        help=f"run the stop at this time (with a timezone); up to {AT_SKEW.total_seconds():g} s in the past "
        "runs it now (clock skew), earlier is refused",
    )
    enqueue.add_argument("--auth-id", help="Vobiz account (default: VOBIZ_AUTH_ID)")
    enqueue.add_argument(
        "--request-id",
        metavar="ID",
        help="idempotency key: a repeat with the same ID is deduplicated, even after the stop "
        "succeeded (a producer's retry never stops twice); also shown in logs and status",
    )
    enqueue.add_argument(
        "--not-after",
        metavar="ISO8601",
        help=f"give up after this time (default: when due + {env_name(RetryPolicy, 'deadline_s')})",
    )
    enqueue.add_argument("--json", action="store_true", help="print JSON")


def _dlq_parser(sub: Any) -> None:  # noqa: ANN401 - argparse's private _SubParsersAction
    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay, purge").add_subparsers(
        dest="dlq_command", required=True
    )
    dlq_list = dlq.add_parser("list", help="list dead letters, newest first")
    dlq_list.add_argument("--json", action="store_true", help="print JSON")
    dlq_list.add_argument("--limit", type=int, default=100, metavar="N", help="list at most N (default 100)")
    show = dlq.add_parser("show", help="show one dead letter with every attempt, as JSON")
    show.add_argument("id", help="the dead letter's id (from dlq list)")
    show.add_argument("--json", action="store_true", help="print JSON (what show always prints)")
    replay = dlq.add_parser("replay", help="enqueue dead letters again")
    replay.add_argument("ids", nargs="*", metavar="ID", help="the dead letters to replay")
    replay.add_argument("--all", action="store_true", help="replay every dead letter (instead of IDs)")
    dlq.add_parser("purge", help="delete every dead letter")


def _print_json(data: Any, out: TextIO) -> None:  # noqa: ANN401
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def _enqueue(producer: Producer, args: argparse.Namespace, out: TextIO) -> int:
    if args.file is not None:
        return _enqueue_file(producer, args, out)
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
    record = _joined(producer, handle)
    if args.json:
        note = {"note": render.dedup_note(State(handle.state), record)} if handle.deduplicated else {}
        _print_json({**handle.__dict__, **note}, out)
    else:
        out.write(render.enqueue_line(handle, record))
    return exitcodes.OK


def _joined(producer: Producer, handle: StopHandle) -> StatusRecord | None:
    """The record of the run a deduplicated stop joined (when it is due, or finished); else None."""
    if not handle.deduplicated:
        return None
    try:
        return producer.status(handle.call_uuid, handle.url)
    except BrokerUnavailableError:  # the stop is stored: only the times of the run it joined are unknown
        return None


def _enqueue_file(producer: Producer, args: argparse.Namespace, out: TextIO) -> int:
    """Bulk: every non-blank line of the file is a call_uuid; pipelined, with a progress bar."""
    if args.call_uuid is not None or args.delay is not None or args.at is not None or args.url is not None:
        raise InvalidStopRequest("file", "--file takes no call_uuid, --url, --delay or --at")
    numbered = [(number, line) for number, line in enumerate(_read_lines(args.file), 1) if line]
    stops = [StopSpec(line, auth_id=args.auth_id, not_after=args.not_after) for _, line in numbered]
    with _progress_bar(len(stops), disable=args.no_progress) as progress:
        try:
            handles = producer.stop_recordings(stops, urgent=args.urgent, on_progress=progress)
        except InvalidBulkItem as exc:  # name the line of the file, counted from 1 as editors do
            line = numbered[exc.index][0]
            raise InvalidStopRequest(f"line {line}: {exc.item.field}", exc.item.reason) from None
    fresh = sum(1 for handle in handles if not handle.deduplicated)
    summary = {"enqueued": fresh, "deduplicated": len(handles) - fresh}
    if args.json:
        _print_json(summary, out)
    else:
        out.write(f"enqueued {fresh}, deduplicated {len(handles) - fresh}\n")
    return exitcodes.OK


@contextlib.contextmanager
def _progress_bar(total: int, *, disable: bool) -> Iterator[Callable[[int], None]]:
    """``on_progress`` for a bulk enqueue: a tqdm bar on stderr when tqdm is installed, else nothing."""
    try:
        from tqdm import tqdm  # noqa: PLC0415 - only a bulk enqueue shows a progress bar
    except ModuleNotFoundError:  # a bare `pip install recstop`: the stops go without a bar
        yield lambda _done: None
        return
    with tqdm(total=total, unit="stop", disable=disable, file=sys.stderr, mininterval=0.2) as bar:

        def progress(done: int) -> None:
            bar.update(done - bar.n)

        yield progress


def _read_lines(path: str) -> list[str]:
    """Every line of the file (or stdin for '-'), stripped; blank ones stay, to keep line numbers."""
    if path == "-":
        return [line.strip() for line in sys.stdin]
    try:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - a plain text file
            return [line.strip() for line in handle]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidStopRequest("file", f"cannot read {path!r}: {exc.__class__.__name__}") from None


def _cancel(producer: Producer, args: argparse.Namespace, out: TextIO) -> int:
    result = producer.cancel(args.call_uuid, args.url)
    if not result.cancelled:
        raise CommandFailedError(f"nothing to cancel: the stop is {result.state}")
    out.write("cancelled\n")
    return exitcodes.OK


def _status(producer: Producer, args: argparse.Namespace, out: TextIO) -> int:
    """Print the record; exit 0 stopped, 3 pending, 4 dead, 5 cancelled, 6 no record."""
    record = producer.status(args.call_uuid, args.url)
    if record is None:
        redis = producer.settings.redis
        message = render.unknown(
            args.call_uuid, args.url, redis.safe_url, default_redis=_default_redis(redis)
        )
        raise CommandFailedError(message, exitcodes.UNKNOWN)
    if args.json:
        _print_json(record.to_dict(), out)
    else:
        out.write(render.status_lines(record))
    return exitcodes.STATUS[record.state]


def _default_redis(redis: RedisSettings) -> bool:
    """Whether this is the default Redis URL (often: the environment of a stack was not loaded)."""
    return redis.url == RedisSettings().url


def _dlq(producer: Producer, args: argparse.Namespace, out: TextIO) -> int:
    store = producer.dead_letters
    if args.dlq_command == "list":
        entries = store.list(limit=args.limit)
        if args.json:
            _print_json([e.to_dict() for e in entries], out)
            return exitcodes.OK
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
    return exitcodes.OK


def _thresholds(settings: Settings, args: argparse.Namespace) -> HealthThresholds:
    """The health thresholds of the settings, with each ``--max-*`` flag given overriding its own."""
    flags = {
        "max_dead_letters": args.max_dead_letters,
        "max_overdue_s": args.max_overdue_s,
        "max_heartbeat_age_s": args.max_heartbeat_age_s,
    }
    return dataclasses.replace(settings.health, **{k: v for k, v in flags.items() if v is not None})


def _health(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Exit 0 when every check passes, 1 otherwise (an unreachable Redis included); 2 for a bad setting."""
    from recstop.worker.observability.health import check_health, render  # noqa: PLC0415

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        err.write(f"recstop: error: {exc}\n")
        return EXIT_USAGE
    client = redis_client(settings.redis)
    try:
        report = check_health(client, _thresholds(settings, args), redis_url=settings.redis.safe_url)
    finally:
        client.close()
    where = settings.redis.safe_url
    if args.json:
        _print_json({**report.to_dict(), "redis": where}, out)
    elif report.healthy:
        out.write(render(report))
    else:  # name the Redis asked (an unreachable one is named already): a forgotten env shows
        default = _default_redis(settings.redis)
        hint = " (the default URL: is RECSTOP_BROKER_URL set?)" if default else ""
        asked = f"checked Redis at {where}{hint}\n" if default or report.checks[0].ok else ""
        out.write(render(report) + asked)
    return EXIT_OK if report.healthy else EXIT_FAILURE


def _metrics(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve /metrics until SIGTERM or SIGINT (exit 0), or fail to start (exit 2 or 1)."""
    from recstop.worker.observability.metrics import serve  # noqa: PLC0415

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


#: The extra each command that is not a producer's needs: ``pip install recstop`` alone has redis-py.
EXTRAS: dict[str, str] = {"sandbox": "sandbox", "audit": "audit", "health": "worker", "metrics": "worker"}

#: Commands that run without a producer, returning their own exit code.
STANDALONE: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "sandbox": sandboxcmd.run,
    "audit": auditcmd.run,
    "health": _health,
    "metrics": _metrics,
}

#: Commands that need a producer, each returning its exit code (or raising for 1 or 2).
COMMANDS: dict[str, Callable[[Producer, argparse.Namespace, TextIO], int]] = {
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
        return _standalone(args, stdout, stderr)
    try:
        settings = ProducerSettings.from_env(say_default_url=False)
    except ConfigError as exc:
        stderr.write(f"recstop: error: {exc}\n")
        return EXIT_USAGE
    try:
        with Producer(settings, redis_client(settings.redis), origin=Origin.CLI) as producer:
            return COMMANDS[args.command](producer, args, stdout)
    except (InvalidStopRequest, ConfigError) as exc:
        stderr.write(f"recstop: error: {exc}\n")
        return EXIT_USAGE
    except (CommandFailedError, RecstopError, RedisError) as exc:
        stderr.write(f"recstop: {_failure(exc, settings)}\n")
        return exc.code if isinstance(exc, CommandFailedError) else EXIT_FAILURE


def _standalone(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run a command that needs no producer; exit 2 naming the extra to install when one is missing."""
    try:
        return STANDALONE[args.command](args, out, err)
    except ModuleNotFoundError as exc:  # a library of an extra this install does not have
        if (exc.name or "recstop").startswith("recstop"):
            raise
        extra = EXTRAS[args.command]
        err.write(
            f"recstop: error: `recstop {args.command}` needs the {extra} extra (no module named "
            f"{exc.name!r} here): pip install 'recstop[{extra}]'\n"
        )
        return EXIT_USAGE


def _failure(exc: Exception, settings: ProducerSettings) -> str:
    """The message of a failure; a Redis error names the Redis (password masked) and the cause."""
    return redis_unavailable(settings.redis, exc) if isinstance(exc, RedisError) else str(exc)


def main() -> NoReturn:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
