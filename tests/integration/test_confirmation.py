"""After a stop, Vobiz's own word that the recordings ended: status, Celery result, audit trail, metrics."""

from __future__ import annotations

import json
import uuid

import pytest
from celery import Celery
from conftest import AUTH_ID, TOKEN
from support import as_role, cli, final, wait_for

from harness.auditsink import AuditSinkProcess
from recstop.worker.config.settings import Settings
from recstop.worker.model.status import iso
from recstop.worker.model.vocabulary import Confirmation
from recstop.worker.run.runtime import build_runtime
from recstop.worker.state import keys
from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration

#: Confirmation on, as shipped, with lookups spaced for a test: 0.2 s, then 0.4 s ..., at most 1 s apart.
CONFIRM = {
    "RECSTOP_CONFIRM": "true",
    "RECSTOP_CONFIRM_BACKOFF_BASE_S": "0.2",
    "RECSTOP_CONFIRM_BACKOFF_CAP_S": "1",
}


def confirmed(producer, call_uuid, url=None, timeout_s=20.0):
    """Wait until the stop's confirmation has settled; its status record."""

    def settled():
        record = producer.status(call_uuid, url)
        ok = record is not None and record.confirmation not in (None, Confirmation.PENDING)
        return record if ok else None

    return wait_for(settled, timeout_s=timeout_s, what=f"the confirmation of {call_uuid}")


def lookups(sandbox_client, call_uuid):
    """The Recordings API requests the sandbox received for a call."""
    return sandbox_client.requests(call_uuid=call_uuid, endpoint="recordings")


def audit_events(client, call_uuid):
    """The audit outbox's events of one call, oldest first."""
    found = [json.loads(fields["e"]) for _, fields in client.xrange(keys.AUDIT_STREAM)]
    return [event for event in found if event.get("call_uuid") == call_uuid]


def test_a_stopped_recording_is_confirmed_ended_with_what_vobiz_reports(
    producer, start_worker, sandbox_client, redis_server
):
    """The one recording a URL stop covered: its id, start, end and URL, in the record, result and trail."""
    start_worker(**CONFIRM)
    created = sandbox_client.new_call(AUTH_ID, recordings=2)
    call_uuid, (url, other) = created["call_uuid"], created["recordings"]
    handle = producer.stop_recording(call_uuid, url)
    record = confirmed(producer, call_uuid, url)
    assert record.state == "stopped"
    assert record.confirmation == Confirmation.CONFIRMED
    (recording,) = record.recordings
    listed = {r["url"]: r for r in sandbox_client.recordings(call_uuid)}
    assert recording["recording_url"] == url
    assert recording["recording_id"] == listed[url]["recording_id"]
    assert recording["recording_end_ms"] == listed[url]["end_ms"]
    assert 0 <= recording["ended_after_ms"] < 5000
    assert record.ended_after_ms == recording["ended_after_ms"]
    assert listed[other]["active"]  # the stop covered one recording: the other still records
    client = redis_server.client()
    result = json.loads(client.get(keys.result_key(handle.task_id)))
    assert result["status"] == "SUCCESS"
    assert result["result"]["confirmation"] == "confirmed"
    assert result["result"]["recordings"] == list(record.recordings)
    names = [e["event"] for e in audit_events(client, call_uuid)]
    assert names[-1] == "recording_confirmed"
    (event,) = [e for e in audit_events(client, call_uuid) if e["event"] == "recording_confirmed"]
    assert (event["url"], event["recording_end_ms"]) == (url, recording["recording_end_ms"])
    counted = client.hgetall(keys.METRICS)
    assert counted[keys.counter(keys.Counter.CONFIRMATIONS, "confirmed")] == "1"
    assert counted[keys.Counter.ENDED_AFTER_COUNT] == "1"
    assert int(counted[keys.Counter.LOOKUPS]) == record.confirm_lookups


