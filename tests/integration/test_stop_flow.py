"""End to end: producer → Redis → real worker process → sandbox, for each outcome."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
from conftest import AUTH_ID, TOKEN
from support import deletes, final, in_flight, publish_raw, wait_for

from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration


def test_stop_all_sends_one_delete_with_exact_path_and_headers(producer, start_worker, sandbox_client, call):
    """Stop-all: exactly one DELETE, exact path and headers, no body; status stopped."""
    start_worker()
    call_uuid = call(recordings=2)
    handle = producer.stop_recording(call_uuid, request_id="req-1")
    assert not handle.deduplicated
    record = final(producer, call_uuid)
    assert (record.state, record.attempts, record.last_http_status) == ("stopped", 1, 204)
    assert record.task_id == handle.task_id
    assert record.request_id == "req-1"
    assert record.first_attempt_at is not None
    assert record.finished_at >= record.first_attempt_at >= record.enqueued_at
    reqs = deletes(sandbox_client, call_uuid)
    assert len(reqs) == 1
    assert reqs[0]["path"] == f"/api/v1/Account/{AUTH_ID}/Call/{call_uuid}/Record/"
    assert reqs[0]["auth_id_header"] == AUTH_ID
    assert reqs[0]["token_ok"] is True
    assert reqs[0]["body"] in (None, "")
    assert sandbox_client.call(call_uuid)["recordings"] == []


def test_stop_one_sends_the_url_body_and_leaves_other_recordings(
    producer, start_worker, sandbox_client, call
):
    """Stop-one: one DELETE with {"URL": ...}; only that recording stops."""
    start_worker()
    call_uuid = call(recordings=0)
    keep = sandbox_client.start_recording(call_uuid)
    target = sandbox_client.start_recording(call_uuid)
    producer.stop_recording(call_uuid, target)
    record = final(producer, call_uuid, target)
    assert record.state == "stopped"
    reqs = deletes(sandbox_client, call_uuid)
    assert len(reqs) == 1
    assert reqs[0]["body"] == {"URL": target}
    assert sandbox_client.call(call_uuid)["recordings"] == [keep]


@pytest.mark.parametrize("shape", ["v1", "v2"])
def test_404_in_both_shapes_is_already_stopped_without_retry(
    producer, start_worker, sandbox_client, call, shape
):
    """404 (either error body shape) → already_stopped after one attempt."""
    start_worker()
    call_uuid = call()
    sandbox_client.set_faults(
        [
            {
                "kind": "status",
                "status": 404,
                "shape": shape,
                "call_uuid": call_uuid,
                "message": "Recording not found",
            }
        ]
    )
    producer.stop_recording(call_uuid)
    record = final(producer, call_uuid)
    assert (record.state, record.attempts, record.last_http_status) == ("already_stopped", 1, 404)
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_unknown_call_is_already_stopped(producer, start_worker, sandbox_client):
    """A call the API does not know (hung up) counts as already stopped."""
    start_worker()
    call_uuid = str(uuid.uuid4())
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state == "already_stopped"
    assert deletes(sandbox_client, call_uuid)[0]["status"] == 404


def test_503_three_times_then_204_retries_with_growing_gaps(producer, start_worker, sandbox_client, call):
    """503 three times then 204 → stopped after 4 attempts, each gap longer than the last."""
    start_worker(RECSTOP_BACKOFF_JITTER="none", RECSTOP_BACKOFF_BASE_S="0.3")
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "times": 3, "call_uuid": call_uuid}])
    producer.stop_recording(call_uuid)
    record = final(producer, call_uuid)
    assert (record.state, record.attempts) == ("stopped", 4)
    assert [a["outcome"] for a in record.attempt_log] == ["retry", "retry", "retry", "stopped"]
    times = [r["time"] for r in deletes(sandbox_client, call_uuid)]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.3
    assert gaps[0] < gaps[1] < gaps[2]
    assert gaps[2] >= 1.2


def test_429_retry_after_is_honoured(producer, start_worker, sandbox_client, call):
    """429 with Retry-After: 2 → the next attempt comes at least 2 s later."""
    start_worker()
    call_uuid = call()
    sandbox_client.set_faults(
        [{"kind": "status", "status": 429, "times": 1, "retry_after": "2", "call_uuid": call_uuid}]
    )
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state == "stopped"
    first, second = (r["time"] for r in deletes(sandbox_client, call_uuid))
    assert second - first >= 2.0


def test_429_body_retry_after_is_honoured(producer, start_worker, sandbox_client, call):
    """429 with only details.retryAfter in the body → that wait is honoured too."""
    start_worker()
    call_uuid = call()
    sandbox_client.set_faults(
        [{"kind": "status", "status": 429, "times": 1, "retry_after_body": 1, "call_uuid": call_uuid}]
    )
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state == "stopped"
    first, second = (r["time"] for r in deletes(sandbox_client, call_uuid))
    assert second - first >= 1.0


def test_401_dead_letters_at_once_and_replay_after_fixing_credentials_stops(
    producer, start_worker, sandbox_client, call
):
    """401 → dead letter after one attempt; replay with the right token → stopped, entry gone."""
    wrong = start_worker(VOBIZ_AUTH_TOKEN="tok-wrong-000")
    call_uuid = call()
    producer.stop_recording(call_uuid)
    record = final(producer, call_uuid)
    assert (record.state, record.attempts, record.dead_reason) == ("dead", 1, "http_401")
    [entry] = producer.dead_letters.list()
    assert entry.reason == "http_401"
    assert entry.http_status == 401
    assert entry.call_uuid == call_uuid
    assert len(entry.attempts) == 1
    assert entry.payload["kwargs"]["call_uuid"] == call_uuid
    assert "credentials_rejected" in wrong.log_text()
    wrong.stop()

    start_worker(name="fixed")
    [result] = producer.replay([entry.id])
    assert result.error is None
    record = final(producer, call_uuid)
    assert record.state == "stopped"
    assert record.task_id == result.task_id
    assert producer.dead_letters.count() == 0
    assert len(deletes(sandbox_client, call_uuid)) == 2


def test_attempts_exhausted_dead_letter_lists_every_attempt(producer, start_worker, sandbox_client, call):
    """Retryable failures up to the limit → dead letter 'attempts_exhausted' with each attempt."""
    start_worker(RECSTOP_MAX_ATTEMPTS="3", RECSTOP_BACKOFF_BASE_S="0.05")
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "call_uuid": call_uuid}])
    producer.stop_recording(call_uuid)
    record = final(producer, call_uuid)
    assert (record.state, record.dead_reason, record.attempts) == ("dead", "attempts_exhausted", 3)
    entry = producer.dead_letters.get(record.dlq_id)
    assert [a["attempt"] for a in entry.attempts] == [1, 2, 3]
    assert all(a["http_status"] == 503 and a["at"] > 0 for a in entry.attempts)


def test_deadline_passed_dead_letters_with_reason_deadline(producer, start_worker, sandbox_client, call):
    """A stop that keeps failing past its not_after is dead-lettered with reason 'deadline'."""
    start_worker(RECSTOP_BACKOFF_BASE_S="1.5", RECSTOP_BACKOFF_JITTER="none")
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "call_uuid": call_uuid}])
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    producer.stop_recording(call_uuid, not_after=datetime.now(UTC) + timedelta(seconds=1))
    record = final(producer, call_uuid)
    assert (record.state, record.dead_reason) == ("dead", "deadline")
    assert producer.dead_letters.get(record.dlq_id).reason == "deadline"


def test_stop_all_settles_pending_single_recording_stops(producer, start_worker, sandbox_client, call):
    """A finished stop-all settles the call's URL stops that were pending before it ran."""
    call_uuid = call(recordings=0)
    url = sandbox_client.start_recording(call_uuid)
    producer.stop_recording(call_uuid, url, delay=30)
    producer.stop_recording(call_uuid)
    start_worker()
    assert final(producer, call_uuid).state == "stopped"
    settled = producer.status(call_uuid, url)
    assert settled.state == "already_stopped"
    assert settled.settled_by == producer.status(call_uuid).task_id
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_redelivered_message_causes_no_second_delete(
    producer, start_worker, sandbox_client, call, redis_server
):
    """The same message delivered again after success (same task id) does not DELETE again."""
    start_worker()
    call_uuid = call()
    handle = producer.stop_recording(call_uuid)
    final(producer, call_uuid)
    for _ in range(3):
        publish_raw(redis_server.role_url(Role.PRODUCER), {"call_uuid": call_uuid}, task_id=handle.task_id)
    client = redis_server.client()
    wait_for(lambda: client.llen("recstop") == 0, timeout_s=10, what="queue to drain")
    wait_for(lambda: in_flight(client) == 0, timeout_s=10, what="messages to be acked")
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_raw_producer_message_gets_the_same_guarantees(
    producer, start_worker, sandbox_client, call, redis_server
):
    """A plain protocol-v2 JSON message from another language is executed and recorded."""
    start_worker()
    call_uuid = call()
    task_id = publish_raw(
        redis_server.role_url(Role.PRODUCER), {"call_uuid": call_uuid, "request_id": "go-svc-1"}
    )
    record = final(producer, call_uuid)
    assert (record.state, record.task_id, record.request_id) == ("stopped", task_id, "go-svc-1")
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_unknown_account_at_the_worker_is_dead_lettered(producer, start_worker, redis_server):
    """A message naming an account without credentials → dead letter 'unknown_account'."""
    start_worker()
    call_uuid = str(uuid.uuid4())
    publish_raw(redis_server.role_url(Role.PRODUCER), {"call_uuid": call_uuid, "auth_id": "MA_NOBODY99"})
    record = final(producer, call_uuid)
    assert (record.state, record.dead_reason) == ("dead", "unknown_account")


