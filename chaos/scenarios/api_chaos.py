"""Scenario 5: the API misbehaves (503, hangs, resets, bursts of 429): backoff and Retry-After hold."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

from chaos.load import Load, new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.verify import Tally, deletes_by_call, reconcile
from recstop.sandbox import SandboxClient
from recstop.worker.config.settings import RetryPolicy

#: Clock and rounding slack when comparing the sandbox's arrival times with the recorded delays.
SLACK_S: Final = 0.02
#: How long every stop may take to settle: with the default backoff a stop unlucky five times in a
#: row waits 1 + 2 + 4 + 8 + 16 s at most, besides its hangs.
SETTLE_S: Final = 300.0
#: A hang outlasts the read timeout by this much: the worker gives up on it first.
HANG_BEYOND_S: Final = 1.5


def steady(read_timeout_s: float) -> list[dict[str, Any]]:
    """The faults between bursts: 503s, hangs past the read timeout, connection resets."""
    return [
        {"kind": "status", "status": 503, "probability": 0.20},
        {"kind": "hang", "hang_s": read_timeout_s + HANG_BEYOND_S, "probability": 0.05},
        {"kind": "reset", "probability": 0.05},
    ]


BURST: Final = [
    {"kind": "status", "status": 429, "retry_after": "1", "probability": 0.3},
    {"kind": "status", "status": 429, "retry_after_body": 1, "probability": 0.2},
    {"kind": "status", "status": 429, "probability": 0.2},
]


def _bursts(
    client: SandboxClient,
    faults: list[dict[str, Any]],
    stop: threading.Event,
    on_s: float = 1.0,
    off_s: float = 2.0,
) -> int:
    """Alternate ``faults`` with bursts of 429 on top until ``stop``; return how many bursts ran."""
    bursts = 0
    while not stop.wait(off_s):
        client.set_faults([*BURST, *faults], seed=bursts)
        bursts += 1
        stop.wait(on_s)
        client.set_faults(faults, seed=100 + bursts)
    return bursts


def _retry_after(entry: dict[str, Any]) -> float | None:
    """The wait the sandbox asked for in a 429 (header or body), if any."""
    if entry.get("retry_after") is not None:
        return float(entry["retry_after"])
    if entry.get("retry_after_body") is not None:
        return float(entry["retry_after_body"])
    return None


def check_gaps(tally: Tally, seen: dict[str, list[dict[str, Any]]], policy: RetryPolicy) -> dict[str, Any]:
    """Hold every retry against the policy: recorded delay within bounds, next DELETE no sooner."""
    figures: dict[str, Any] = {"retries": 0, "retry_after_seen": 0, "mismatched_logs": 0}
    problems: list[str] = []
    for call_uuid, record in tally.records.items():
        entries = seen.get(call_uuid, [])
        attempts = list(record.attempt_log)
        if len(entries) != len(attempts):
            figures["mismatched_logs"] += 1
            problems.append(f"{call_uuid}: {len(entries)} DELETEs but {len(attempts)} attempts recorded")
            continue
        for n, (entry, attempt, nxt) in enumerate(zip(entries, attempts, entries[1:], strict=False), start=1):
            delay = float(attempt.get("retry_in_s") or 0.0)
            figures["retries"] += 1
            wanted = _retry_after(entry)
            if wanted is not None:
                figures["retry_after_seen"] += 1
                if delay + SLACK_S < wanted:
                    problems.append(f"{call_uuid} attempt {n}: Retry-After {wanted} but waited {delay}")
            elif delay > min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** (n - 1)) + SLACK_S:
                problems.append(f"{call_uuid} attempt {n}: delay {delay} above the backoff bound")
            if nxt["time"] - entry["time"] + SLACK_S < delay:
                problems.append(
                    f"{call_uuid} attempt {n}: next DELETE after {nxt['time'] - entry['time']:.3f} s"
                )
    figures["problems"] = problems[:10]
    figures["problem_count"] = len(problems)
    return figures


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Send stops through steady faults and 429 bursts; every stop ends terminal, gaps hold."""
    started = time.monotonic()
    overrides = profile.api
    with Stack("api_chaos", overrides=overrides, keep_dir=keep_dir) as stack:
        settings = stack.settings()
        faults = steady(settings.api.read_timeout_s)
        client = stack.sandbox.client
        client.set_faults(faults)
        stack.start_workers(2)
        calls = new_calls(profile.api_stops)
        stop = threading.Event()
        burst_count: list[int] = []
        bursts = threading.Thread(
            target=lambda: burst_count.append(_bursts(client, faults, stop)), daemon=True
        )
        bursts.start()
        sent = Load(stack.producer, calls, rate_per_s=profile.rate_per_s / 4).start().wait()
        tally = reconcile(stack.producer(), client, calls, timeout_s=SETTLE_S)
        stop.set()
        bursts.join(10)
        seen = deletes_by_call(client)
    faults = [e for entries in seen.values() for e in entries if e["status"] not in (204, 404)]
    gaps = check_gaps(tally, seen, settings.retry)
    result = ScenarioResult("API chaos (503/hang/reset/429)", tally)
    result.note_overrides(overrides)
    result.figures.update(
        deletes=tally.deletes,
        faulted_deletes=len(faults),
        by_fault=dict(Counter(f"{e['fault'] or 'api'}:{e['status']}" for e in faults)),
        bursts_of_429=burst_count[0] if burst_count else 0,
        **gaps,
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check("faults were injected", len(faults) > len(calls) // 5, f"{len(faults)} faulted DELETEs")
    result.check(
        "Retry-After was exercised", gaps["retry_after_seen"] > 0, f"{gaps['retry_after_seen']} answers"
    )
    result.check(
        "backoff and Retry-After honoured (sandbox arrival gaps vs recorded delays)",
        gaps["problem_count"] == 0,
        f"{gaps['retries']} retries checked, {gaps['problem_count']} problems",
    )
    result.check(
        "no DELETE after a success for the same key",
        tally.duplicate_deletes == 0,
        f"{tally.duplicate_deletes}",
    )
    result.elapsed_s = time.monotonic() - started
    return result
