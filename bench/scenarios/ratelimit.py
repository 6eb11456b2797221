"""Scenario 4: one account's rate limit, shared by every worker process through Redis."""

from __future__ import annotations

import time
from typing import Any

from bench.naive import publish
from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import call_uuids
from bench.scenarios.limiter import compare
from bench.stack import BenchStack
from bench.stats import achieved_rate, max_window_count

NAME = "4 rate limit"


def run(report: Report, profile: Profile) -> None:
    """``limit_stops`` over ``limit_processes`` workers at ``limit_rps``; then a lower real limit."""
    limit, n = profile.limit_rps, profile.limit_stops
    times, rejected = _recstop_steady(profile)
    naive_times, naive_rejected = _naive(profile)
    rate, window = achieved_rate(times), max_window_count(times)
    naive_rate, naive_window = achieved_rate(naive_times), max_window_count(naive_times)
    report.add(
        Row(
            NAME,
            f"achieved rate, {n:,} stops, {profile.limit_processes} workers, limit {limit:g}/s",
            "% of limit",
            round(100 * rate / limit, 1),
            naive_tuned=round(100 * naive_rate / limit, 1),
            target=">= 95%",
            met=rate >= 0.95 * limit,
            note="naive: Celery's rate_limit on each worker",
        )
    )
    report.add(
        Row(
            NAME,
            "busiest 1-second window",
            "% of limit",
            round(100 * window / limit, 1),
            naive_tuned=round(100 * naive_window / limit, 1),
            target="<= 105%",
            met=window <= 1.05 * limit,
            higher_is_better=False,
        )
    )
    report.add(
        Row(
            NAME,
            "429s from an API enforcing the same limit",
            "count",
            rejected,
            naive_tuned=naive_rejected,
            target="0",
            met=rejected == 0,
            higher_is_better=False,
        )
    )
    grants = int(limit * profile.limit_phase_s / 2)
    for name, figures in compare(limit, grants).items():
        report.add(
            Row(
                NAME,
                f"limiter alone, 8 threads, {grants} grants: {name}",
                "busiest 100 ms, % of limit",
                figures["busiest_100ms_pct"],
                note=f"busiest second {figures['busiest_window_pct']}%, "
                f"{figures['redis_commands_per_grant']} Redis commands per grant",
                higher_is_better=False,
            )
        )
    adaptive = _adaptive(profile)
    report.details["rate_limit_adaptive"] = adaptive
    report.add(
        Row(
            NAME,
            f"API's real limit drops to {profile.limit_low_rps:g}/s: rate in the 2nd half of that phase",
            "% of real limit",
            adaptive["low_phase_rate_pct"],
            target="slows down within seconds",
            met=adaptive["low_phase_rate_pct"] <= 110 and adaptive["429_share_2nd_half_pct"] < 10,
            note=f"429s: {adaptive['429_share_1st_half_pct']}% of answers in the 1st half, "
            f"{adaptive['429_share_2nd_half_pct']}% in the 2nd",
        )
    )
    report.add(
        Row(
            NAME,
            "limit restored: seconds until back at >= 95% of it",
            "s",
            adaptive["recovery_s"],
            target="recovers",
            met=adaptive["recovery_s"] is not None,
            higher_is_better=False,
        )
    )


def _recstop_steady(profile: Profile) -> tuple[list[float], int]:
    with BenchStack("limit") as stack:
        stack.sandbox.client.configure(rate_limit_rps=profile.limit_rps)
        stack.start_workers(profile.limit_processes, RECSTOP_RATE_LIMIT_RPS=f"{profile.limit_rps:g}")
        ids = call_uuids(profile.limit_stops)
        stack.feed.reset()
        stack.producer().stop_recordings(ids)
        stack.feed.wait_ok(set(ids), timeout_s=profile.limit_stops / profile.limit_rps * 3 + 30)
        times = sorted(float(e["time"]) for e in stack.feed.entries)
        return times, stack.sandbox.client.rate_limited()


def _naive(profile: Profile) -> tuple[list[float], int]:
    """Celery's ``rate_limit`` is per worker instance: N workers send N times the limit."""
    cap_s = min(profile.naive_cap_s, profile.limit_stops / profile.limit_rps)
    with BenchStack("limit-naive") as stack:
        stack.sandbox.client.configure(rate_limit_rps=profile.limit_rps)
        stack.start_naive(profile.limit_processes, "tuned", 64, rate_limit=f"{profile.limit_rps:g}/s")
        stack.feed.reset()
        publish(stack.redis.url, call_uuids(profile.limit_stops))
        deadline = time.monotonic() + cap_s
        while time.monotonic() < deadline and len(stack.feed.entries) < profile.limit_stops:
            stack.feed.poll()
            time.sleep(0.25)  # polling pace; the run is bounded by cap_s
        stack.feed.poll()
        times = sorted(float(e["time"]) for e in stack.feed.entries)
        return times, stack.sandbox.client.rate_limited()


def _adaptive(profile: Profile) -> dict[str, Any]:
    """Phases of ``limit_phase_s``: API limit as configured, then lower, then restored."""
    limit, low, phase = profile.limit_rps, profile.limit_low_rps, profile.limit_phase_s
    with BenchStack("limit-adaptive") as stack:
        stack.sandbox.client.configure(rate_limit_rps=limit)
        stack.start_workers(profile.limit_processes, RECSTOP_RATE_LIMIT_RPS=f"{limit:g}")
        stack.feed.reset()
        stack.producer().stop_recordings(call_uuids(int(limit * phase * 3.5)))
        started = time.time()
        time.sleep(phase)  # phase 1: the API's limit is the configured one
        lowered = time.time()
        stack.sandbox.client.configure(rate_limit_rps=low)
        time.sleep(phase)  # phase 2: the API's real limit is lower
        restored = time.time()
        stack.sandbox.client.configure(rate_limit_rps=limit)
        time.sleep(phase)  # phase 3: restored
        stack.feed.poll()
        entries = [e for e in stack.feed.entries if float(e["time"]) >= started]
    mid = lowered + phase / 2

    def share(lo: float, hi: float) -> float:
        answers = [e for e in entries if lo <= float(e["time"]) < hi]
        return round(100 * sum(1 for e in answers if e["status"] == 429) / max(1, len(answers)), 1)

    ok_low = [float(e["time"]) for e in entries if mid <= float(e["time"]) < restored and e["status"] == 204]
    recovery = None
    ok_after = sorted(
        float(e["time"]) for e in entries if float(e["time"]) >= restored and e["status"] == 204
    )
    for start in [restored + 0.25 * k for k in range(int(phase * 4))]:
        window = [t for t in ok_after if start <= t < start + 1]
        if len(window) >= 0.95 * limit:
            recovery = round(start + 1 - restored, 2)
            break
    return {
        "low_phase_rate_pct": round(100 * len(ok_low) / (phase / 2) / low, 1),
        "429_share_1st_half_pct": share(lowered, mid),
        "429_share_2nd_half_pct": share(mid, restored),
        "recovery_s": recovery,
        "phase_s": phase,
    }