def test_a_stop_all_covers_every_recording_of_the_call_over_two_pages(producer, start_worker, sandbox_client):
    """150 recordings: one lookup reads both pages (limit 100), and all 150 are confirmed ended."""
    start_worker(**CONFIRM)
    call_uuid = sandbox_client.new_call(AUTH_ID, recordings=100)["call_uuid"]
    for _ in range(50):
        sandbox_client.start_recording(call_uuid)
    producer.stop_recording(call_uuid)
    record = confirmed(producer, call_uuid)
    assert record.confirmation == Confirmation.CONFIRMED
    assert len(record.recordings) == 150
    assert all(r["recording_end_ms"] is not None for r in record.recordings)
    offsets = sorted(r["path"].split("offset=")[1].split("&")[0] for r in lookups(sandbox_client, call_uuid))
    assert offsets.count("100") == record.confirm_lookups  # every lookup read the second page
    assert offsets.count("0") == record.confirm_lookups


def test_a_recording_not_finalized_yet_is_looked_up_again_until_it_is(
    producer, start_worker, sandbox_client, call
):
    """With finalization 1.5 s after the stop, the first lookups see no end; a later one confirms it."""
    start_worker(**CONFIRM)
    sandbox_client.set_finalize_delay(1.5)
    call_uuid = call()
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).confirmation == Confirmation.PENDING
    record = confirmed(producer, call_uuid)
    assert record.confirmation == Confirmation.CONFIRMED
    assert record.confirm_lookups >= 2
    assert len(lookups(sandbox_client, call_uuid)) == record.confirm_lookups


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "status", "status": 403, "endpoint": "recordings"}, "http_403"),
        ({"kind": "status", "status": 401, "endpoint": "recordings"}, "http_401"),
        ({"kind": "answer", "answer": "html"}, "bad_answer"),
        ({"kind": "answer", "answer": "truncated"}, "bad_answer"),
        ({"kind": "answer", "answer": "end_before_start"}, "bad_answer"),
        ({"kind": "answer", "answer": "old_shape"}, "no_end_time"),
        ({"kind": "answer", "answer": "never_finalized"}, "deadline"),
        ({"kind": "answer", "answer": "no_end_ms"}, "deadline"),
        ({"kind": "status", "status": 503, "endpoint": "recordings"}, "deadline"),
        ({"kind": "status", "status": 429, "endpoint": "recordings"}, "deadline"),
        ({"kind": "reset", "endpoint": "recordings"}, "deadline"),
        ({"kind": "hang", "hang_s": 5, "endpoint": "recordings"}, "deadline"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.get("answer", value["kind"]),
)
def test_each_bad_answer_ends_unconfirmed_with_its_reason_and_the_worker_goes_on(
    producer, start_worker, sandbox_client, call, logs, fault, reason
):
    """A bad answer never fails the stop: stopped, unconfirmed with the reason; the next stop confirms."""
    start_worker(**CONFIRM, RECSTOP_CONFIRM_DEADLINE_S="2")
    bad, good = call(), call()
    sandbox_client.add_faults([{**fault, "call_uuid": bad}])
    producer.stop_recording(bad)
    record = confirmed(producer, bad)
    assert (record.state, record.confirmation, record.confirm_reason) == ("stopped", "unconfirmed", reason)
    assert record.confirm_error
    producer.stop_recording(good)
    assert confirmed(producer, good).confirmation == Confirmation.CONFIRMED
    assert TOKEN not in json.dumps(record.to_dict())
    assert TOKEN not in logs.text()


def test_already_stopped_with_no_recording_listed_has_nothing_to_confirm(
    producer, start_worker, sandbox_client
):
    """A call recording nothing: the stop is already_stopped, and its confirmation nothing_listed."""
    start_worker(**CONFIRM)
    call_uuid = sandbox_client.create_call(AUTH_ID, str(uuid.uuid4()))
    producer.stop_recording(call_uuid)
    record = confirmed(producer, call_uuid)
    assert (record.state, record.confirmation, record.recordings) == ("already_stopped", "nothing_listed", ())


def test_a_recording_of_another_call_is_already_stopped_and_nothing_listed(
    producer, start_worker, sandbox_client
):
    """A URL the call never recorded: 404 (already stopped), and the call's list holds nothing to confirm."""
    start_worker(**CONFIRM)
    call_uuid = sandbox_client.new_call(AUTH_ID, recordings=1)["call_uuid"]
    elsewhere = sandbox_client.new_call(AUTH_ID, recordings=1)["recordings"][0]
    producer.stop_recording(call_uuid, elsewhere)
    record = confirmed(producer, call_uuid, elsewhere)
    assert (record.state, record.confirmation, record.confirm_reason) == (
        "already_stopped",
        "nothing_listed",
        None,
    )
    assert len(lookups(sandbox_client, call_uuid)) == 1


