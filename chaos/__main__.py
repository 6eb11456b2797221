"""``python -m chaos [--profile full|short] [--only NAME ...]``: run the suite, print the table.

Exits 1 when any stop was lost or any check failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chaos.profiles import PROFILES
from chaos.report import ScenarioResult, details, table, write_json
from chaos.runner import SCENARIOS, run_all


def _done(name: str, result: ScenarioResult) -> None:
    print(f"  {name}: {'passed' if result.passed else 'FAILED'} in {result.elapsed_s:.0f} s", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the scenarios, print the table, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), metavar="NAME", default=None)
    parser.add_argument("--json", type=Path, default=Path(".run/chaos.json"), help="where to write figures")
    parser.add_argument("--keep", type=Path, default=None, help="copy each scenario's logs here")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    names = args.only or list(SCENARIOS)
    print(
        f"running {len(names)} scenarios, profile {profile.name}, {profile.parallel} at a time ...",
        flush=True,
    )
    started = time.monotonic()
    results = list(run_all(names, profile, args.keep, on_done=_done).values())
    elapsed_s = time.monotonic() - started
    print()
    print(details(results))
    print()
    print(table(results))
    write_json(results, args.json, profile.name, elapsed_s=elapsed_s, parallel=profile.parallel)
    at_once = f"{profile.parallel} at a time"
    print(f"\nprofile {profile.name}: {len(results)} scenarios in {elapsed_s:.0f} s ({at_once})")
    print(f"figures written to {args.json}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
