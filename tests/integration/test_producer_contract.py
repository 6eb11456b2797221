"""The producer's error contract against real redis-servers: not stored, outcome unknown, misconfigured.

Each failure is made for real (nothing listens, SIGSTOP, a connection reset after the command
arrived, a missing replica, a full pool, Cluster, out of memory, a read-only replica, no Lua) and
the test checks both what the producer raised and what Redis holds afterwards.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RedisServer, free_port, wait_for

from recstop.producers import (
    BrokerMisconfiguredError,
    BrokerUnavailableError,
    ConfigError,
    Producer,
    ProducerSettings,
    StopNotStoredError,
    StopOutcomeUnknownError,
    redis_client,
)
from recstop.worker.state import keys
from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration


def producer_at(env: dict[str, str], url: str, **overrides: str) -> Producer:
    """A producer for ``url`` with the test's other settings (``overrides``: more variables)."""
    settings = ProducerSettings.from_env({**env, "RECSTOP_BROKER_URL": url, **overrides})
    return Producer(settings, redis_client(settings.redis))


def stored(server: RedisServer, call_uuid: str) -> bool:
    """Whether the server holds a stop record of the call."""
    client = server.client()
    try:
        return bool(client.exists(keys.call_key(call_uuid)))
    finally:
        client.close()


