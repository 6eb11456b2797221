"""How big each scenario runs: ``full`` checks the issue's targets, ``ci`` only keeps the harness working."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Sizes of every scenario (counts, rates, durations)."""

    name: str
    burst_stops: int = 20_000
    burst_latency_ms: float = 100.0
    burst_processes: int = (
        2  # plain `celery -A recstop.worker worker`, one per core (docs/performance.md: tuning)
    )
    naive_cap_s: float = 25.0  # a reference slower than this is measured over this long
    steady_rps: float = 100.0
    steady_s: float = 15.0
    urgent_backlog: int = 20_000
    urgent_stops: int = 100
    urgent_cli_stops: int = 5
    urgent_naive_backlog: int = 5_000
    limit_stops: int = 5_000
    limit_rps: float = 200.0
    limit_processes: int = 2  # one per core, as for the burst
    limit_low_rps: float = 100.0
    limit_phase_s: float = 10.0
    producer_stops: int = 5_000
    bulk_stops: int = 20_000
    scale_stops: int = 6_000
    scale_processes: tuple[int, ...] = (1, 2, 4)
    memory_stops: int = 50_000
    feature_stops: int = 8_000
    feature_rounds: int = 2  # alternating on/off rounds; the best of each counts
    one_rounds: int = 2  # scenario 1: alternating rounds of one recstop process and one tuned naive
    audit_sink_events: int = 50_000
    audit_burst_rps: float = 1000.0
    audit_burst_s: float = 10.0
    audit_show_rows: int = 10_000_000
    audit_show_queries: int = 200
    web_requests: int = 5_000
    web_clients: int = 16


FULL = Profile("full")
CI = Profile(
    "ci",
    burst_stops=400,
    burst_latency_ms=20.0,
    naive_cap_s=5.0,
    steady_rps=50.0,
    steady_s=2.0,
    urgent_backlog=600,
    urgent_stops=10,
    urgent_cli_stops=1,
    urgent_naive_backlog=200,
    limit_stops=300,
    limit_rps=100.0,
    limit_processes=2,
    limit_low_rps=50.0,
    limit_phase_s=2.0,
    producer_stops=500,
    bulk_stops=2_000,
    scale_stops=300,
    scale_processes=(1, 2),
    memory_stops=2_000,
    feature_stops=300,
    feature_rounds=1,
    one_rounds=1,
    audit_sink_events=2_000,
    audit_burst_rps=300.0,
    audit_burst_s=1.0,
    audit_show_rows=30_000,
    audit_show_queries=20,
    web_requests=300,
    web_clients=8,
    burst_processes=2,
)
PROFILES = {profile.name: profile for profile in (FULL, CI)}
