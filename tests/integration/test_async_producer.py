"""``AsyncProducer``: ``Producer``'s operations, results and errors, and an event loop that keeps going.

The operations run against the test's redis-server, an in-process worker and the sandbox. The last
tests run the ASGI service of ``bench/webservice.py`` under a real uvicorn process: with Redis hung
(SIGSTOP), the service keeps answering its other endpoint.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from support import ROOT, as_role, final, free_port, terminate, wait_for

from bench.stats import percentile
from bench.webservice import load, request
from harness.sentinel import MASTER_NAME, SentinelCluster
from recstop.producers import (
    AsyncProducer,
    InvalidBulkItem,
    InvalidStopRequest,
    ProducerSettings,
    State,
    StopHandle,
    StopNotStoredError,
    StopOutcomeUnknownError,
    StopSpec,
    async_redis_client,
)
from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration


def async_producer(env: dict[str, str], **overrides: str) -> AsyncProducer:
    """An async producer for the test's stack (create it inside the running loop)."""
    settings = ProducerSettings.from_env({**as_role(env, Role.PRODUCER), **overrides})
    return AsyncProducer(settings, async_redis_client(settings.redis))


def test_every_operation_matches_the_threaded_producer(env, producer, start_worker, call):
    """stop_recording, a request_id repeat, stop_recordings, cancel, status, replay: the same results."""
    start_worker()
    calls = [call() for _ in range(4)]

    async def scenario() -> tuple[StopHandle, StopHandle, list[StopHandle]]:
        async with async_producer(env) as aio:
            first = await aio.stop_recording(calls[0], request_id="req-a1")
            bulk = await aio.stop_recordings(
                [calls[1], StopSpec(calls[2], request_id="req-a2")], chunk_size=1
            )
            return first, await aio.stop_recording(calls[0], request_id="req-a1"), bulk

    first, repeat, bulk = asyncio.run(scenario())
    assert isinstance(first.state, State)
    assert (first.state, first.deduplicated) == (State.QUEUED, False)
    assert repeat.task_id == first.task_id
    assert repeat.deduplicated
    assert [h.call_uuid for h in bulk] == calls[1:3]
    for call_uuid in calls[:3]:
        assert final(producer, call_uuid).state is State.STOPPED

    async def cancel_and_status() -> tuple[object, object, object]:
        async with async_producer(env) as aio:
            await aio.stop_recording(calls[3], delay=60)
            cancelled = await aio.cancel(calls[3])
            return cancelled, await aio.status(calls[3]), await aio.status(calls[0])

    cancelled, record, done = asyncio.run(cancel_and_status())
    assert (cancelled.state, cancelled.cancelled) == (State.CANCELLED, True)  # type: ignore[attr-defined]
    assert record == producer.status(calls[3])
    assert done == producer.status(calls[0])


def test_replay_and_bad_input_as_the_threaded_producer(env, producer, start_worker, sandbox_client, call):
    """A 403 dead letter replayed by the async producer stops; bad items are refused before sending."""
    start_worker()
    call_uuid = call()
    sandbox_client.set_faults([{"kind": "status", "status": 403, "times": 1, "call_uuid": call_uuid}])
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state is State.DEAD

    async def scenario() -> list[object]:
        async with async_producer(env) as aio:
            results: list[object] = list(await aio.replay())
            for bad in (lambda: aio.stop_recording("not-a-uuid"), lambda: aio.stop_recordings([call(), "x"])):
                try:
                    await bad()
                except InvalidStopRequest as exc:
                    results.append(exc)
            return results

    replayed, bad_one, bad_bulk = asyncio.run(scenario())
    assert replayed.error is None  # type: ignore[attr-defined]
    assert final(producer, call_uuid).state is State.STOPPED
    assert isinstance(bad_one, InvalidStopRequest)
    assert isinstance(bad_bulk, InvalidBulkItem)
    assert bad_bulk.index == 1