class ResetProxy:
    """A TCP relay to Redis that, once armed, resets the client's connection instead of relaying a reply.

    The command reaches Redis (and runs); its answer never comes back: a reset mid-call.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = threading.Event()
        self.resets = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """One thread per connection (a socket closed under another thread's recv sends no RST)."""
        with contextlib.suppress(OSError):
            while True:
                readable, _, _ = select.select([client, upstream], [], [])
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is upstream and self.armed.is_set():
                        self.armed.clear()
                        self.resets += 1
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        client.close()  # RST: the client reads ECONNRESET
                        upstream.close()
                        return
                    (client if source is upstream else upstream).sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[ResetProxy]:
    relay = ResetProxy(redis_server.port)
    yield relay
    relay.close()


def test_nothing_listening_is_not_stored_at_once(env):
    """Connection refused: StopNotStoredError (a BrokerUnavailableError) within milliseconds."""
    with producer_at(env, f"redis://127.0.0.1:{free_port()}/0") as producer:
        started = time.monotonic()
        with pytest.raises(StopNotStoredError, match=r"connection refused.*nothing was stored") as info:
            producer.stop_recording(str(uuid.uuid4()))
        assert time.monotonic() - started < 1.0
    assert isinstance(info.value, BrokerUnavailableError)


def test_a_hung_redis_is_an_unknown_outcome_and_a_retry_with_the_request_id_is_deduplicated(
    env, redis_server
):
    """SIGSTOP: StopOutcomeUnknownError after the socket timeout; the stop was in fact stored, once."""
    call_uuid = str(uuid.uuid4())
    with producer_at(
        env, redis_server.role_url(Role.PRODUCER), RECSTOP_REDIS_SOCKET_TIMEOUT_S="0.5"
    ) as producer:
        producer.stop_recording(str(uuid.uuid4()))  # a connection and the script loaded, as in a service
        redis_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(StopOutcomeUnknownError, match=r"timed out.*same request_id"):
                producer.stop_recording(call_uuid, request_id="order-7")
            assert 0.4 < time.monotonic() - started < 2.0
        finally:
            redis_server.resume()
        assert wait_for(lambda: stored(redis_server, call_uuid), what="the sent stop to be stored")
        first = producer.status(call_uuid)
        again = producer.stop_recording(call_uuid, request_id="order-7")
    assert first is not None
    assert (again.deduplicated, again.task_id) == (True, first.task_id)


def test_a_reset_after_the_command_arrived_is_an_unknown_outcome(env, redis_server, proxy):
    """ECONNRESET while waiting for the answer: StopOutcomeUnknownError, and the stop is stored."""
    call_uuid = str(uuid.uuid4())
    through = redis_server.role_url(Role.PRODUCER).replace(f":{redis_server.port}/", f":{proxy.port}/")
    with producer_at(env, through) as producer:
        producer.stop_recording(str(uuid.uuid4()))  # handshake done, script loaded: the next reply is ours
        proxy.armed.set()
        with pytest.raises(StopOutcomeUnknownError, match="may be stored"):
            producer.stop_recording(call_uuid, request_id="order-8")
        assert proxy.resets == 1
        assert stored(redis_server, call_uuid)
        assert producer.stop_recording(call_uuid, request_id="order-8").deduplicated


def test_a_replica_wait_shortfall_is_an_unknown_outcome_stored_on_the_master(env, redis_server):
    """WAIT 1 with no replica: StopOutcomeUnknownError naming the shortfall; the master holds the stop."""
    call_uuid = str(uuid.uuid4())
    wait = {"RECSTOP_REDIS_WAIT_REPLICAS": "1", "RECSTOP_REDIS_WAIT_TIMEOUT_MS": "100"}
    with (
        producer_at(env, redis_server.role_url(Role.PRODUCER), **wait) as producer,
        pytest.raises(StopOutcomeUnknownError, match=r"stored on the master but held by 0 replica\(s\)"),
    ):
        producer.stop_recording(call_uuid)
    assert stored(redis_server, call_uuid)


def test_no_pooled_connection_in_time_is_not_stored(env, redis_server):
    """A one-connection pool held by a hung call: the next caller waits its pool timeout, nothing sent."""
    slow = {
        "RECSTOP_REDIS_MAX_CONNECTIONS": "1",
        "RECSTOP_REDIS_POOL_TIMEOUT_S": "0.2",
        "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "3",
    }
    second = str(uuid.uuid4())
    with producer_at(env, redis_server.role_url(Role.PRODUCER), **slow) as producer:
        producer.status(second)
        redis_server.pause()
        holder = threading.Thread(target=producer.status, args=(str(uuid.uuid4()),))
        try:
            holder.start()
            wait_for(lambda: not producer.redis.connection_pool.pool.qsize(), what="the hung call to hold it")
            started = time.monotonic()
            with pytest.raises(StopNotStoredError, match="nothing was stored"):
                producer.stop_recording(second)
            assert 0.15 < time.monotonic() - started < 1.0
        finally:
            redis_server.resume()
            holder.join(10)
    assert not stored(redis_server, second)


def test_150_threads_through_a_stall_wait_for_the_pool_and_every_stop_is_stored(env, redis_server):
    """Redis stalls 1.5 s under 150 threads: the default pool (100) makes the rest wait, no pool error."""
    calls = [str(uuid.uuid4()) for _ in range(150)]
    errors: list[BaseException] = []
    with producer_at(env, redis_server.role_url(Role.PRODUCER)) as producer:
        assert producer.redis.connection_pool.max_connections == 100
        redis_server.pause()

        def enqueue(call_uuid: str) -> None:
            try:
                producer.stop_recording(call_uuid)
            except Exception as exc:  # noqa: BLE001 - every error is a failure of this test
                errors.append(exc)

        threads = [threading.Thread(target=enqueue, args=(c,)) for c in calls]
        for thread in threads:
            thread.start()
        time.sleep(1.5)  # the stall itself: how long Redis does not answer
        redis_server.resume()
        for thread in threads:
            thread.join(20)
    assert errors == []
    client = redis_server.client()
    assert sum(client.exists(keys.call_key(c)) for c in calls) == 150
    client.close()


# --- configuration errors: named as such, nothing stored ----------------------------------------


def _misconfigured(
    env: dict[str, str], url: str, server: RedisServer, reason: str
) -> BrokerMisconfiguredError:
    call_uuid = str(uuid.uuid4())
    with producer_at(env, url) as producer, pytest.raises(BrokerMisconfiguredError, match=reason) as info:
        producer.stop_recording(call_uuid)
    assert isinstance(info.value, ConfigError)
    assert not isinstance(info.value, BrokerUnavailableError)
    assert not stored(server, call_uuid)
    return info.value


def test_redis_cluster_is_a_configuration_error(env, tmp_path: Path):
    """A Redis Cluster node answers CROSSSLOT: BrokerMisconfiguredError naming Cluster."""
    cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    server = RedisServer(tmp_path / "cluster", extra_args=[*cluster_args, "--cluster-port", str(free_port())])
    server.start()
    try:
        client = server.client()
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        wait_for(lambda: "cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), what="cluster ok")
        client.close()
        _misconfigured(env, server.url, server, "Redis Cluster is not supported")
    finally:
        server.stop()


def test_an_out_of_memory_redis_is_a_configuration_error(env, redis_server):
    """Redis at maxmemory under noeviction: BrokerMisconfiguredError naming memory; nothing stored."""
    client = redis_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        _misconfigured(env, redis_server.role_url(Role.PRODUCER), redis_server, "out of memory")
    finally:
        client.config_set("maxmemory", "0")
        client.close()


def test_a_read_only_replica_is_a_configuration_error(env, redis_server):
    """A replica (read-only): BrokerMisconfiguredError that says to point at the master."""
    client = redis_server.client()
    client.replicaof("127.0.0.1", free_port())
    try:
        _misconfigured(env, redis_server.role_url(Role.PRODUCER), redis_server, "read-only replica")
    finally:
        client.replicaof("NO", "ONE")
        client.close()


def test_a_redis_without_lua_is_a_configuration_error(env, tmp_path: Path):
    """EVALSHA renamed away: BrokerMisconfiguredError saying this Redis runs no Lua scripts."""
    server = RedisServer(
        tmp_path / "nolua", extra_args=["--rename-command", "EVALSHA", "", "--rename-command", "EVAL", ""]
    ).start()
    try:
        _misconfigured(env, server.url, server, "runs no Lua scripts")
    finally:
        server.stop()


def test_a_wrong_password_is_a_configuration_error(env, tmp_path: Path):
    """A wrong password for a Redis with requirepass: BrokerMisconfiguredError, the password masked."""
    port = free_port()
    server = RedisServer(
        tmp_path / "auth",
        port=port,
        extra_args=["--requirepass", "right-Pa55"],
        url=f"redis://:right-Pa55@127.0.0.1:{port}/0",
    ).start()
    try:
        error = _misconfigured(
            env, f"redis://:wrong-Pa55@127.0.0.1:{port}/0", server, "authentication failed"
        )
        assert "wrong-Pa55" not in str(error)
        assert "redis://:***@127.0.0.1" in str(error)
    finally:
        server.stop()