def test_confirmation_off_looks_nothing_up(producer, start_worker, sandbox_client, call):
    """RECSTOP_CONFIRM=false: no lookup, no confirmation field, the stop as before."""
    start_worker(**{**CONFIRM, "RECSTOP_CONFIRM": "false"})
    call_uuid = call()
    producer.stop_recording(call_uuid)
    record = final(producer, call_uuid)
    assert (record.state, record.confirmation) == ("stopped", None)
    assert lookups(sandbox_client, call_uuid) == []


def test_the_whole_path_on_real_processes_status_result_and_audit_trail(
    env, start_worker_process, sandbox_client, redis_server, producer, tmp_path
):
    """A worker process, `send_task`, then `recstop status --json`, AsyncResult and `recstop audit show`."""
    start_worker_process(**CONFIRM)
    created = sandbox_client.new_call(AUTH_ID, recordings=1)
    call_uuid, (url,) = created["call_uuid"], created["recordings"]
    client_app = Celery(
        "backend-svc",
        broker=redis_server.role_url(Role.PRODUCER),
        backend=redis_server.role_url(Role.PRODUCER),
        set_as_current=False,
    )
    try:
        task_id = client_app.send_task(
            keys.TASK_NAME, kwargs={"call_uuid": call_uuid, "url": url}, queue=keys.QUEUE
        ).id
        record = confirmed(producer, call_uuid, url)
        # disable_sync_subtasks=False: an in-process worker ran in this test process before (a backend
        # service is no worker and needs no such flag).
        result = client_app.AsyncResult(task_id).get(timeout=10, disable_sync_subtasks=False)
    finally:
        client_app.close()
    end_ms = sandbox_client.recordings(call_uuid)[0]["end_ms"]
    assert record.recordings[0]["recording_end_ms"] == end_ms
    assert (result["state"], result["confirmation"]) == ("stopped", "confirmed")
    assert result["recordings"] == list(record.recordings)

    shown = cli(env, "status", call_uuid, "--url", url, "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["confirmation"], status["recordings"][0]["recording_end_ms"]) == ("confirmed", end_ms)
    assert status["ended_after_ms"] == record.ended_after_ms
    listing = cli(env, "status", call_uuid, "--url", url).stdout
    assert "confirmation      confirmed" in listing
    assert f"recording         {url} ended " in listing

    audit_env = {**env, "RECSTOP_AUDIT_DB": f"sqlite:///{tmp_path / 'audit.db'}"}
    sink = AuditSinkProcess(as_role(audit_env, Role.AUDIT_SINK), tmp_path / "sink.log").start()
    try:
        wait_for(
            lambda: "recording_confirmed" in cli(audit_env, "audit", "show", call_uuid).stdout,
            timeout_s=30,
            what="the sink to store the confirmation",
        )
    finally:
        sink.stop()
    trail = cli(audit_env, "audit", "show", call_uuid).stdout
    names = [line.split()[1] for line in trail.splitlines()[1:]]
    assert names == ["accepted", "attempt", "stopped", "recording_confirmed"]
    assert f"ended {iso(end_ms / 1000)}" in trail


def test_no_lookup_starts_while_stops_wait_in_the_lanes(env, redis_server):
    """A message waiting in a lane means every worker is busy with stops: the confirmer claims nothing."""
    runtime = build_runtime(Settings.from_env({**env, **CONFIRM}))
    confirmer = runtime.confirmer()
    assert confirmer is not None
    client = redis_server.client()
    client.zadd(keys.CONFIRMS, {f"{uuid.uuid4()}/all": 1.0})  # due long ago
    client.lpush(keys.QUEUE, "a stop waiting for a worker")
    try:
        confirmer.run_once()
        assert client.zrange(keys.CONFIRMS, 0, -1, withscores=True)[0][1] == 1.0  # not claimed
        client.delete(keys.QUEUE)
        confirmer.run_once()
        assert client.zrange(keys.CONFIRMS, 0, -1, withscores=True) == []  # claimed: no such stop, dropped
    finally:
        runtime.close()
