"""``python -m bench [--profile full|ci] [--only 1,3] [--json PATH]``: run the scenarios, print one table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.profiles import PROFILES, Profile
from bench.report import Report
from bench.scenarios import audit, burst, features, latency, producer, ratelimit, scaleout, urgent, webservice

SCENARIOS: dict[str, Callable[[Report, Profile], None]] = {
    "1": burst.run,  # with 6 (memory)
    "2": latency.run,
    "3": urgent.run,
    "4": ratelimit.run,
    "5": producer.run,
    "7": scaleout.run,
    "8": features.run,
    "9": audit.run,
    "10": webservice.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table, write the JSON; exit 1 if a target was missed (0 for the ci profile)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", default="", help="comma-separated scenario numbers (6 runs with 1)")
    parser.add_argument("--json", type=Path, default=Path(".run/bench.json"))
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    report = Report(profile.name)
    started = time.monotonic()
    for key in wanted:
        began = time.monotonic()
        SCENARIOS[key](report, profile)
        print(f"scenario {key} done in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    report.details["duration_s"] = round(time.monotonic() - started, 1)
    report.write(args.json)
    print(report.table())
    print(f"\nmachine: {report.machine()}; {report.details['duration_s']} s; JSON: {args.json}")
    missed = [row for row in report.rows if row.met is False]
    return 0 if profile.name == "ci" or not missed else 1


if __name__ == "__main__":
    sys.exit(main())