def test_token_never_stored_in_redis(producer, start_worker, sandbox_client, call, redis_server):
    """After successes, retries and dead letters, no Redis key or value holds the token."""
    worker = start_worker(RECSTOP_MAX_ATTEMPTS="2", RECSTOP_BACKOFF_BASE_S="0.05")
    ok, failing = call(), call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "call_uuid": failing}])
    producer.stop_recording(ok)
    producer.stop_recording(failing)
    publish_raw(redis_server.role_url(Role.PRODUCER), {"call_uuid": "../" + TOKEN, "auth_token": TOKEN})
    final(producer, ok)
    final(producer, failing)
    wait_for(lambda: producer.dead_letters.count() == 2, what="malformed message dead-lettered")
    client = redis_server.client(decode=False)
    seen = 0
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        values: list[bytes] = [key]
        if kind == "string":
            values.append(client.get(key) or b"")
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                values.extend([field, value])
        elif kind == "list":
            values.extend(client.lrange(key, 0, -1))
        elif kind == "set":
            values.extend(client.smembers(key))
        elif kind == "zset":
            values.extend(client.zrange(key, 0, -1))
        seen += 1
        assert all(TOKEN.encode() not in v for v in values), key
    assert seen > 5
    assert TOKEN not in worker.log_text()


def test_every_log_line_is_json_with_task_context(producer, start_worker_process, sandbox_client, call):
    """A worker process prints only JSON lines; task lines carry the call, task, attempt and request."""
    worker = start_worker_process()
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "times": 1, "call_uuid": call_uuid}])
    handle = producer.stop_recording(call_uuid, request_id="trace-7")
    final(producer, call_uuid)
    # One line per attempt, written once its outcome is recorded (by the worker's log writer thread).
    wait_for(
        lambda: sum(r.get("event") == "attempt" for r in worker.log_records()) == 2, what="two attempt lines"
    )
    records = worker.log_records()
    assert any(r.get("logger", "").startswith("celery") for r in records), "Celery's own lines are JSON too"
    attempts = [r for r in records if r.get("event") == "attempt"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert [a["outcome"] for a in attempts] == ["retry", "stopped"]
    assert [a["state"] for a in attempts] == ["retrying", "stopped"]
    assert [a["http_status"] for a in attempts] == [503, 204]
    assert all(isinstance(a["duration_ms"], float) for a in attempts)
    assert 0 <= attempts[0]["retry_in_s"] <= 2
    task_lines = [r for r in records if r.get("task_id") == handle.task_id]
    assert len(task_lines) == 2
    for line in task_lines:
        assert {"call_uuid", "task_id", "attempt", "auth_id", "request_id", "timestamp", "level"} <= set(line)
        assert line["call_uuid"] == call_uuid
        assert line["request_id"] == "trace-7"
    assert TOKEN not in json.dumps(records)
    worker.stop()  # Celery's shutdown messages, written from its signal handler, are JSON too
    assert any("shutdown" in r["event"] for r in worker.log_records())


@pytest.mark.parametrize(
    ("fault", "error"),
    [({"kind": "hang", "hang_s": 5}, "timeout"), ({"kind": "reset"}, "connection")],
)
def test_hang_and_reset_are_retried(producer, start_worker, sandbox_client, call, fault, error):
    """A response that never comes (read timeout) or a connection reset is retried, then stops."""
    start_worker()
    call_uuid = call()
    sandbox_client.set_faults([{**fault, "times": 1, "call_uuid": call_uuid}])
    producer.stop_recording(call_uuid)
    record = final(producer, call_uuid)
    assert (record.state, record.attempts) == ("stopped", 2)
    assert error in record.attempt_log[0]["error"]
    assert record.attempt_log[0]["http_status"] is None


def test_same_request_id_after_success_is_deduplicated(producer, start_worker, sandbox_client, call):
    """A producer's retry (same request_id) after the stop finished sends no second DELETE."""
    start_worker()
    call_uuid = call()
    first = producer.stop_recording(call_uuid, request_id="pci-7")
    final(producer, call_uuid)
    again = producer.stop_recording(call_uuid, request_id="pci-7")
    assert (again.task_id, again.deduplicated, again.state) == (first.task_id, True, "stopped")
    fresh = producer.stop_recording(call_uuid, request_id="pci-8")
    assert not fresh.deduplicated
    record = final(producer, call_uuid)
    assert (record.task_id, record.state) == (fresh.task_id, "already_stopped")
    assert len(deletes(sandbox_client, call_uuid)) == 2


def test_raw_message_of_a_finished_request_is_skipped(
    producer, start_worker, sandbox_client, call, redis_server
):
    """A raw producer's second message (new task id, same request_id) after success is skipped."""
    worker = start_worker()
    call_uuid = call()
    publish_raw(redis_server.role_url(Role.PRODUCER), {"call_uuid": call_uuid, "request_id": "go-svc-9"})
    final(producer, call_uuid)
    second = publish_raw(
        redis_server.role_url(Role.PRODUCER), {"call_uuid": call_uuid, "request_id": "go-svc-9"}
    )
    wait_for(
        lambda: any(
            r.get("event") == "stop_skipped" and r.get("task_id") == second for r in worker.log_records()
        ),
        what="the second message to be skipped",
    )
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_retry_delay_is_kept_in_the_attempt_log(producer, start_worker, sandbox_client, call):
    """Each retried attempt records the delay chosen, and the next DELETE comes no sooner."""
    start_worker()
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 503, "times": 2, "call_uuid": call_uuid}])
    producer.stop_recording(call_uuid)
    record = final(producer, call_uuid)
    times = [r["time"] for r in deletes(sandbox_client, call_uuid)]
    delays = [a["retry_in_s"] for a in record.attempt_log[:2]]
    assert record.state == "stopped"
    assert all(0 <= d <= 2 for d in delays)
    assert [b - a >= d - 0.01 for a, b, d in zip(times[:-1], times[1:], delays, strict=True)] == [True, True]
