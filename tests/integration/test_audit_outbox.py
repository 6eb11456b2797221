"""The audit outbox: every event of a stop's life is in the stream, written by the script that made it."""

from __future__ import annotations

import json

import pytest
from celery import Celery
from conftest import AUTH_ID, TOKEN
from support import as_role, final, wait_for

from recstop.producers import Producer
from recstop.worker.config.settings import Settings
from recstop.worker.state.acl import Role
from recstop.worker.state.keys import AUDIT_STREAM, QUEUE, TASK_NAME
from recstop.worker.state.redisclient import redis_client

pytestmark = pytest.mark.integration


def events(client, call_uuid: str) -> list[dict]:
    """The outbox events of one call, oldest first."""
    out = [json.loads(fields["e"]) for _, fields in client.xrange(AUDIT_STREAM)]
    return [e for e in out if e.get("call_uuid") == call_uuid.lower()]


def names(client, call_uuid: str) -> list[str]:
    """The event names of one call, oldest first."""
    return [e["event"] for e in events(client, call_uuid)]


def test_each_path_of_a_stop_leaves_its_events_and_never_a_token(
    producer, start_worker, call, sandbox_client, redis_server
):
    """Stopped, retried, dead and replayed, deduplicated, cancelled, settled: the trail says each."""
    start_worker()
    client = redis_server.client()
    plain, flaky, refused, later, settled = (call() for _ in range(5))
    sandbox_client.set_faults(
        [
            {"kind": "status", "status": 503, "call_uuid": flaky, "times": 1},
            {"kind": "status", "status": 403, "call_uuid": refused, "times": 1},
        ]
    )
    first = producer.stop_recording(plain, request_id="pci-1")
    producer.stop_recording(flaky)
    producer.stop_recording(refused)
    producer.stop_recording(later, delay=60)
    producer.stop_recording(later)  # pulls the delayed stop forward: deduplicated
    for call_uuid in (plain, flaky, refused, later):
        final(producer, call_uuid)
    producer.stop_recording(plain, request_id="pci-1")  # the same request again
    url = sandbox_client.start_recording(settled)  # a second recording, stopped by its own stop
    producer.stop_recording(settled, url=url, delay=60)
    producer.stop_recording(settled)
    wait_for(lambda: "settled" in names(client, settled), what="the URL stop settled by the stop-all")
    (replayed,) = producer.replay()
    final(producer, refused)

    assert names(client, plain) == ["accepted", "attempt", "stopped", "deduplicated"]
    accepted, attempt, stopped, dedup = events(client, plain)
    assert (accepted["origin"], accepted["request_id"], accepted["task_id"]) == (
        "python",
        "pci-1",
        first.task_id,
    )
    assert (attempt["attempt"], attempt["http_status"], stopped["attempt"]) == (1, 204, 1)
    assert dedup["reason"] == "duplicate_request"
    assert names(client, flaky) == ["accepted", "attempt", "retry_scheduled", "attempt", "stopped"]
    assert events(client, flaky)[2]["retry_in_s"] > 0
    assert names(client, refused) == ["accepted", "attempt", "dead", "replayed", "attempt", "stopped"]
    dead = events(client, refused)[2]
    assert (dead["reason"], dead["http_status"]) == ("http_403", 403)
    assert events(client, refused)[3]["task_id"] == replayed.task_id
    assert names(client, later)[:2] == ["accepted", "deduplicated"]
    assert names(client, later)[-1] in {"stopped", "already_stopped"}
    settled_event = next(e for e in events(client, settled) if e["event"] == "settled")
    assert (settled_event["url"], settled_event["reason"][:9]) == (url, "stop-all ")
    assert all(e["at"] > 0 for e in events(client, plain))
    assert TOKEN not in "".join(f["e"] for _, f in client.xrange(AUDIT_STREAM))


def test_a_cancel_is_one_event_and_the_outbox_stays_bounded_counting_what_it_dropped(env, call, redis_server):
    """A cancel records who cancelled; past RECSTOP_AUDIT_STREAM_MAX the oldest events go, counted."""
    client = redis_server.client()
    calls = [call() for _ in range(4)]
    settings = Settings.from_env({**as_role(env, Role.PRODUCER), "RECSTOP_AUDIT_STREAM_MAX": "3"})
    with Producer(settings, redis_client(settings.redis)) as small:
        for call_uuid in calls:
            small.stop_recording(call_uuid, delay=60)
        small.cancel(calls[-1])
    assert client.xlen(AUDIT_STREAM) == 3
    assert int(client.hget("recstop:metrics", "audit:dropped")) == 2
    last = json.loads(client.xrange(AUDIT_STREAM)[-1][1]["e"])
    assert (last["event"], last["reason"], last["call_uuid"]) == ("cancelled", "cancel", calls[-1])


def test_a_send_task_stop_names_the_account_it_ran_with_on_every_event(
    producer, start_worker, call, sandbox_client, redis_server
):
    """send_task without auth_id, now or with a countdown, dead then replayed: every event has the account."""
    start_worker()
    client = redis_server.client()
    refused, later = call(), call()
    sandbox_client.set_faults([{"kind": "status", "status": 403, "call_uuid": refused, "times": 1}])
    app = Celery("backend-svc", broker=redis_server.role_url(Role.PRODUCER), set_as_current=False)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)
    try:
        app.send_task(TASK_NAME, kwargs={"call_uuid": refused}, queue=QUEUE)
        app.send_task(TASK_NAME, kwargs={"call_uuid": later}, queue=QUEUE, countdown=0.5)
    finally:
        app.close()
    assert final(producer, refused).state == "dead"
    (replayed,) = producer.replay()
    assert replayed.error is None
    assert final(producer, refused).state == "stopped"
    assert final(producer, later).state == "stopped"

    assert names(client, refused) == ["accepted", "attempt", "dead", "replayed", "attempt", "stopped"]
    assert names(client, later) == ["accepted", "attempt", "stopped"]
    trail = events(client, refused) + events(client, later)
    assert [(e["event"], e.get("auth_id")) for e in trail] == [(e["event"], AUTH_ID) for e in trail]
    assert producer.status(refused).auth_id == AUTH_ID
