"""``python -m chaos [--profile full|short] [--only NAME ...]``: run the suite, print the table.

Exits 1 when any stop was lost or any check failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from chaos.profiles import PROFILES
from chaos.report import details, table, write_json
from chaos.runner import SCENARIOS, run_one


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the scenarios, print the table, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), metavar="NAME", default=None)
    parser.add_argument("--json", type=Path, default=Path(".run/chaos.json"), help="where to write figures")
    parser.add_argument("--keep", type=Path, default=None, help="copy each scenario's logs here")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    results = []
    for name in args.only or list(SCENARIOS):
        print(f"running {name} ({profile.name}) ...", flush=True)
        result = run_one(name, profile, args.keep)
        print(f"  {'passed' if result.passed else 'FAILED'} in {result.elapsed_s:.0f} s", flush=True)
        results.append(result)
    print()
    print(details(results))
    print()
    print(table(results))
    write_json(results, args.json, profile.name)
    print(f"\nfigures written to {args.json}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
