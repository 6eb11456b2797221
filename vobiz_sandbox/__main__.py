"""Command line: ``python -m recstop.sandbox --port 8787 --account MA_TEST:secret``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from recstop.sandbox.ratelimit import MAX_BURST
from recstop.sandbox.server import serve
from recstop.sandbox.state import DEFAULT_FINALIZE_DELAY_S, MAX_FINALIZE_DELAY_S


def _account(text: str) -> tuple[str, str]:
    auth_id, sep, token = text.partition(":")
    if not sep or not auth_id or not token:
        raise argparse.ArgumentTypeError("expected AUTH_ID:TOKEN")
    return auth_id, token


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of requests per second") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("expected a number >= 0 (0 = off)")
    return value


def _delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if not 0 <= value <= MAX_FINALIZE_DELAY_S:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to {MAX_FINALIZE_DELAY_S:g}")
    return value


def _burst(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_BURST:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, {MAX_BURST}]")
    return int(text)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m recstop.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--account", type=_account, action="append", default=[], metavar="ID:TOKEN")
    parser.add_argument("--auto-calls", action="store_true", help="unknown calls get one recording")
    parser.add_argument("--nothing-to-stop", choices=("404", "204"), default="404")
    parser.add_argument("--seed", type=int, default=None, help="seed for fault probabilities")
    parser.add_argument(
        "--rate-limit", type=_rate, default=None, metavar="RPS", help="429 beyond RPS per account (0 = off)"
    )
    parser.add_argument(
        "--rate-limit-burst", type=_burst, default=None, metavar="N", help="bucket size (default 50 ms worth)"
    )
    parser.add_argument(
        "--finalize-delay",
        type=_delay,
        default=DEFAULT_FINALIZE_DELAY_S,
        metavar="S",
        help=f"until an ended recording shows its end (default {DEFAULT_FINALIZE_DELAY_S:g}; 0 = at once)",
    )
    parser.add_argument("--verbose", action="store_true", help="access log to stderr")
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        accounts=dict(args.account),
        auto_calls=args.auto_calls,
        nothing_to_stop=args.nothing_to_stop,
        seed=args.seed,
        rate_limit_rps=args.rate_limit,
        rate_limit_burst=args.rate_limit_burst,
        finalize_delay_s=args.finalize_delay,
        verbose=args.verbose,
    )


if __name__ == "__main__":
    main()