def test_refused_and_hung_redis_give_the_same_errors(env, redis_server):
    """Nothing listening: StopNotStoredError; SIGSTOP: StopOutcomeUnknownError after the socket timeout."""

    async def refused() -> None:
        async with async_producer(env, RECSTOP_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0") as aio:
            await aio.stop_recording(str(uuid.uuid4()))

    with pytest.raises(StopNotStoredError, match="connection refused"):
        asyncio.run(refused())

    async def hung() -> float:
        async with async_producer(env, RECSTOP_REDIS_SOCKET_TIMEOUT_S="0.3") as aio:
            await aio.stop_recording(str(uuid.uuid4()))
            redis_server.pause()
            started = time.monotonic()
            try:
                await aio.stop_recording(str(uuid.uuid4()))
            finally:
                redis_server.resume()
            return time.monotonic() - started

    with pytest.raises(StopOutcomeUnknownError, match="timed out"):
        asyncio.run(hung())


# --- under a real ASGI server ------------------------------------------------------------------


@pytest.fixture
def uvicorn_service(env: dict[str, str], tmp_path) -> Iterator[int]:
    """``bench.webservice:asgi_app`` under uvicorn (one process) on a free port, for the test's stack."""
    port = free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "bench.webservice:asgi_app", "--host", "127.0.0.1"),
            *("--port", str(port), "--lifespan", "on", "--no-access-log"),
        ],
        cwd=ROOT,
        env={**os.environ, **env, "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def answers() -> bool:
        try:
            return request(port, "GET", "/ping", timeout_s=1)[0] == 200
        except OSError:
            return False

    try:
        wait_for(answers, timeout_s=20, what="uvicorn to answer")
        yield port
    finally:
        terminate(proc)
        log.close()


def pings(port: int, count: int) -> list[float]:
    """Seconds each of ``count`` sequential GET /ping took."""
    return [request(port, "GET", "/ping", timeout_s=5)[2] for _ in range(count)]


def test_uvicorn_keeps_answering_while_redis_hangs(
    redis_server, uvicorn_service, producer, start_worker, call
):
    """Enqueues through uvicorn stop their calls; with Redis hung, /ping still answers within 0.5 s."""
    port = uvicorn_service
    start_worker()
    calls = [call() for _ in range(5)]
    healthy = load(port, [f"/stop?call_uuid={c}&request_id=web-{c[:8]}" for c in calls], threads=5)
    assert [status for status, _, _ in healthy] == [200] * 5
    for call_uuid in calls:
        assert final(producer, call_uuid).state is State.STOPPED
    timed = load(port, [f"/stop?call_uuid={uuid.uuid4()}" for _ in range(300)], threads=4)
    enqueue_s = [body["enqueue_ms"] / 1000 for _, _, body in timed]
    idle = pings(port, 100)

    redis_server.pause()
    hanging: dict[str, tuple[int, dict[str, object], float]] = {}

    def stop(call_uuid: str) -> None:
        hanging[call_uuid] = request(port, "POST", f"/stop?call_uuid={call_uuid}")

    senders = [threading.Thread(target=stop, args=(str(uuid.uuid4()),)) for _ in range(20)]
    try:
        for sender in senders:
            sender.start()
        wait_for(
            lambda: request(port, "GET", "/inflight")[1]["inflight"] == 20, what="20 stops waiting on Redis"
        )
        during = pings(port, 100)
        for sender in senders:
            sender.join(10)
    finally:
        redis_server.resume()
    assert max(during) < 0.5
    assert sorted({status for status, _, _ in hanging.values()}) == [503]
    errors = {call_uuid: body["error"] for call_uuid, (_, body, _) in hanging.items()}
    assert set(errors.values()) <= {"StopOutcomeUnknownError", "StopNotStoredError"}
    assert "StopOutcomeUnknownError" in errors.values()  # the calls that held a connection had sent
    assert [c for c, error in errors.items() if error == "StopNotStoredError" and producer.status(c)] == []
    print(
        f"\nuvicorn + AsyncProducer: enqueue p50 {percentile(enqueue_s, 50) * 1000:.2f} ms, "
        f"p99 {percentile(enqueue_s, 99) * 1000:.2f} ms (inside the service, 4 client threads); "
        f"/ping p99 idle {percentile(idle, 99) * 1000:.2f} ms, while Redis hangs with 20 stops "
        f"waiting {percentile(during, 99) * 1000:.2f} ms (max {max(during) * 1000:.2f} ms)"
    )


def test_async_wait_shortfall_is_an_unknown_outcome(env, redis_server):
    """WAIT 1 with no replica, through the async pipeline: StopOutcomeUnknownError; the master holds it."""
    call_uuid = str(uuid.uuid4())

    async def enqueue() -> None:
        async with async_producer(
            env, RECSTOP_REDIS_WAIT_REPLICAS="1", RECSTOP_REDIS_WAIT_TIMEOUT_MS="100"
        ) as aio:
            await aio.stop_recording(call_uuid)

    with pytest.raises(StopOutcomeUnknownError, match=r"held by 0 replica\(s\)"):
        asyncio.run(enqueue())
    client = redis_server.client()
    assert client.exists(f"recstop:call:{call_uuid}")
    client.close()


def test_async_producer_through_sentinel_waits_for_the_replica(env, tmp_path):
    """A sentinel:// URL: the async client finds the master; WAIT 1 is met by the live replica."""
    cluster = SentinelCluster(tmp_path / "ha", sentinels=1).start()  # finding the master needs one
    try:
        sentinel_env = {
            "RECSTOP_BROKER_URL": cluster.url,
            "RECSTOP_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "RECSTOP_REDIS_WAIT_REPLICAS": "1",
        }
        call_uuid = str(uuid.uuid4())

        async def enqueue() -> StopHandle:
            async with async_producer(env, **sentinel_env) as aio:
                return await aio.stop_recording(call_uuid)

        handle = asyncio.run(enqueue())
        assert (handle.state, handle.deduplicated) == (State.QUEUED, False)
        for node in (cluster.master, cluster.replica):
            client = node.client()
            assert client.exists(f"recstop:call:{call_uuid}")
            client.close()
    finally:
        cluster.stop()
