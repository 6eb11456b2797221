"""Celery's own API schedules, expires, revokes and awaits stops, on recstop's durable schedule."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from celery.exceptions import TaskRevokedError
from celery.worker.control import Panel
from celery.worker.control import revoke as celery_revoke
from support import ROOT, deletes, final, in_flight, wait_for
from test_other_language import fill, readme_message

from recstop.worker.model.errors import StopDead
from recstop.worker.state.acl import Role
from recstop.worker.state.keys import QUEUE, TASK_NAME

pytestmark = pytest.mark.integration


@pytest.fixture
def client_app(redis_server) -> Iterator[Celery]:
    """A backend service's Celery app: the broker and, as result backend, the same Redis."""
    app = Celery(
        "backend-svc",
        broker=redis_server.role_url(Role.PRODUCER),
        backend=redis_server.role_url(Role.PRODUCER),
        set_as_current=False,
    )
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    yield app
    app.close()


# ``disable_sync_subtasks=False`` on every ``.get()``: the in-process worker marks this process as
# one that runs tasks, and Celery then refuses a blocking ``get`` (a backend service's process is not
# a worker, and needs no such flag).


def send(app: Celery, call_uuid: str, **options: object) -> str:
    """``send_task`` as any Celery client does; returns the task id."""
    return str(app.send_task(TASK_NAME, kwargs={"call_uuid": call_uuid}, queue=QUEUE, **options).id)


def scheduled(producer, call_uuid: str, task_id: str):
    """Wait until the stop is in recstop's schedule under the message's own task id."""
    return wait_for(
        lambda: (r := producer.status(call_uuid)) and r.state == "scheduled" and r.task_id == task_id and r,
        what=f"{task_id} to be scheduled",
    )


def test_countdown_becomes_a_durable_scheduled_stop_with_the_same_task_id(
    producer, start_worker, client_app, call, sandbox_client, redis_server
):
    """apply_async(countdown=) is moved into the schedule at once: no message held, stopped when due."""
    start_worker()
    call_uuid = call()
    sent_at = time.time()
    task_id = send(client_app, call_uuid, countdown=1.5)
    record = scheduled(producer, call_uuid, task_id)
    assert record.due_at == pytest.approx(sent_at + 1.5, abs=0.5)
    client = redis_server.client()
    assert client.llen(QUEUE) + in_flight(client) == 0  # in no worker's memory, in no queue: scheduled
    assert client_app.AsyncResult(task_id).state == "PENDING"
    result = client_app.AsyncResult(task_id).get(timeout=15, disable_sync_subtasks=False)
    assert result["state"] == "stopped"
    done = final(producer, call_uuid)
    assert done.task_id == task_id
    assert done.first_attempt_at >= record.due_at - 0.01
    assert len(deletes(sandbox_client, call_uuid)) == 1
    # date_done is Redis' clock when the outcome was recorded, as Celery reads it (timezone-aware).
    date_done = client_app.AsyncResult(task_id).date_done
    assert date_done.tzinfo is not None
    assert date_done.timestamp() == pytest.approx(done.finished_at, abs=0.01)


def test_raw_envelope_with_a_timezone_less_eta_is_read_as_utc(producer, start_worker, call, redis_server):
    """The documented envelope with a naive ``eta`` header (UTC, as Celery reads it) is delayed to it."""
    start_worker()
    call_uuid = call()
    message, task_id = fill(readme_message(), {"call_uuid": call_uuid})
    envelope = json.loads(message)
    eta = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1.5)
    envelope["headers"]["eta"] = eta.isoformat()
    redis_server.client().lpush(QUEUE, json.dumps(envelope))
    record = scheduled(producer, call_uuid, task_id)
    assert record.due_at == pytest.approx(eta.replace(tzinfo=UTC).timestamp(), abs=0.01)
    assert final(producer, call_uuid).state == "stopped"


