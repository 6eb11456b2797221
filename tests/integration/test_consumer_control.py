"""Celery's ``cancel_consumer`` and ``add_consumer`` against a running worker process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery
from support import deletes, final, in_flight

from recstop.worker.state.acl import Role
from recstop.worker.state.keys import QUEUE

pytestmark = pytest.mark.integration


@pytest.fixture
def control_app(redis_server) -> Iterator[Celery]:
    """A Celery client of the test's Redis, for remote control commands."""
    app = Celery("control-client", broker=redis_server.role_url(Role.MONITOR), set_as_current=False)
    yield app
    app.close()


def answers(replies: list[dict[str, dict[str, str]]], worker: str) -> list[str]:
    """What ``worker`` (``<name>@<host>``) answered a broadcast command with ``reply=True``."""
    return [
        answer.get("ok", repr(answer))
        for reply in replies
        for name, answer in reply.items()
        if name.startswith(worker)
    ]


def test_a_cancelled_lane_keeps_its_stops_in_redis_and_added_back_stops_each_once(
    start_worker_process, producer, control_app, call, sandbox_client, redis_server
):
    """A cancelled lane: nothing taken from it, nothing lost; added back: each of its stops runs once."""
    start_worker_process("p1")
    client = redis_server.client()
    cancelled = control_app.control.cancel_consumer(QUEUE, reply=True, timeout=5)
    assert answers(cancelled, "p1@") == [f"no longer consuming from {QUEUE}"]
    routine = [call() for _ in range(5)]
    for call_uuid in routine:
        producer.stop_recording(call_uuid)
    queued = client.lrange(QUEUE, 0, -1)
    # Two urgent stops, queued after the routine ones and stopped: the worker fetched twice since.
    for _ in range(2):
        urgent = call()
        producer.stop_recording(urgent, urgent=True)
        assert final(producer, urgent).state == "stopped"
    assert (len(queued), client.lrange(QUEUE, 0, -1), in_flight(client)) == (5, queued, 0)  # untouched
    assert [producer.status(call_uuid).state for call_uuid in routine] == ["queued"] * 5
    assert [deletes(sandbox_client, call_uuid) for call_uuid in routine] == [[]] * 5
    added = control_app.control.add_consumer(QUEUE, reply=True, timeout=5)
    assert answers(added, "p1@") == [f"add consumer {QUEUE}"]
    assert [final(producer, call_uuid).state for call_uuid in routine] == ["stopped"] * 5
    assert [len(deletes(sandbox_client, call_uuid)) for call_uuid in routine] == [1] * 5
    assert (client.llen(QUEUE), in_flight(client)) == (0, 0)
