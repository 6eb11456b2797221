"""``recstop sandbox``: run the Vobiz sandbox, or set up calls with recordings on a running one.

``recstop sandbox [serve] [options]`` runs the server in the foreground (``serve`` may be left out,
as before). ``recstop sandbox call`` and ``recstop sandbox show`` talk to a running sandbox's
control API (``/_sandbox/``, see :mod:`recstop.sandbox.control`): a call created there has known
recording URLs, so a stop of one of them (``recstop enqueue CALL --url URL``) ends ``stopped`` (204).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any, Final, TextIO

from recstop.worker.config.settings import DEFAULT_API_BASE
from recstop.worker.model import exitcodes

DEFAULT_PORT: Final = 8765
DEFAULT_BASE: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
DEMO_AUTH_ID: Final = "MA_DEMO0001"
DEMO_TOKEN: Final = "demo-token"  # noqa: S105 - the sandbox's demo account, not a real credential
API_PATH: Final = "/api/v1"


def add_parser(sub: Any) -> None:  # noqa: ANN401 - argparse's private _SubParsersAction
    """Add ``sandbox`` and its actions ``serve``, ``call`` and ``show`` to the subcommands ``sub``."""
    sandbox = sub.add_parser(
        "sandbox",
        help="run the Vobiz API sandbox, or create calls with recordings on a running one",
        description="Without an action (or with `serve`): run the sandbox until Ctrl-C. `call` and "
        "`show` talk to a running sandbox's control API.",
    )
    _serve_options(sandbox, defaults=True)
    actions = sandbox.add_subparsers(dest="sandbox_command", metavar="{serve,call,show}")
    # SUPPRESS: an option not given after `serve` keeps what was given before it (or its default).
    serve = actions.add_parser(
        "serve", help="run the sandbox server (the default)", argument_default=argparse.SUPPRESS
    )
    _serve_options(serve, defaults=False)
    call = actions.add_parser(
        "call", help="create a live call with recordings; print its call_uuid and the recording URLs"
    )
    call.add_argument(
        "--recordings", type=int, default=1, metavar="N", help="active recordings to start (default 1)"
    )
    call.add_argument("--call-uuid", help="the new call's uuid (default: a random one)")
    _client_options(call)
    show = actions.add_parser("show", help="print a live call's active recording URLs")
    show.add_argument("call_uuid", help="a call on the sandbox")
    _client_options(show)


def _serve_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The server's options; with ``defaults`` their defaults too (else an absent one stays unset)."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument(
        "--auth-id", help=f"the account it knows (default VOBIZ_AUTH_ID, else {DEMO_AUTH_ID})"
    )
    parser.add_argument(
        "--auth-token", help="that account's token (default VOBIZ_AUTH_TOKEN, else a demo token)"
    )
    parser.add_argument(
        "--auto-calls",
        action="store_true",
        help="treat unknown calls as live with one random recording (a stop of a given --url then 404s)",
    )
    parser.add_argument(
        "--nothing-to-stop",
        choices=["404", "204"],
        help="what a stop of a call with no active recording answers (default 404)",
    )
    if defaults:
        parser.set_defaults(
            host="127.0.0.1",
            port=DEFAULT_PORT,
            auth_id=os.environ.get("VOBIZ_AUTH_ID") or DEMO_AUTH_ID,
            auth_token=os.environ.get("VOBIZ_AUTH_TOKEN") or DEMO_TOKEN,
            auto_calls=False,
            nothing_to_stop="404",
        )


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        metavar="URL",
        help=f"the running sandbox (default: VOBIZ_API_BASE without {API_PATH} when it points at one, "
        f"else {DEFAULT_BASE})",
    )
    parser.add_argument(
        "--auth-id",
        default=os.environ.get("VOBIZ_AUTH_ID") or DEMO_AUTH_ID,
        help=f"the account that owns the call (default VOBIZ_AUTH_ID, else {DEMO_AUTH_ID})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def sandbox_base(env: Mapping[str, str]) -> str:
    """The sandbox a worker of this environment calls: VOBIZ_API_BASE without its API path.

    Falls back to the default sandbox (``make run``'s) when VOBIZ_API_BASE is unset or the real API.
    """
    api_base = env.get("VOBIZ_API_BASE", "").rstrip("/")
    if not api_base or api_base == DEFAULT_API_BASE:
        return DEFAULT_BASE
    return api_base.removesuffix(API_PATH)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve (the default action), or create or show a call on a running sandbox."""
    if args.sandbox_command in (None, "serve"):
        return _serve(args)
    from recstop.sandbox import SandboxClient, SandboxError  # noqa: PLC0415 - only when asked for

    base = (args.base or sandbox_base(os.environ)).rstrip("/")
    try:
        with SandboxClient(base) as client:
            if args.sandbox_command == "call":
                found = client.new_call(args.auth_id, recordings=args.recordings, call_uuid=args.call_uuid)
            else:
                live = client.call(args.call_uuid)
                if live is None:
                    err.write(f"recstop: the sandbox at {base} has no live call {args.call_uuid}\n")
                    return exitcodes.FAILURE
                found = live
    except SandboxError as exc:
        err.write(f"recstop: the sandbox at {base} refused: {exc.reason}\n")
        return exitcodes.USAGE if exc.status == 400 else exitcodes.FAILURE  # noqa: PLR2004
    except OSError as exc:  # requests' RequestException is an OSError (IOError)
        err.write(
            f"recstop: no sandbox answers at {base} ({type(exc).__name__}): start one with "
            "`recstop sandbox` or `make run`, or pass --base\n"
        )
        return exitcodes.FAILURE
    _print_call(found, out, as_json=args.json)
    return exitcodes.OK


def _print_call(found: Mapping[str, Any], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps({"call_uuid": found["call_uuid"], "recordings": found["recordings"]}) + "\n")
        return
    out.write(f"call_uuid  {found['call_uuid']}\n")
    out.writelines(f"recording  {url}\n" for url in found["recordings"])


def _serve(args: argparse.Namespace) -> int:
    from recstop.sandbox import serve  # noqa: PLC0415 - the sandbox is only imported when asked for

    serve(
        args.host,
        args.port,
        accounts={args.auth_id: args.auth_token},
        auto_calls=args.auto_calls,
        nothing_to_stop=args.nothing_to_stop,
    )
    return exitcodes.OK
