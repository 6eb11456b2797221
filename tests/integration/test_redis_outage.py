"""A worker whose Redis goes away says so in a few lines, naming the Redis and the cause, not one per try."""

from __future__ import annotations

import time

import pytest
from support import wait_for

from recstop.worker.config.secrets import mask_url
from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration

#: How long Redis stays down: the scheduler polls every 0.05 s here, 40 tries in that time.
OUTAGE_S = 2.0
#: recstop's periodic loops (the scheduler, whose tick is the worker's heartbeat, and the consumer
#: heartbeat thread) and what they log about an outage.
LOOPS = ("recstop.scheduler", "recstop.fetch")


def test_a_worker_whose_redis_is_down_logs_a_few_lines_naming_the_redis_and_the_cause(
    start_worker, redis_server, logs
):
    """Redis stopped for 2 s: a warning when it goes, one info line when it is back; each names it."""
    start_worker()
    before = len(logs.records())
    redis_server.stop()
    time.sleep(OUTAGE_S)  # the outage itself: what is logged over its length is what is measured
    redis_server.start()

    def outage_lines():
        return [r for r in logs.records()[before:] if r.get("logger") in LOOPS]

    wait_for(
        lambda: any(r["event"] == "scheduler_redis_recovered" for r in outage_lines()),
        timeout_s=15,
        what=lambda: f"the scheduler to log that Redis is back: {outage_lines()}",
    )
    lines = outage_lines()
    events = [r["event"] for r in lines]
    assert events.count("scheduler_redis_unavailable") == 1, events
    assert len(lines) <= 4, events  # at most a warning and a recovery per loop
    for line in lines:
        if line["event"].endswith("_unavailable"):
            assert line["level"] == "warning"
            assert line["error"].startswith(
                f"Redis at {mask_url(redis_server.role_url(Role.WORKER))}: connection refused"
            ), line
        else:
            assert (line["level"], line["redis"]) == ("info", mask_url(redis_server.role_url(Role.WORKER))), (
                line
            )
    # Everything the worker logged meanwhile (Celery's reconnects included) stays a handful of lines.
    assert len([r for r in logs.records()[before:] if r["level"] != "debug"]) <= 15
