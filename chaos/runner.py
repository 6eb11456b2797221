"""Runs scenarios one after another, each on its own fresh stack, and collects their results."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.scenarios import api_chaos, fuzz, graceful, poison, redis_down, redis_restart, storm, worker_kill
from chaos.verify import Tally

Scenario = Callable[[Profile, Path | None], ScenarioResult]

#: Every scenario, in the order the table lists them.
SCENARIOS: dict[str, Scenario] = {
    "worker_kill": worker_kill.run,
    "graceful_term": graceful.run_term,
    "graceful_term_kill": graceful.run_term_kill,
    "redis_restart_everysec": redis_restart.run_everysec,
    "redis_restart_always": redis_restart.run_always,
    "redis_down": redis_down.run,
    "api_chaos": api_chaos.run,
    "storm": storm.run,
    "poison": poison.run,
    "fuzz": fuzz.run,
}


def run_one(name: str, profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Run one scenario; a scenario that crashes is reported as a failed check, not raised."""
    started = time.monotonic()
    try:
        return SCENARIOS[name](profile, keep_dir)
    except Exception as exc:  # noqa: BLE001 - the table must still print; the error is the finding
        result = ScenarioResult(name, Tally())
        result.check("scenario ran to the end", ok=False, detail=f"{type(exc).__name__}: {exc}")
        result.figures["traceback"] = traceback.format_exc(limit=8)
        result.elapsed_s = time.monotonic() - started
        return result


def run_all(names: Iterable[str], profile: Profile, keep_dir: Path | None = None) -> list[ScenarioResult]:
    """Run the named scenarios in order."""
    return [run_one(name, profile, keep_dir) for name in names]
