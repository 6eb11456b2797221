"""`recstop health` as a real process: each check, its exit code, and the JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from support import ROOT, free_port

from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration

CHECKS = {"redis", "workers", "dead_letters", "schedule", "audit"}


def health(redis_url, *args, **env):
    """Run ``recstop health`` against ``redis_url``; return (exit code, stdout, stderr)."""
    full_env = {**os.environ, "RECSTOP_BROKER_URL": redis_url, **env}
    for name in ("RECSTOP_HEALTH_MAX_DEAD_LETTERS", "RECSTOP_HEALTH_MAX_OVERDUE_S"):
        if name not in env:
            full_env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "recstop.producers.cli", "health", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def report(redis_url, *args, **env):
    """Run ``recstop health --json``; return (exit code, parsed report)."""
    code, out, err = health(redis_url, "--json", *args, **env)
    assert "Traceback" not in err
    return code, json.loads(out)


def beat(client, name, age_s=0.0):
    """Write a worker heartbeat ``age_s`` seconds old, as a worker's SchedulerStep would."""
    client.hset("recstop:workers", name, f"{time.time() - age_s:.3f}")


def test_healthy_with_a_running_worker(redis_server, start_worker):
    """A real worker, no dead letters, nothing overdue → exit 0; text names every check as ok."""
    start_worker()
    code, out, err = health(redis_server.role_url(Role.MONITOR))
    assert (code, err) == (0, "")
    assert out.startswith("healthy\n")
    for name in CHECKS:
        assert f"ok   {name}" in out
    code, data = report(redis_server.role_url(Role.MONITOR))
    assert code == 0
    assert data["healthy"] is True
    assert set(data["checks"]) == CHECKS
    assert all(check["ok"] for check in data["checks"].values())
    assert [n.split("@")[0] for n in data["checks"]["workers"]["data"]["live"]] == ["w1"]
    assert data["checks"]["redis"]["data"]["latency_ms"] >= 0


def test_no_worker_is_unhealthy(redis_server):
    """No heartbeat at all → exit 1 with the workers check failing, the others passing."""
    code, data = report(redis_server.role_url(Role.MONITOR))
    assert code == 1
    assert data["healthy"] is False
    assert {name for name, c in data["checks"].items() if not c["ok"]} == {"workers"}
    assert data["checks"]["workers"]["data"]["live"] == []


def test_only_a_stale_heartbeat_is_unhealthy_and_reported_dead(redis_server):
    """A heartbeat older than --max-heartbeat-age-s counts as dead, not alive → exit 1."""
    client = redis_server.client()
    beat(client, "ghost@host", age_s=60)
    code, data = report(redis_server.role_url(Role.MONITOR), "--max-heartbeat-age-s", "6")
    assert code == 1
    workers = data["checks"]["workers"]
    assert workers["ok"] is False
    assert (workers["data"]["live"], workers["data"]["stale"]) == ([], ["ghost@host"])
    assert "ghost@host" in workers["detail"]
    code, out, _ = health(redis_server.role_url(Role.MONITOR), "--max-heartbeat-age-s", "120")
    assert code == 0, out


def test_a_fresh_and_a_stale_heartbeat_is_healthy_with_one_live(redis_server):
    """One live worker beside a stale one → healthy; the stale one is listed as dead."""
    client = redis_server.client()
    beat(client, "ghost@host", age_s=60)
    beat(client, "w1@host")
    code, data = report(redis_server.role_url(Role.MONITOR))
    assert code == 0
    assert data["checks"]["workers"]["data"] == {
        "live": ["w1@host"],
        "stale": ["ghost@host"],
        "max_heartbeat_age_s": 10.0,
    }


def test_too_many_dead_letters_is_unhealthy(redis_server):
    """More dead letters than --max-dead-letters → exit 1; exactly that many is still healthy."""
    client = redis_server.client()
    beat(client, "w1@host")
    client.zadd("recstop:dlq", {f"dl{i}": time.time() for i in range(3)})
    code, data = report(redis_server.role_url(Role.MONITOR), "--max-dead-letters", "2")
    assert code == 1
    assert {name for name, c in data["checks"].items() if not c["ok"]} == {"dead_letters"}
    assert data["checks"]["dead_letters"]["data"] == {"count": 3, "max": 2}
    assert report(redis_server.role_url(Role.MONITOR), "--max-dead-letters", "3")[0] == 0


def test_dead_letter_threshold_comes_from_the_environment(redis_server):
    """RECSTOP_HEALTH_MAX_DEAD_LETTERS sets the default; the flag overrides it."""
    client = redis_server.client()
    beat(client, "w1@host")
    client.zadd("recstop:dlq", {"dl1": time.time(), "dl2": time.time()})
    assert report(redis_server.role_url(Role.MONITOR), RECSTOP_HEALTH_MAX_DEAD_LETTERS="1")[0] == 1
    assert (
        report(
            redis_server.role_url(Role.MONITOR),
            "--max-dead-letters",
            "5",
            RECSTOP_HEALTH_MAX_DEAD_LETTERS="1",
        )[0]
        == 0
    )
    assert report(redis_server.role_url(Role.MONITOR))[0] == 0  # default 100


def test_an_overdue_schedule_entry_is_unhealthy(redis_server):
    """A schedule entry due 120 s ago (no scheduler publishes it) → exit 1 naming the stop."""
    client = redis_server.client()
    beat(client, "w1@host")
    client.zadd("recstop:schedule", {"c0ffee00-0000-4000-8000-000000000001/all": time.time() - 120})
    client.zadd("recstop:schedule", {"c0ffee00-0000-4000-8000-000000000002/all": time.time() + 300})
    code, data = report(redis_server.role_url(Role.MONITOR), "--max-overdue-s", "60")
    assert code == 1
    schedule = data["checks"]["schedule"]
    assert {name for name, c in data["checks"].items() if not c["ok"]} == {"schedule"}
    assert schedule["data"]["oldest_key"] == "c0ffee00-0000-4000-8000-000000000001/all"
    assert 119 < schedule["data"]["oldest_overdue_s"] < 200
    assert "c0ffee00-0000-4000-8000-000000000001/all" in schedule["detail"]
    assert report(redis_server.role_url(Role.MONITOR), "--max-overdue-s", "600")[0] == 0


def test_redis_unreachable_is_exit_1_with_a_reason_and_no_traceback():
    """Nothing listens on the Redis port → exit 1, a clear reason, no traceback, in text and JSON."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, out, err = health(url)
    assert code == 1
    assert "Traceback" not in out + err
    assert out.startswith("UNHEALTHY\n")
    assert f"Redis unreachable at {url}" in out
    code, data = report(url)
    assert code == 1
    assert set(data["checks"]) == CHECKS
    assert data["checks"]["redis"]["ok"] is False
    assert "ConnectionError" in data["checks"]["redis"]["detail"]
    assert all(
        c["detail"] == "not checked: Redis unreachable" for n, c in data["checks"].items() if n != "redis"
    )


def test_redis_password_is_masked_in_the_reason():
    """The reason names Redis by its masked URL: a password never reaches a probe's log."""
    url = f"redis://app:Sekr3tPass@127.0.0.1:{free_port()}/0"
    code, out, err = health(url)
    assert code == 1
    assert "Sekr3tPass" not in out + err
    assert "redis://app:***@127.0.0.1" in out
