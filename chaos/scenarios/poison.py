"""Scenario 7: a flood of poison messages published raw to the queue while good stops flow."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from chaos.inflight import wait_drained
from chaos.load import new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.verify import reconcile
from harness.poison import poison_set
from harness.procs import wait_for

#: One good stop is enqueued after every this many poison messages.
GOOD_EVERY = 20


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Publish ``poison_messages`` raw poison messages of every kind, interleaved with good stops."""
    started = time.monotonic()
    with Stack("poison", keep_dir=keep_dir) as stack:
        workers = stack.start_workers(2)
        producer = stack.producer()
        markers = stack.directory / "markers"
        markers.mkdir()
        kinds = poison_set(markers)
        good = new_calls(profile.poison_messages // GOOD_EVERY)
        expected: Counter[str] = Counter()
        for n in range(profile.poison_messages):
            item = kinds[n % len(kinds)].copy()
            item.publish(stack.redis.url)
            expected[item.reason] += 1
            if n % GOOD_EVERY == 0:
                producer.stop_recording(good[n // GOOD_EVERY])
        wait_for(
            lambda: producer.dead_letters.count() >= profile.poison_messages,
            timeout_s=180,
            what="every poison message to be dead-lettered",
        )
        tally = reconcile(producer, stack.sandbox.client, good, timeout_s=60)
        dead = Counter(e.reason for e in producer.dead_letters.list(limit=profile.poison_messages + 10))
        redis = stack.redis.client()
        left = wait_drained(redis, timeout_s=30)
        redis.close()
        alive = all(w.alive for w in workers)
        unpickled = (markers / "unpickled").exists() or (markers / "yaml-applied").exists()
    result = ScenarioResult(f"poison x{profile.poison_messages} (+{len(good)} good)", tally)
    # The table counts the poison messages among those sent, each dead-lettered (details: figures).
    result.tally.sent += profile.poison_messages
    result.tally.dead[f"poison ({len(dead)} reasons)"] = sum(dead.values())
    result.figures.update(poison_by_reason=dict(dead), kinds=len(kinds))
    result.check(
        "every poison message dead-lettered with its reason",
        dead == expected,
        ", ".join(f"{n} {r}" for r, n in sorted(dead.items())),
    )
    result.check("no pickle or yaml payload was deserialized", not unpickled, "marker files absent")
    result.check("workers stayed up", alive, "both alive")
    result.check("lanes and in-flight lists drained", left == 0, f"{left} left")
    result.check("every good stop stopped", tally.stopped == len(good), f"{tally.stopped}/{len(good)}")
    result.elapsed_s = time.monotonic() - started
    return result
