"""Scenario 8: what each optional feature costs, the defaults against the feature off, in one run.

One ``celery -A recstop.worker worker`` process (defaults) stops the same burst with each variant, in
alternating rounds (a fresh stack each; ``Profile.feature_rounds``), and the best round of each
counts: a feature that costs more than 5% of stops/s must be a setting whose default follows it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids
from bench.stack import BenchStack
from recstop.worker.state import keys

NAME = "8 feature cost"
#: A feature that costs more than this share of stops/s is off by default.
MAX_COST = 0.05
#: Each feature, and the settings that turn it off.
FEATURES: Mapping[str, Mapping[str, str]] = {
    "Celery results (RECSTOP_RESULT_EXPIRES_S=0 turns off)": {"RECSTOP_RESULT_EXPIRES_S": "0"},
    "audit outbox (RECSTOP_AUDIT_STREAM_MAX=0 turns off)": {"RECSTOP_AUDIT_STREAM_MAX": "0"},
    "recording confirmation (RECSTOP_CONFIRM=false turns off)": {"RECSTOP_CONFIRM": "false"},
    "the worker's task events, for Flower (RECSTOP_TASK_EVENTS=false turns off)": {
        "RECSTOP_TASK_EVENTS": "false"
    },
}
#: How long the confirmations of a burst may take to settle once its last DELETE is done.
SETTLE_S: Final = 120.0


def burst_rate(name: str, profile: Profile, overrides: Mapping[str, str]) -> tuple[float, float]:
    """stops/s of one default worker process for ``feature_stops`` stops, with ``overrides``.

    Also the Recordings API calls per stop the run made, counted once every confirmation settled.
    """
    with BenchStack(name, latency_ms=profile.burst_latency_ms) as stack:
        stack.start_workers(1, **overrides)
        ids = call_uuids(profile.feature_stops)
        stack.feed.reset()
        started = time.time()
        stack.producer().stop_recordings(ids)
        complete = stack.feed.wait_ok(set(ids), timeout_s=max(120.0, len(ids) / 50))
        arrivals = stack.feed.first_ok()
        rate = len(arrivals) / (max(arrivals.values(), default=started + 1) - started) if complete else 0.0
        client = stack.client()
        deadline = time.monotonic() + SETTLE_S
        while client.zcard(keys.CONFIRMS) and time.monotonic() < deadline:
            time.sleep(0.2)  # the confirmer drains its schedule; bounded by the deadline above
        stack.feed.poll()
        lookups = sum(1 for entry in stack.feed.entries if entry.get("endpoint") == "recordings")
        return rate, lookups / len(ids)


def run(report: Report, profile: Profile) -> None:
    """For each feature: stops/s with the defaults and with the feature off, best of ``feature_rounds``."""
    for feature, off in FEATURES.items():
        on_rates, off_rates, calls = [], [], []
        for round_no in range(profile.feature_rounds):
            rate, lookups = burst_rate(f"feature-on-{round_no}", profile, {})
            on_rates.append(rate)
            calls.append(lookups)
            off_rates.append(burst_rate(f"feature-off-{round_no}", profile, off)[0])
        on, without = max(on_rates), max(off_rates)
        extra = f"; Recordings API calls per stop {max(calls):.2f}" if "RECSTOP_CONFIRM" in off else ""
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
                f"off {[round(r) for r in off_rates]}{extra}",
            )
        )
