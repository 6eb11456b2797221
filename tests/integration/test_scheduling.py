"""Delayed stops, cancellation, duplicates from many processes, a slow worker, and the watchdog."""

from __future__ import annotations

import json
import multiprocessing
import time
from datetime import UTC, datetime, timedelta

import pytest
from support import as_role, deletes, final, in_flight, wait_for

from recstop.producers import Producer
from recstop.worker.config.settings import Settings
from recstop.worker.state import keys
from recstop.worker.state.acl import Role
from recstop.worker.state.redisclient import redis_client

pytestmark = pytest.mark.integration


def _enqueue_many(env, call_uuid, count, barrier, results):
    settings = Settings.from_env(as_role(env, Role.PRODUCER))
    with Producer(settings, redis_client(settings.redis)) as producer:
        barrier.wait(30)
        for _ in range(count):
            handle = producer.stop_recording(call_uuid)
            results.put((handle.task_id, handle.deduplicated))


def test_same_stop_enqueued_50_times_from_5_processes_deletes_once(
    env, start_worker, sandbox_client, call, producer
):
    """50 concurrent enqueues of one stop (5 processes) → one task id, 49 deduplicated, one DELETE."""
    start_worker()
    call_uuid = call()
    # The DELETE takes 1.5 s (under the 2 s read timeout), so the stop stays pending for the whole burst.
    sandbox_client.set_faults([{"kind": "latency", "latency_ms": 1500, "call_uuid": call_uuid}])
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(5), ctx.Queue()
    procs = [ctx.Process(target=_enqueue_many, args=(env, call_uuid, 10, barrier, results)) for _ in range(5)]
    for proc in procs:
        proc.start()
    handles = [results.get(timeout=60) for _ in range(50)]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert len({task_id for task_id, _ in handles}) == 1
    assert sum(1 for _, dedup in handles if not dedup) == 1
    assert final(producer, call_uuid).state == "stopped"
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_delayed_stop_runs_at_its_time_and_once(producer, start_worker, sandbox_client, call):
    """delay=2 → scheduled, then exactly one DELETE within 1 s of the due time."""
    start_worker()
    call_uuid = call()
    before = time.time()
    handle = producer.stop_recording(call_uuid, delay=2)
    assert handle.state == "scheduled"
    assert producer.status(call_uuid).state == "scheduled"
    record = final(producer, call_uuid)
    assert record.state == "stopped"
    [request] = deletes(sandbox_client, call_uuid)
    assert before + 2 <= request["time"] <= before + 3


def test_stop_at_a_time(producer, start_worker, sandbox_client, call):
    """at=<ISO time> → runs at that time."""
    start_worker()
    call_uuid = call()
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    producer.stop_recording(call_uuid, at=due.isoformat())
    assert final(producer, call_uuid).state == "stopped"
    [request] = deletes(sandbox_client, call_uuid)
    assert due.timestamp() <= request["time"] <= due.timestamp() + 1


def test_cancel_before_due_means_no_delete(producer, start_worker, sandbox_client, call):
    """A scheduled stop cancelled before it is due → state cancelled, no DELETE ever."""
    start_worker()
    call_uuid = call()
    producer.stop_recording(call_uuid, delay=1.5)
    result = producer.cancel(call_uuid)
    assert (result.state, result.cancelled) == ("cancelled", True)
    # Another stop on a different call, due later, proves the scheduler went past the cancelled one.
    other = call()
    producer.stop_recording(other, delay=2)
    final(producer, other)
    assert producer.status(call_uuid).state == "cancelled"
    assert deletes(sandbox_client, call_uuid) == []
    assert producer.cancel(call_uuid).cancelled is False


def test_enqueue_while_scheduled_is_deduplicated(producer, call):
    """A second enqueue of a scheduled stop returns the scheduled one."""
    call_uuid = call()
    first = producer.stop_recording(call_uuid, delay=60)
    second = producer.stop_recording(call_uuid)
    assert second.deduplicated
    assert second.task_id == first.task_id