def test_expires_is_not_after_and_an_expired_stop_is_dead_lettered_with_its_reason(
    producer, start_worker, client_app, call, sandbox_client
):
    """An expiry before the eta, or already past: dead (deadline) in status, dead letters and the result."""
    start_worker()
    late, past = call(), call()
    now = datetime.now(UTC)
    late_id = send(client_app, late, eta=now + timedelta(seconds=1), expires=now + timedelta(seconds=0.5))
    past_id = send(client_app, past, expires=now - timedelta(seconds=1))
    for call_uuid, task_id in ((late, late_id), (past, past_id)):
        record = final(producer, call_uuid)
        assert (record.state, record.dead_reason, record.task_id) == ("dead", "deadline", task_id)
        with pytest.raises(StopDead, match="deadline"):
            client_app.AsyncResult(task_id).get(timeout=10, disable_sync_subtasks=False)
        assert deletes(sandbox_client, call_uuid) == []
    reasons = {(e.task_id, e.reason) for e in producer.dead_letters.list()}
    assert reasons == {(late_id, "deadline"), (past_id, "deadline")}


def test_results_say_retry_while_waiting_then_success_and_failure_raises_stop_dead(
    producer, start_worker, client_app, call, sandbox_client
):
    """AsyncResult agrees with recstop status: RETRY between attempts, SUCCESS, FAILURE for a 403."""
    start_worker(RECSTOP_BACKOFF_BASE_S="1.5")
    flaky, refused = call(), call()
    sandbox_client.set_faults(
        [
            {"kind": "status", "status": 503, "call_uuid": flaky, "times": 1},
            {"kind": "status", "status": 403, "call_uuid": refused},
        ]
    )
    flaky_id, refused_id = send(client_app, flaky), send(client_app, refused)
    waiting = client_app.AsyncResult(flaky_id)
    wait_for(lambda: waiting.state == "RETRY", what="RETRY while the retry waits")
    assert producer.status(flaky).state == "retrying"
    assert waiting.get(timeout=15, disable_sync_subtasks=False) == {
        "state": "stopped",
        "detail": "",
        "attempt": 2,
        "http_status": 204,
    }
    with pytest.raises(StopDead, match="http_403"):
        client_app.AsyncResult(refused_id).get(timeout=10, disable_sync_subtasks=False)
    assert client_app.AsyncResult(refused_id).state == "FAILURE"
    assert producer.status(refused).state == "dead"


def test_revoke_of_a_scheduled_stop_and_of_a_stop_not_yet_sent_cancels_them(
    producer, start_worker, client_app, call, sandbox_client
):
    """app.control.revoke cancels a delayed stop (status, REVOKED result) and one revoked before sending."""
    start_worker()
    later, early = call(), call()
    later_id = send(client_app, later, countdown=30)
    scheduled(producer, later, later_id)
    replies = client_app.control.revoke(later_id, reply=True, timeout=5)
    assert any(f"{later_id}: cancelled" in r["ok"] for reply in replies for r in reply.values())
    assert producer.status(later).state == "cancelled"
    with pytest.raises(TaskRevokedError):
        client_app.AsyncResult(later_id).get(timeout=5, disable_sync_subtasks=False)
    early_id = str(uuid.uuid4())
    replies = client_app.control.revoke(early_id, reply=True, timeout=5, terminate=True)
    answers = [r["ok"] for reply in replies for r in reply.values()]
    assert any("not received yet" in a and "terminate ignored" in a for a in answers)
    client_app.send_task(TASK_NAME, kwargs={"call_uuid": early}, queue=QUEUE, task_id=early_id)
    assert final(producer, early).state == "cancelled"
    assert client_app.AsyncResult(early_id).state == "REVOKED"
    assert deletes(sandbox_client, later) + deletes(sandbox_client, early) == []
    # The worker above ran in this process: Celery's own registry, which any other app here uses,
    # still holds Celery's revoke; only recstop's mailbox answers with recstop's.
    assert Panel.data["revoke"] is celery_revoke


