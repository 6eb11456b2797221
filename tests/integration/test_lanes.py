"""Urgent lane, bulk enqueues (API and CLI), and the shared rate limit, end to end with real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import AUTH_ID
from support import cli, final, wait_for

from recstop.producers import StopSpec
from recstop.worker.model.errors import InvalidStopRequest
from recstop.worker.run.scheduler import Scheduler

pytestmark = pytest.mark.integration


def _arrivals(sandbox_client) -> dict[str, float]:
    """call_uuid → time of its first 204 at the sandbox."""
    seen: dict[str, float] = {}
    for entry in sandbox_client.requests():
        if entry["status"] == 204:
            seen.setdefault(entry["call_uuid"], entry["time"])
    return seen


def test_urgent_stop_overtakes_a_routine_backlog(start_worker, producer, sandbox_client):
    """An urgent stop is served before a 60-stop routine backlog that one slow worker thread drains."""
    sandbox_client.configure(auto_calls=True)
    sandbox_client.set_faults([], latency_ms=50)
    start_worker(RECSTOP_CONCURRENCY="1")
    backlog = [str(uuid.uuid4()) for _ in range(60)]
    producer.stop_recordings(backlog)
    wait_for(lambda: len(_arrivals(sandbox_client)) >= 3, timeout_s=20, what="the backlog to start")
    urgent = str(uuid.uuid4())
    assert producer.stop_recording(urgent, urgent=True).state == "queued"
    wait_for(lambda: urgent in _arrivals(sandbox_client), timeout_s=20, what="the urgent stop")
    arrivals = _arrivals(sandbox_client)
    overtaken = sum(1 for call in backlog if call not in arrivals or arrivals[call] > arrivals[urgent])
    assert overtaken >= 50, f"urgent stop waited behind {60 - overtaken} routine stops"
    assert final(producer, urgent).state == "stopped"


def test_urgent_joins_a_pending_routine_stop_and_deletes_once(
    start_worker, producer, sandbox_client, call, redis_server
):
    """An urgent stop for a recording already queued routinely reuses that run: one DELETE in all."""
    call_uuid = call()
    routine = producer.stop_recording(call_uuid)
    urgent = producer.stop_recording(call_uuid, urgent=True)
    assert (urgent.task_id, urgent.deduplicated) == (routine.task_id, True)
    start_worker()
    assert final(producer, call_uuid).state == "stopped"
    producer.stop_recording(str(uuid.uuid4()))  # a later stop: once it is done, both copies were consumed
    wait_for(
        lambda: redis_server.client().llen("recstop") + redis_server.client().llen("recstop.urgent") == 0,
        timeout_s=20,
    )
    deletes = [r for r in sandbox_client.requests(call_uuid=call_uuid) if r["method"] == "DELETE"]
    assert len(deletes) == 1


def test_delayed_urgent_stop_goes_to_the_urgent_lane_when_due(producer, redis_server):
    """An urgent stop scheduled for later is recorded urgent and published onto recstop.urgent when due."""
    call_uuid = str(uuid.uuid4())
    assert producer.stop_recording(call_uuid, urgent=True, delay=0.3).state == "scheduled"
    assert producer.status(call_uuid).urgent is True
    scheduler = Scheduler(producer.store.schedule, poll_s=0.05)
    wait_for(lambda: scheduler.run_once()[0] == 1, timeout_s=10, what="the stop to be due and published")
    assert (redis_server.client().llen("recstop.urgent"), redis_server.client().llen("recstop")) == (1, 0)


def test_cli_urgent_flag_uses_the_urgent_lane(env, redis_server):
    """`recstop enqueue --urgent` puts the message on recstop.urgent, not on the routine queue."""
    call_uuid = str(uuid.uuid4())
    result = cli(env, "enqueue", call_uuid, "--urgent", "--json")
    assert result.returncode == 0, result.stderr
    assert (redis_server.client().llen("recstop.urgent"), redis_server.client().llen("recstop")) == (1, 0)
    message = json.loads(redis_server.client().lindex("recstop.urgent", 0))
    assert message["properties"]["delivery_info"]["routing_key"] == "recstop.urgent"
    assert message["headers"]["id"] == json.loads(result.stdout)["task_id"]


def test_bulk_enqueue_deduplicates_and_workers_stop_all(start_worker, producer, sandbox_client):
    """stop_recordings: 450 stops (50 repeated) → 400 runs, each stopped by exactly one DELETE."""
    sandbox_client.configure(auto_calls=True)
    calls = [str(uuid.uuid4()) for _ in range(400)]
    handles = producer.stop_recordings([*calls, *calls[:50]], chunk_size=64)
    assert len(handles) == 450
    assert sum(h.deduplicated for h in handles) == 50
    assert [h.task_id for h in handles[400:]] == [h.task_id for h in handles[:50]]
    start_worker()
    wait_for(lambda: len(_arrivals(sandbox_client)) == 400, timeout_s=60, what="400 stops")
    assert len([r for r in sandbox_client.requests() if r["method"] == "DELETE"]) == 400


def test_bulk_refuses_everything_when_one_item_is_bad(producer, redis_server):
    """One malformed item names its position and nothing at all is enqueued."""
    good = [str(uuid.uuid4()) for _ in range(5)]
    with pytest.raises(InvalidStopRequest, match=r"stops\[3\]\.call_uuid"):
        producer.stop_recordings([*good[:3], "not a uuid/../x", *good[3:]])
    with pytest.raises(InvalidStopRequest, match=r"stops\[1\]\.url"):
        producer.stop_recordings([good[0], StopSpec(good[1], url="ftp://x")])
    assert redis_server.client().dbsize() == 0


def test_cli_file_enqueues_every_line_with_a_progress_bar(env, tmp_path, redis_server):
    """`recstop enqueue --file` reads call_uuids (blank lines skipped), reports counts, shows progress."""
    calls = [str(uuid.uuid4()) for _ in range(300)]
    path = tmp_path / "calls.txt"
    path.write_text("\n".join([*calls, "", calls[0]]) + "\n", encoding="utf-8")
    result = cli(env, "enqueue", "--file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"enqueued": 300, "deduplicated": 1}
    assert "301/301" in result.stderr
    assert redis_server.client().llen("recstop") == 300


def test_cli_file_with_a_bad_line_exits_2_and_enqueues_nothing(env, redis_server, tmp_path):
    """A bad line is a usage error naming it; no stop of the file is stored."""
    path = tmp_path / "calls.txt"
    path.write_text(f"{uuid.uuid4()}\nnot-a-uuid!\n", encoding="utf-8")
    result = cli(env, "enqueue", "--file", str(path))
    assert result.returncode == 2
    assert "line 2: call_uuid" in result.stderr
    assert redis_server.client().dbsize() == 0


def test_cli_reads_call_uuids_from_stdin(env, redis_server):
    """`--file -` reads standard input."""
    calls = [str(uuid.uuid4()) for _ in range(20)]
    exe = str(Path(sys.executable).parent / "recstop")
    result = subprocess.run(
        [exe, "enqueue", "--file", "-", "--no-progress"],
        input="\n".join(calls),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "enqueued 20, deduplicated 0"
    assert result.stderr == ""
    assert redis_server.client().llen("recstop") == 20


def test_shared_rate_limit_holds_across_two_workers(
    start_worker_process, producer, sandbox_client, redis_server
):
    """Two worker processes with RECSTOP_RATE_LIMIT_RPS=20 against an API enforcing 20/s: no 429, paced."""
    sandbox_client.configure(auto_calls=True, rate_limit_rps=20, rate_limit_burst=2)
    for name in ("a", "b"):
        start_worker_process(name, RECSTOP_RATE_LIMIT_RPS="20")
    calls = [str(uuid.uuid4()) for _ in range(60)]
    producer.stop_recordings(calls)
    wait_for(lambda: len(_arrivals(sandbox_client)) == 60, timeout_s=30, what="60 stops")
    times = sorted(_arrivals(sandbox_client).values())
    assert sandbox_client.rate_limited() == 0
    assert times[-1] - times[0] >= 59 / 20 * 0.9  # paced at 20/s, not in a burst
    assert redis_server.client().hget(f"recstop:rate:{AUTH_ID}", "tat") is not None


def test_a_429_slows_the_shared_limit_down(start_worker, producer, sandbox_client, redis_server):
    """When the API's real limit is lower than configured, its 429s lower the shared rate."""
    sandbox_client.configure(auto_calls=True, rate_limit_rps=10, rate_limit_burst=1)
    start_worker(RECSTOP_RATE_LIMIT_RPS="40")
    producer.stop_recordings([str(uuid.uuid4()) for _ in range(40)])
    wait_for(lambda: sandbox_client.rate_limited() > 0, timeout_s=20, what="a 429")
    wait_for(
        lambda: float(redis_server.client().hget(f"recstop:rate:{AUTH_ID}", "rate") or 40) < 40,
        timeout_s=20,
        what="the shared rate to drop",
    )
    wait_for(lambda: len(_arrivals(sandbox_client)) == 40, timeout_s=60, what="every stop, retried")
