"""The recstop CLI drives the same stack: enqueue, status, cancel and the dead-letter commands."""

from __future__ import annotations

import json
import uuid

import pytest
from support import RedisServer, cli, final, free_port, wait_for

from recstop.worker.config.secrets import mask_url
from recstop.worker.model import exitcodes
from recstop.worker.model.status import iso
from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration

PASSWORD = "redis-Pw-5e1f9a"  # a test Redis password, checked never to be printed
#: The fields `recstop status --json` printed before replays were described: scripts may read them.
STATUS_JSON_FIELDS = {
    *("call_uuid", "url", "state", "task_id", "attempts", "auth_id", "request_id", "last_http_status"),
    *("last_error", "enqueued_at", "due_at", "first_attempt_at", "last_attempt_at", "finished_at"),
    *("not_after", "dead_reason", "dlq_id", "settled_by", "urgent", "joined", "attempt_log"),
}


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


def test_status_of_unknown_stop_exits_6_naming_what_and_where_it_asked(env, redis_server):
    """No record → exit 6; the message names the call (and URL, if given) and the Redis asked."""
    call_uuid = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"
    result = cli(env, "status", call_uuid)
    assert result.returncode == exitcodes.UNKNOWN
    where = mask_url(redis_server.role_url(Role.PRODUCER))
    assert result.stderr == (
        f"recstop: no stop is known for call {call_uuid} (any recording) in Redis at {where}\n"
    )
    url = "https://media.example.com/rec/1.mp3"
    with_url = cli(env, "status", call_uuid, "--url", url, "--json")
    assert with_url.returncode == exitcodes.UNKNOWN
    assert f"no stop is known for recording {url} of call {call_uuid} in Redis at" in with_url.stderr


def test_status_exit_code_and_listing_tell_pending_urgent_and_cancelled_apart(env):
    """Scheduled: exit 3 with due_at; urgent queued: exit 3, urgent yes; cancelled: exit 5."""
    scheduled, urgent = str(uuid.uuid4()), str(uuid.uuid4())
    enqueued = cli(env, "enqueue", scheduled, "--delay", "60", "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    data = json.loads(cli(env, "status", scheduled, "--json").stdout)
    listing = cli(env, "status", scheduled)
    assert listing.returncode == exitcodes.PENDING
    assert f"due_at            {data['due_at']}\n" in listing.stdout
    assert "urgent            no\n" in listing.stdout

    assert cli(env, "enqueue", urgent, "--urgent").returncode == 0
    listing = cli(env, "status", urgent)
    assert listing.returncode == exitcodes.PENDING
    assert "state             queued\n" in listing.stdout
    assert "urgent            yes\n" in listing.stdout

    assert cli(env, "cancel", scheduled).returncode == 0
    cancelled = cli(env, "status", scheduled)
    assert cancelled.returncode == exitcodes.CANCELLED
    assert "due_at" not in cancelled.stdout


def test_status_of_a_dead_stop_exits_4(env, start_worker, call, producer, sandbox_client):
    """A stop given up (dead) → exit 4, the dead reason listed."""
    start_worker(RECSTOP_MAX_ATTEMPTS="1")
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "times": 1}])
    producer.stop_recording(call_uuid)
    final(producer, call_uuid)
    result = cli(env, "status", call_uuid)
    assert result.returncode == exitcodes.DEAD
    assert "dead_reason       attempts_exhausted\n" in result.stdout


def test_repeats_say_whether_the_stop_they_joined_is_pending_or_done(env, start_worker, call, producer):
    """A repeat of a finished request says "already stopped at <time>"; of a scheduled one, when it is due."""
    start_worker()
    call_uuid = call()
    assert cli(env, "enqueue", call_uuid, "--request-id", "req-1").returncode == 0
    record = final(producer, call_uuid)
    again = cli(env, "enqueue", call_uuid, "--request-id", "req-1")
    assert again.returncode == 0, again.stderr
    finished = record.to_dict()["finished_at"]
    assert again.stdout == (
        f"stopped task_id={record.task_id} (deduplicated: already stopped at {finished} by a stop with "
        "this request_id; nothing was enqueued)\n"
    )
    assert "pending" not in again.stdout

    later = str(uuid.uuid4())
    first = json.loads(cli(env, "enqueue", later, "--delay", "60", "--json").stdout)
    repeat = cli(env, "enqueue", later, "--delay", "120")
    due = producer.status(later).to_dict()["due_at"]
    assert repeat.stdout == (
        f"scheduled task_id={first['task_id']} (deduplicated: a stop for this recording is already "
        f"scheduled, due at {due})\n"
    )


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
    assert json.loads(cli(env, "dlq", "show", listing[0]["id"], "--json").stdout) == shown
    assert cli(env, "dlq", "show", "nope").returncode == 1
    replay = cli(env, "dlq", "replay", listing[0]["id"])
    assert replay.returncode == 0, replay.stderr
    final(producer, listing[0]["call_uuid"])
    assert producer.status(listing[0]["call_uuid"]).state == "stopped"
    assert cli(env, "dlq", "replay").returncode == 2
    purge = cli(env, "dlq", "purge")
    assert "purged 1" in purge.stdout
    assert producer.dead_letters.count() == 0