def celery_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Celery's own command line against the worker app, as a process."""
    exe = str(Path(sys.executable).parent / "celery")
    return subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [exe, "-A", "recstop.worker", *args],
        env={**os.environ, **env, "RECSTOP_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_celery_cli_call_and_revoke_survive_every_worker_being_killed_and_restarted(
    env, producer, start_worker_process, client_app, call, sandbox_client
):
    """`celery call --countdown` then `celery control revoke`, SIGKILL and a new worker: never a DELETE."""
    first = start_worker_process()
    revoked, marker = call(), call()
    called = celery_cli(
        env, "call", TASK_NAME, "--kwargs", json.dumps({"call_uuid": revoked}), "--countdown", "4"
    )
    assert called.returncode == 0, called.stderr
    task_id = called.stdout.strip().splitlines()[-1]
    scheduled(producer, revoked, task_id)
    answer = celery_cli(env, "control", "revoke", task_id)
    assert answer.returncode == 0, answer.stderr
    assert f"{task_id}: cancelled" in answer.stdout
    first.kill()
    start_worker_process("second")
    # A stop due after the revoked one's due time: once it is stopped, that time has passed with a
    # worker and its scheduler running.
    producer.stop_recording(marker, delay=5)
    assert final(producer, marker, timeout_s=30).state == "stopped"
    assert producer.status(revoked).state == "cancelled"
    assert deletes(sandbox_client, revoked) == []
    assert client_app.AsyncResult(task_id).state == "REVOKED"


def test_messages_that_join_a_pending_stop_share_its_result_and_a_revoke_of_one_says_so(
    producer, start_worker, client_app, call, sandbox_client
):
    """Three clients stop one call: one DELETE, three SUCCESS results; revoking a joiner cancels nothing."""
    start_worker()
    call_uuid = call()
    first = send(client_app, call_uuid, countdown=30)
    scheduled(producer, call_uuid, first)
    later = send(client_app, call_uuid, countdown=60)  # deduplicated into the first, in the schedule
    wait_for(lambda: producer.status(call_uuid).joined == (later,), what="the later message to join")
    replies = client_app.control.revoke(later, reply=True, timeout=5)
    assert any(f"joined the pending stop of task {first}" in r["ok"] for rep in replies for r in rep.values())
    assert producer.status(call_uuid).state == "scheduled"
    now = send(client_app, call_uuid)  # joins too, and pulls the stop forward: it runs now
    results = [
        client_app.AsyncResult(t).get(timeout=15, disable_sync_subtasks=False) for t in (first, later, now)
    ]
    assert [r["state"] for r in results] == ["stopped"] * 3
    assert final(producer, call_uuid).task_id == first
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_a_delayed_message_of_a_request_already_done_gets_that_stops_result(
    producer, start_worker, client_app, call, sandbox_client
):
    """The same request_id sent again with a countdown, after the stop: SUCCESS at once, no second DELETE."""
    start_worker()
    call_uuid = call()
    kwargs = {"call_uuid": call_uuid, "request_id": "billing-42"}
    first = client_app.send_task(TASK_NAME, kwargs=kwargs, queue=QUEUE)
    assert first.get(timeout=15, disable_sync_subtasks=False)["state"] == "stopped"
    again = client_app.send_task(TASK_NAME, kwargs=kwargs, queue=QUEUE, countdown=30)
    result = again.get(timeout=15, disable_sync_subtasks=False)
    assert (result["state"], result["detail"]) == ("stopped", f"duplicate of {first.id}")
    assert final(producer, call_uuid).task_id == first.id
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_a_bulk_enqueue_sends_its_task_sent_events_as_one_group_celery_reads(producer, redis_server):
    """A bulk enqueue's task-sent events go out as one task.multi message; Celery's receiver reads each."""
    calls = [str(uuid.uuid4()) for _ in range(5)]
    seen: list[dict] = []
    # The receiver is what Flower runs: it connects as the monitoring user.
    watcher = Celery("watcher", broker=redis_server.role_url(Role.MONITOR), set_as_current=False)
    receiver = watcher.events.Receiver(watcher.connection_for_read(), handlers={"task-sent": seen.append})

    def capture() -> None:
        with contextlib.suppress(TimeoutError, OSError):
            receiver.capture(timeout=20, wakeup=False)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    monitor = redis_server.client()
    wait_for(lambda: monitor.pubsub_numpat() > 0, what="the event receiver to subscribe")
    before = monitor.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)
    handles = producer.stop_recordings(calls)
    wait_for(lambda: len(seen) >= len(calls), timeout_s=20, what="the task-sent events")
    receiver.should_stop = True
    thread.join(5)
    assert sorted(e["uuid"] for e in seen) == sorted(h.task_id for h in handles)
    assert {(e["name"], e["queue"]) for e in seen} == {(TASK_NAME, QUEUE)}
    assert monitor.info("commandstats")["cmdstat_publish"]["calls"] - before == 1
    watcher.close()
