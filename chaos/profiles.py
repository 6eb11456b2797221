"""How big each scenario is: ``full`` for ``make chaos``, ``short`` for CI on every change.

Both run the shipped defaults, except where a scenario of the short profile would otherwise wait
out a default meant for production (a dead holder's lock, a five-minute backoff): those overrides
are listed here and printed next to the figures they produced.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos.overrides import DEFAULTS, Overrides

#: A key's lock lives connect + read timeout + margin (23 s by default); a worker killed or cut off
#: from Redis mid-call leaves its lock to expire before the stop runs again.
SHORT_LOCKS = Overrides(
    {"RECSTOP_CONNECT_TIMEOUT_S": "1", "RECSTOP_READ_TIMEOUT_S": "2", "RECSTOP_LOCK_MARGIN_S": "2"},
    "short run: the lock of a holder that died or lost Redis expires after 5 s, not 23 s",
)
#: Retries with the default backoff (base 1 s, cap 300 s) and hangs cut at the default read timeout
#: (10 s) take minutes to settle 12 attempts' worth of bad luck.
SHORT_API = Overrides(
    {
        "RECSTOP_BACKOFF_BASE_S": "0.2",
        "RECSTOP_BACKOFF_CAP_S": "2",
        "RECSTOP_CONNECT_TIMEOUT_S": "1",
        "RECSTOP_READ_TIMEOUT_S": "2",
    },
    "short run: retries within seconds (default base 1 s, cap 300 s), hangs cut at 2 s (default 10 s)",
)
#: Slow but alive at full size: API latency 9 s, read timeout 10 s, consumer timeout 5 s.
SHORT_SLOW = Overrides(
    {
        "RECSTOP_READ_TIMEOUT_S": "4",
        "RECSTOP_CONSUMER_TIMEOUT_S": "2",
        "RECSTOP_CONSUMER_HEARTBEAT_S": "0.4",
    },
    "short run: latency 3 s under a 4 s read timeout and over a 2 s consumer timeout (full: 9, 10, 5 s)",
)

#: Confirmation lookups back off to 30 s and give up after 300 s: with half of them failing, a few
#: stops would take minutes to settle.
SHORT_LOOKUPS = Overrides(
    {"RECSTOP_CONFIRM_BACKOFF_CAP_S": "1", "RECSTOP_CONFIRM_DEADLINE_S": "20"},
    "short run: lookups at most 1 s apart (default cap 30 s), confirmation deadline 20 s (default 300 s)",
)


@dataclass(frozen=True)
class Profile:
    """Sizes of every scenario, in stops and events, and the overrides of the short run."""

    name: str
    kill_stops: int
    kills: int
    kill_rate_per_s: float
    loop_stops: int
    loop_kills: int
    loop_rate_per_s: float
    slow_stops: int
    slow_latency_s: float
    graceful_stops: int
    graceful_latency_s: float
    graceful_rate_per_s: float
    restart_stops: int
    down_stops: int
    down_attempts: int
    api_stops: int
    storm_keys: int
    storm_repeats: int
    storm_processes: int
    poison_messages: int
    fuzz_profile: str
    audit_stops: int = 2000
    audit_kills: int = 3
    lookup_stops: int = 2000
    #: Stops of each of the Sentinel scenario's two bursts (a replica killed, then the master).
    sentinel_stops: int = 3000
    rate_per_s: float = 200.0
    #: How many scenarios run at once (each on its own stack).
    parallel: int = 1
    locks: Overrides = DEFAULTS
    api: Overrides = DEFAULTS
    slow: Overrides = DEFAULTS
    lookups: Overrides = DEFAULTS


FULL = Profile(
    name="full",
    kill_stops=2000,
    kills=5,
    kill_rate_per_s=100.0,
    loop_stops=5000,
    loop_kills=50,
    loop_rate_per_s=100.0,
    slow_stops=6,
    slow_latency_s=9.0,
    graceful_stops=120,
    graceful_latency_s=3.0,
    graceful_rate_per_s=8.0,
    restart_stops=800,
    down_stops=12,
    down_attempts=5,
    api_stops=500,
    storm_keys=100,
    storm_repeats=20,
    storm_processes=4,
    poison_messages=1000,
    fuzz_profile="chaos",
)

SHORT = Profile(
    name="short",
    kill_stops=400,
    kills=2,
    kill_rate_per_s=80.0,
    loop_stops=600,
    loop_kills=8,
    loop_rate_per_s=120.0,
    slow_stops=4,
    slow_latency_s=3.0,
    graceful_stops=36,
    graceful_latency_s=2.0,
    graceful_rate_per_s=12.0,
    restart_stops=200,
    down_stops=8,
    down_attempts=2,
    api_stops=120,
    storm_keys=30,
    storm_repeats=5,
    storm_processes=4,
    poison_messages=200,
    fuzz_profile="ci",
    audit_stops=400,
    audit_kills=2,
    lookup_stops=200,
    sentinel_stops=300,
    rate_per_s=150.0,
    parallel=3,
    locks=SHORT_LOCKS,
    api=SHORT_API,
    slow=SHORT_SLOW,
    lookups=SHORT_LOOKUPS,
)

PROFILES = {p.name: p for p in (FULL, SHORT)}
