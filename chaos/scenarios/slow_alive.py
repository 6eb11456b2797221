"""Scenario 1c: slow but alive: the API answers just under the read timeout, over the consumer timeout.

A worker whose every thread waits on a slow API must keep its messages: its heartbeat comes from a
thread of its own, so no live worker reaps it. Were one to, the message would be fetched again
and its stop would find its own lock (or DELETE twice): the checks look for exactly that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

from chaos.load import new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.verify import deletes_by_call, log_events, reconcile
from chaos.watch import Watch

#: Seconds the stops may take beyond the latency itself.
SLACK_S: Final = 30.0


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Two workers, ``profile.slow_stops`` stops, every DELETE answered after ``profile.slow_latency_s``."""
    started = time.monotonic()
    overrides = profile.slow
    latency_s = profile.slow_latency_s
    with Stack("slow_alive", overrides=overrides, keep_dir=keep_dir) as stack:
        settings = stack.settings()
        consumer_timeout_s, read_timeout_s = settings.redis.consumer_timeout_s, settings.api.read_timeout_s
        stack.sandbox.client.set_faults([], latency_ms=latency_s * 1000)
        workers = stack.start_workers(2)
        producer = stack.producer()
        calls = new_calls(profile.slow_stops)
        with Watch(stack.client(), interval_s=0.05) as watch:
            task_ids = [producer.stop_recording(c).task_id for c in calls]
            tally = reconcile(producer, stack.sandbox.client, calls, timeout_s=latency_s + SLACK_S)
        seen = deletes_by_call(stack.sandbox.client)
        reaped = [r for w in workers for r in log_events(w.log_records(), "consumer_reaped")]
        skipped = [r for w in workers for r in log_events(w.log_records(), "stop_skipped")]
    fetches = {t: watch.fetches(t) for t in task_ids}
    held = [watch.held_s(t) for t in task_ids]
    per_call = [len(seen.get(c, [])) for c in calls]
    result = ScenarioResult(f"slow but alive: API {latency_s:.0f} s x{len(calls)}", tally)
    result.note_overrides(overrides)
    result.figures.update(
        api_latency_s=latency_s,
        read_timeout_s=read_timeout_s,
        consumer_timeout_s=consumer_timeout_s,
        held_s=[round(h, 2) for h in held],
        fetches=list(fetches.values()),
        holders=sorted({h for t in task_ids for h in watch.holders(t)}),
        consumer_reaped=len(reaped),
        stop_skipped=len(skipped),
    )
    result.check(
        "latency between the consumer timeout and the read timeout",
        consumer_timeout_s < latency_s < read_timeout_s,
        f"{consumer_timeout_s} s < {latency_s} s < {read_timeout_s} s",
    )
    result.check(
        "every message was held longer than the consumer timeout",
        bool(held) and min(held) > consumer_timeout_s,
        f"shortest {min(held, default=0):.1f} s > {consumer_timeout_s} s",
    )
    result.check("no consumer reaped", not reaped, f"{len(reaped)} consumer_reaped lines")
    result.check(
        "each message fetched exactly once",
        all(n == 1 for n in fetches.values()) and not skipped,
        f"fetches {list(fetches.values())}, {len(skipped)} stop_skipped lines",
    )
    result.check("exactly one DELETE per stop", all(n == 1 for n in per_call), f"{per_call}")
    result.check("every stop stopped", tally.stopped == len(calls), f"{tally.stopped}/{len(calls)}")
    result.elapsed_s = time.monotonic() - started
    return result
