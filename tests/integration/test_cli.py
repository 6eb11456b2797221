"""The recstop CLI drives the same stack: enqueue, status, cancel and the dead-letter commands."""

from __future__ import annotations

import json

import pytest
from support import cli, final

pytestmark = pytest.mark.integration


def test_enqueue_then_status(env, start_worker, call, producer):
    """`recstop enqueue` prints the task id; `recstop status --json` shows it stopped."""
    start_worker()
    call_uuid = call()
    result = cli(env, "enqueue", call_uuid, "--request-id", "cli-1", "--json")
    assert result.returncode == 0, result.stderr
    handle = json.loads(result.stdout)
    final(producer, call_uuid)
    status = cli(env, "status", call_uuid, "--json")
    assert status.returncode == 0
    data = json.loads(status.stdout)
    assert (data["state"], data["task_id"], data["request_id"], data["attempts"]) == (
        "stopped",
        handle["task_id"],
        "cli-1",
        1,
    )
    assert data["finished_at"].endswith("+00:00")
    text = cli(env, "status", call_uuid)
    assert "stopped" in text.stdout


def test_delay_then_cancel(env, call):
    """`--delay` schedules; `recstop cancel` cancels; a second cancel exits 1."""
    call_uuid = call()
    assert "scheduled" in cli(env, "enqueue", call_uuid, "--delay", "60").stdout
    assert cli(env, "cancel", call_uuid).returncode == 0
    assert json.loads(cli(env, "status", call_uuid, "--json").stdout)["state"] == "cancelled"
    again = cli(env, "cancel", call_uuid)
    assert again.returncode == 1
    assert "cancelled" in again.stderr


def test_status_of_unknown_stop_exits_1(env):
    """No record → exit 1 with a message."""
    result = cli(env, "status", "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c")
    assert result.returncode == 1
    assert "no stop" in result.stderr


def test_dlq_list_show_replay_purge(env, start_worker, call, producer, sandbox_client):
    """Dead letters are listed, shown with attempts, replayed and purged from the CLI."""
    start_worker(RECSTOP_MAX_ATTEMPTS="1")
    first, second = call(), call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "times": 2}])
    producer.stop_recording(first)
    producer.stop_recording(second)
    final(producer, first)
    final(producer, second)
    listing = json.loads(cli(env, "dlq", "list", "--json").stdout)
    assert {e["reason"] for e in listing} == {"attempts_exhausted"}
    assert len(listing) == 2
    shown = json.loads(cli(env, "dlq", "show", listing[0]["id"]).stdout)
    assert shown["attempts"][0]["http_status"] == 503
    assert cli(env, "dlq", "show", "nope").returncode == 1
    replay = cli(env, "dlq", "replay", listing[0]["id"])
    assert replay.returncode == 0, replay.stderr
    final(producer, listing[0]["call_uuid"])
    assert producer.status(listing[0]["call_uuid"]).state == "stopped"
    assert cli(env, "dlq", "replay").returncode == 2
    purge = cli(env, "dlq", "purge")
    assert "purged 1" in purge.stdout
    assert producer.dead_letters.count() == 0


def test_broker_down_is_exit_1(env):
    """With Redis unreachable the CLI fails with exit 1 and says so, quickly."""
    down = {**env, "RECSTOP_BROKER_URL": "redis://127.0.0.1:1/0", "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "1"}
    result = cli(down, "enqueue", "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c")
    assert result.returncode == 1
    assert "could not store" in result.stderr
