"""Runs scenarios, each on its own fresh stack, ``profile.parallel`` at a time, and collects their results."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.scenarios import (
    api_chaos,
    audit_sink_kill,
    fuzz,
    graceful,
    kill_loop,
    lookup_chaos,
    poison,
    redis_down,
    redis_restart,
    sentinel_failover,
    slow_alive,
    storm,
    worker_kill,
)
from chaos.verify import Tally

Scenario = Callable[[Profile, Path | None], ScenarioResult]

#: Every scenario, in the order the table lists them.
SCENARIOS: dict[str, Scenario] = {
    "worker_kill": worker_kill.run,
    "kill_loop": kill_loop.run,
    "slow_alive": slow_alive.run,
    "graceful_term": graceful.run_term,
    "graceful_term_kill": graceful.run_term_kill,
    "redis_restart_everysec": redis_restart.run_everysec,
    "redis_restart_always": redis_restart.run_always,
    "redis_down": redis_down.run,
    "api_chaos": api_chaos.run,
    "storm": storm.run,
    "poison": poison.run,
    "fuzz": fuzz.run,
    "audit_sink_kill": audit_sink_kill.run,
    "lookup_chaos": lookup_chaos.run,
    "sentinel_failover": sentinel_failover.run,
}

#: The order scenarios start in when several run at once: the longest first, so that the short
#: ones fill the gaps at the end instead of one long one running alone.
START_ORDER: tuple[str, ...] = (
    "redis_down",
    "sentinel_failover",
    "audit_sink_kill",
    "kill_loop",
    "worker_kill",
    "redis_restart_everysec",
    "redis_restart_always",
    "graceful_term_kill",
    "api_chaos",
    "lookup_chaos",
    "slow_alive",
    "graceful_term",
    "storm",
    "fuzz",
    "poison",
)


def run_one(name: str, profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Run one scenario; a scenario that crashes is reported as a failed check, not raised."""
    started = time.monotonic()
    try:
        result = SCENARIOS[name](profile, keep_dir)
    except Exception as exc:  # noqa: BLE001 - the table must still print; the error is the finding
        result = ScenarioResult(name, Tally())
        result.check("scenario ran to the end", ok=False, detail=f"{type(exc).__name__}: {exc}")
        result.figures["traceback"] = traceback.format_exc(limit=8)
    result.elapsed_s = time.monotonic() - started
    return result


def run_all(
    names: Iterable[str],
    profile: Profile,
    keep_dir: Path | None = None,
    on_done: Callable[[str, ScenarioResult], None] | None = None,
) -> dict[str, ScenarioResult]:
    """Run the named scenarios, ``profile.parallel`` at a time; results in the order of ``names``.

    ``on_done(name, result)`` is called as each one finishes.
    """
    wanted = list(dict.fromkeys(names))
    order = sorted(wanted, key=lambda n: START_ORDER.index(n) if n in START_ORDER else len(START_ORDER))
    done: dict[str, ScenarioResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, profile.parallel), thread_name_prefix="scenario") as pool:
        futures = {pool.submit(run_one, name, profile, keep_dir): name for name in order}
        for future in as_completed(futures):
            name = futures[future]
            done[name] = future.result()
            if on_done is not None:
                on_done(name, done[name])
    return {name: done[name] for name in wanted}