def test_status_after_replays_names_the_dead_letter_it_replays_and_counts_every_attempt(
    env, start_worker, call, producer, sandbox_client
):
    """Dead, replayed, dead, replayed, stopped: status names the last dead letter and counts 3 attempts."""
    start_worker()
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 403, "call_uuid": call_uuid, "times": 2}])
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state == "dead"
    for expected in ("dead", "stopped"):
        dead = producer.status(call_uuid)
        assert cli(env, "dlq", "replay", dead.dlq_id).returncode == 0
        wait_for(
            lambda dead=dead: (
                (r := producer.status(call_uuid)).task_id != dead.task_id and not r.state.pending
            ),
            what="the replay to finish",
        )
        assert producer.status(call_uuid).state == expected
    text = cli(env, "status", call_uuid)
    assert text.returncode == 0, text.stderr
    assert "attempts          1\n" in text.stdout  # this run's, as before
    assert cli(env, "dlq", "show", dead.dlq_id).returncode == 1  # gone with the replay's success
    assert (
        f"replayed_from     dead letter {dead.dlq_id}: http_403 after 1 attempt, dead at "
        f"{iso(dead.finished_at)} (task {dead.task_id})\n"
    ) in text.stdout
    assert (
        f"attempts_total    3 (2 before the replay; every event: recstop audit show {call_uuid})\n"
    ) in text.stdout
    data = json.loads(cli(env, "status", call_uuid, "--json").stdout)
    assert set(data) >= STATUS_JSON_FIELDS  # --json only gains fields
    assert (data["attempts"], data["attempts_total"], data["dlq_id"]) == (1, 3, None)
    replayed = data["replayed_from"]
    assert (replayed["dlq_id"], replayed["task_id"], replayed["reason"]) == (
        dead.dlq_id,
        dead.task_id,
        "http_403",
    )
    assert (replayed["attempts"], replayed["attempts_before"]) == (1, 2)
    assert [a["http_status"] for a in replayed["attempt_log"]] == [403]
    assert replayed["dead_at"] == iso(dead.finished_at)


def test_broker_down_is_exit_1_naming_the_redis_and_the_cause(env):
    """With nothing listening, exit 1 says which Redis (password masked) refused the connection."""
    down = {
        **env,
        "RECSTOP_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:1/0",
        "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "1",
    }
    result = cli(down, "enqueue", "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "recstop: could not store the stop: Redis at redis://:***@127.0.0.1:1/0: connection refused"
    )
    assert PASSWORD not in result.stderr
    listing = cli(down, "dlq", "list")
    assert listing.returncode == 1
    assert listing.stderr.startswith("recstop: Redis at redis://:***@127.0.0.1:1/0: connection refused")


def test_a_wrong_password_and_a_silent_redis_are_told_apart(env, tmp_path):
    """A wrong password is a bad setting (exit 2, "authentication failed"); a silent Redis "timed out" (1)."""
    port = free_port()
    right = f"redis://:right-pw@127.0.0.1:{port}/0"
    server = RedisServer(
        tmp_path / "auth", extra_args=["--requirepass", "right-pw"], url=right, port=port
    ).start()
    try:
        wrong = {**env, "RECSTOP_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"}
        result = cli(wrong, "status", str(uuid.uuid4()))
        assert result.returncode == 2
        assert f"Redis at redis://:***@127.0.0.1:{server.port}/0: authentication failed" in result.stderr
        assert PASSWORD not in result.stderr
        silent = {
            **env,
            "RECSTOP_BROKER_URL": right,
            "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "0.5",
        }
        server.pause()
        try:
            result = cli(silent, "cancel", str(uuid.uuid4()))
        finally:
            server.resume()
        assert result.returncode == 1
        assert (
            f"could not cancel: Redis at redis://:***@127.0.0.1:{server.port}/0: timed out" in result.stderr
        )
    finally:
        server.stop()


def test_a_bad_line_of_a_file_is_named_by_its_line_number(env, redis_server, tmp_path):
    """`--file` errors name the file's line, counted from 1 with blank lines included; nothing is stored."""
    path = tmp_path / "calls.txt"
    path.write_text(f"{uuid.uuid4()}\n\n   \nnot-a-uuid!\n{uuid.uuid4()}\n", encoding="utf-8")
    result = cli(env, "enqueue", "--file", str(path), "--no-progress")
    assert result.returncode == 2
    assert result.stderr.startswith("recstop: error: line 4: call_uuid: ")
    assert redis_server.client().dbsize() == 0


def test_a_sandbox_call_with_two_recordings_then_a_stop_of_one(env, start_worker, producer, sandbox_client):
    """`recstop sandbox call --recordings 2` gives real URLs: one stopped (204), the other still recording."""
    start_worker()
    created = cli(env, "sandbox", "call", "--recordings", "2", "--json")
    assert created.returncode == 0, created.stderr
    call = json.loads(created.stdout)
    call_uuid, (first, second) = call["call_uuid"], call["recordings"]
    assert cli(env, "enqueue", call_uuid, "--url", first).returncode == 0
    final(producer, call_uuid, first)
    status = cli(env, "status", call_uuid, "--url", first)
    assert status.returncode == exitcodes.OK, status.stderr
    assert "state             stopped\n" in status.stdout
    assert "last_http_status  204\n" in status.stdout
    shown = cli(env, "sandbox", "show", call_uuid)
    assert shown.stdout == f"call_uuid  {call_uuid}\nrecording  {second}\n"
    assert sandbox_client.call(call_uuid)["recordings"] == [second]


def test_an_unhealthy_report_names_the_redis_it_checked(env, redis_server):
    """Redis answers but no worker runs: exit 1, and the report says which Redis it asked (text and JSON)."""
    result = cli(env, "health")
    assert result.returncode == 1
    assert result.stdout.startswith("UNHEALTHY\n")
    assert result.stdout.endswith(f"checked Redis at {mask_url(redis_server.role_url(Role.MONITOR))}\n")
    assert json.loads(cli(env, "health", "--json").stdout)["redis"] == mask_url(
        redis_server.role_url(Role.MONITOR)
    )
