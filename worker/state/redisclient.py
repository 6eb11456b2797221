"""Connections to Redis, in one place: the client factory (TLS, Sentinel, a waiting pool) and ``WAIT``.

Every recstop process reaches Redis through :func:`redis_client` (its own keys, strings decoded);
Celery's broker connection gets the same TLS and Sentinel options through
:func:`sentinel_transport_options` and ``RedisSettings.tls_options``. A write that must survive a
failover is followed by ``WAIT`` on the same connection (:func:`queue_wait`, :func:`check_wait`).
The connections and pools are ``state.connections``; why a call failed, in words, is
``state.problems``; how a loop reports an outage, ``state.outage``.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis import Redis
from redis.client import Pipeline
from redis.sentinel import (
    Sentinel,
)

from recstop.worker.config.redis import RedisSettings
from recstop.worker.state.connections import (
    BlockingSentinelConnectionPool,
    TrackedSentinelConnection,
    WaitingConnectionPool,
    connection_class,
)

#: Seconds between PINGs on an idle pooled connection (finds a dead server before a command does).
HEALTH_CHECK_INTERVAL_S: Final = 10


class ReplicaShortfall(Exception):  # noqa: N818 - reads as the condition it reports
    """Fewer replicas than required acknowledged a write within the timeout."""

    def __init__(self, acked: int, required: int, timeout_ms: int) -> None:
        super().__init__(f"held by {acked} replica(s) after {timeout_ms} ms, {required} required")
        self.acked = acked
        self.required = required


def redis_client(settings: RedisSettings, *, decode: bool = True) -> Redis:
    """A Redis client for recstop's own keys (strings decoded), from explicit settings (TLS included).

    With a ``sentinel://`` URL it is the current master's client, found through the sentinels: after
    a failover its next connection goes to the new master. ``decode=False`` answers bytes (the audit
    sink reads stream entries that may hold anything). Its pool holds at most
    ``settings.max_connections`` and a caller waits up to ``settings.pool_timeout_s`` for one.
    """
    if settings.sentinel:
        return _sentinel_master_client(settings, decode=decode)
    pool = WaitingConnectionPool.from_url(
        settings.url,
        connection_class=connection_class(settings.url),
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout_s,
        decode_responses=decode,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry_on_timeout=False,
        **(settings.tls_options() or {}),
    )
    return Redis.from_pool(pool)


def sentinel_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """How to talk to the sentinels themselves: timeouts and their own password."""
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
    }
    if settings.sentinel_password:
        options["password"] = settings.sentinel_password
    return options


def sentinel_transport_options(settings: RedisSettings) -> dict[str, Any]:
    """Kombu's Sentinel transport options (master name, sentinels' password); empty without Sentinel."""
    if not settings.sentinel:
        return {}
    return {"master_name": settings.sentinel_master, "sentinel_kwargs": sentinel_kwargs(settings)}


def _sentinel_master_client(settings: RedisSettings, *, decode: bool) -> Redis:
    first = urlsplit(settings.url.split(";", 1)[0])
    # redis-py types these calls from 8.2 on; the ignore covers the versions before (pyproject's range).
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        settings.sentinels(),
        sentinel_kwargs=sentinel_kwargs(settings),
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
    )
    client: Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        settings.sentinel_master or "",
        redis_class=Redis,
        db=settings.sentinel_db(),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
        decode_responses=decode,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry_on_timeout=False,
        connection_pool_class=BlockingSentinelConnectionPool,
        connection_class=TrackedSentinelConnection,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout_s,
    )
    return client


def queue_wait(pipe: Pipeline, settings: RedisSettings) -> bool:
    """Append ``WAIT`` to a pipeline when replicas are required; whether it was appended.

    ``WAIT`` counts the replicas that acknowledged every earlier write of the same connection, so
    it must follow the writes in the same pipeline. Check the reply with :func:`check_wait`.
    """
    if settings.wait_replicas <= 0:
        return False
    pipe.execute_command("WAIT", settings.wait_replicas, settings.wait_timeout_ms)  # type: ignore[no-untyped-call]
    return True


def check_wait(acked: object, settings: RedisSettings) -> None:
    """Raise :class:`ReplicaShortfall` when ``WAIT`` answered fewer replicas than required."""
    count = int(acked)  # type: ignore[call-overload]
    if count < settings.wait_replicas:
        raise ReplicaShortfall(count, settings.wait_replicas, settings.wait_timeout_ms)


def client_url(client: Redis) -> str:
    """Where a client connects, as a URL without user or password: for a message about it."""
    pool = client.connection_pool
    service = getattr(pool, "service_name", None)
    if service:  # a Sentinel-managed master: its address changes with failovers
        return f"sentinel master {service}"
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    scheme = "rediss" if "ssl" in pool.connection_class.__name__.lower() else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
