"""Scenario 8: what each optional feature costs, the defaults against the feature off, in one run.

One ``celery -A recstop.worker worker`` process (defaults) stops the same burst with each variant, in
alternating rounds (a fresh stack each; ``Profile.feature_rounds``), and the best round of each
counts: a feature that costs more than 5% of stops/s must be a setting whose default follows it.
"""

from __future__ import annotations

from collections.abc import Mapping

from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import one_worker_rate

NAME = "8 feature cost"
#: A feature that costs more than this share of stops/s is off by default.
MAX_COST = 0.05
#: Each feature, and the settings that turn it off.
FEATURES: Mapping[str, Mapping[str, str]] = {
    "Celery results (RECSTOP_RESULT_EXPIRES_S=0 turns off)": {"RECSTOP_RESULT_EXPIRES_S": "0"},
    "audit outbox (RECSTOP_AUDIT_STREAM_MAX=0 turns off)": {"RECSTOP_AUDIT_STREAM_MAX": "0"},
}


def burst_rate(name: str, profile: Profile, overrides: Mapping[str, str]) -> float:
    """stops/s of one default worker process for ``feature_stops`` stops, with ``overrides``."""
    rate, complete = one_worker_rate(
        name, profile.feature_stops, latency_ms=profile.burst_latency_ms, overrides=overrides
    )
    return rate if complete else 0.0


def run(report: Report, profile: Profile) -> None:
    """For each feature: stops/s with the defaults and with the feature off, best of ``feature_rounds``."""
    for feature, off in FEATURES.items():
        on_rates, off_rates = [], []
        for round_no in range(profile.feature_rounds):
            on_rates.append(burst_rate(f"feature-on-{round_no}", profile, {}))
            off_rates.append(burst_rate(f"feature-off-{round_no}", profile, off))
        on, without = max(on_rates), max(off_rates)
        cost = 1 - on / without if without else 0.0
        report.add(
            Row(
                NAME,
                f"{feature}: one default worker, {profile.feature_stops:,} stops, latency "
                f"{profile.burst_latency_ms:g} ms; stops/s with it (value) and without (reference)",
                "stops/s",
                round(on, 1),
                naive=round(without, 1),
                target="costs <= 5%, or is a setting whose default follows the figure",
                met=cost <= MAX_COST,
                note=f"cost {cost:.1%}; rounds on {[round(r) for r in on_rates]}, "
                f"off {[round(r) for r in off_rates]}",
            )
        )
