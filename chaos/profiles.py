"""How big each scenario is: ``full`` for ``make chaos``, ``short`` for CI on every change."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Sizes of every scenario, in stops and events."""

    name: str
    kill_stops: int
    kills: int
    graceful_stops: int
    restart_stops: int
    down_stops: int
    api_stops: int
    storm_keys: int
    storm_repeats: int
    storm_processes: int
    poison_messages: int
    fuzz_profile: str
    rate_per_s: float = 200.0


FULL = Profile(
    name="full",
    kill_stops=2000,
    kills=3,
    graceful_stops=600,
    restart_stops=800,
    down_stops=20,
    api_stops=500,
    storm_keys=100,
    storm_repeats=20,
    storm_processes=4,
    poison_messages=1000,
    fuzz_profile="chaos",
)

SHORT = Profile(
    name="short",
    kill_stops=300,
    kills=1,
    graceful_stops=150,
    restart_stops=200,
    down_stops=8,
    api_stops=120,
    storm_keys=30,
    storm_repeats=5,
    storm_processes=4,
    poison_messages=200,
    fuzz_profile="ci",
    rate_per_s=150.0,
)

PROFILES = {p.name: p for p in (FULL, SHORT)}