def test_a_slow_worker_keeps_its_stop_however_long_it_holds_it(
    producer, start_worker_process, sandbox_client, call, redis_server
):
    """An API call longer than the consumer timeout is not redelivered to the other worker: one DELETE."""
    overrides = {"RECSTOP_CONSUMER_TIMEOUT_S": "1.5", "RECSTOP_READ_TIMEOUT_S": "5"}
    workers = [start_worker_process(**overrides), start_worker_process(**overrides)]
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "latency", "latency_ms": 3500, "call_uuid": call_uuid}])
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state == "stopped"
    assert len(deletes(sandbox_client, call_uuid)) == 1
    assert in_flight(redis_server.client()) == 0
    events = [r.get("event") for w in workers for r in w.log_records()]
    assert "consumer_reaped" not in events


def test_stop_now_pulls_a_scheduled_stop_forward(producer, start_worker, sandbox_client, call):
    """An immediate stop for a key scheduled an hour ahead runs now, under the scheduled task id."""
    start_worker()
    call_uuid = call()
    scheduled = producer.stop_recording(call_uuid, delay=3600)
    now = producer.stop_recording(call_uuid)
    assert (now.deduplicated, now.task_id, now.state) == (True, scheduled.task_id, "queued")
    record = final(producer, call_uuid)
    assert (record.state, record.task_id) == ("stopped", scheduled.task_id)
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_sooner_delay_moves_a_scheduled_stop_earlier(producer, call):
    """A second enqueue with an earlier time moves the scheduled stop up; a later one does not."""
    call_uuid = call()
    producer.stop_recording(call_uuid, delay=3600)
    producer.stop_recording(call_uuid, delay=600)
    due = producer.status(call_uuid).due_at
    producer.stop_recording(call_uuid, delay=1800)
    assert producer.status(call_uuid).due_at == due
    assert due - time.time() < 601


def test_message_lost_between_redis_and_worker_is_republished_by_the_watchdog(
    env, start_worker, sandbox_client, call, redis_server
):
    """A published message that vanishes from Redis (deleted, lost) is published again by the watchdog."""
    fast = {**env, "RECSTOP_WATCHDOG_S": "1"}
    settings = Settings.from_env(as_role(fast, Role.PRODUCER))
    call_uuid = call()
    with Producer(settings, redis_client(settings.redis)) as producer:
        handle = producer.stop_recording(call_uuid)
        client = redis_server.client()
        # A message gone while its stop is recorded as queued (an operator's DEL, a lost write).
        assert client.delete("recstop") == 1
        worker = start_worker(RECSTOP_WATCHDOG_S="1")
        record = final(producer, call_uuid, timeout_s=settings.watchdog_s + 15)
    assert (record.state, record.task_id) == ("stopped", handle.task_id)
    assert len(deletes(sandbox_client, call_uuid)) == 1
    republished = [r for r in worker.log_records() if r.get("event") == "stop_republished"]
    assert [(r["task_id"], r["times"]) for r in republished] == [(handle.task_id, 1)]
    assert client.hget("recstop:metrics", "watchdog_republishes") == "1"


def test_watchdog_stays_quiet_for_stops_that_finish(
    producer, start_worker, sandbox_client, call, redis_server
):
    """A finished stop leaves no schedule entry behind: its watchdog never fires, however long one waits."""
    start_worker(RECSTOP_WATCHDOG_S="0.3")
    call_uuid, later = call(), call()
    producer.stop_recording(call_uuid)
    final(producer, call_uuid)
    client = redis_server.client()
    wait_for(lambda: client.zcard("recstop:schedule") == 0, what="the schedule to empty")
    # A stop due 1.5 s from now (five watchdog periods) proves the scheduler kept running meanwhile.
    producer.stop_recording(later, delay=1.5)
    final(producer, later)
    assert client.hget(keys.METRICS, keys.Counter.WATCHDOG_REPUBLISHES) is None
    assert len(deletes(sandbox_client, call_uuid)) == 1
    assert "republished" not in json.loads(client.get(keys.call_key(call_uuid)))[keys.ALL_TARGET]
