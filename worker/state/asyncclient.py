"""The ``asyncio`` Redis client: the same settings, pool and marks as ``state.redisclient``'s.

An async producer (``recstop.producers.AsyncProducer``) reaches Redis through
:func:`async_redis_client`: a pool that waits for a free connection (``RECSTOP_REDIS_MAX_CONNECTIONS``,
``RECSTOP_REDIS_POOL_TIMEOUT_S``), TLS and Sentinel as for the threaded client, and connections that
mark every error raised once a command left for Redis (``redisclient.was_sent`` reads the mark).
Only a process that asks for it imports ``redis.asyncio``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from recstop.worker.config.redis import RedisSettings
from recstop.worker.state.connections import mark_sent
from recstop.worker.state.redisclient import HEALTH_CHECK_INTERVAL_S, sentinel_kwargs


class AsyncTracksSending(AbstractConnection):
    """An asyncio connection that marks every error raised once a command was sent.

    As ``redisclient.TracksSending``: connecting, the handshake and the health check PING are not
    marked (the command never left); writing the command and reading its answer are.
    """

    _recstop_awaiting = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:  # noqa: ANN401, FBT001, FBT002 - redis-py's signature
        """Connect and check health (unmarked), then send (marked)."""
        if not check_health:  # the connection's own PING and handshake commands
            await super().send_packed_command(command, check_health=False)
            return
        self._recstop_awaiting = False
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await self.check_health()  # type: ignore[no-untyped-call]
        self._recstop_awaiting = True
        try:
            await super().send_packed_command(command, check_health=False)
        except Exception as exc:
            mark_sent(exc)
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - redis-py's signature
        """Read an answer; an error reading the answer to a sent command is marked."""
        try:
            return await super().read_response(*args, **kwargs)
        except Exception as exc:
            if self._recstop_awaiting:
                mark_sent(exc)
            raise


class AsyncTrackedConnection(AsyncTracksSending, Connection):
    """A TCP connection that marks errors after sending."""


class AsyncTrackedSSLConnection(AsyncTracksSending, SSLConnection):
    """A TLS connection (``rediss://``) that marks errors after sending."""


class AsyncTrackedUnixConnection(AsyncTracksSending, UnixDomainSocketConnection):
    """A Unix socket connection (``unix://``) that marks errors after sending."""


class AsyncTrackedSentinelConnection(AsyncTracksSending, SentinelManagedConnection):
    """A connection to the master the sentinels name that marks errors after sending."""


class AsyncBlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (follows the master) that waits for a free connection instead of failing."""


def _connection_class(url: str) -> type[AsyncTracksSending]:
    if url.startswith("rediss://"):
        return AsyncTrackedSSLConnection
    if url.startswith("unix://"):
        return AsyncTrackedUnixConnection
    return AsyncTrackedConnection


def async_redis_client(settings: RedisSettings, *, decode: bool = True) -> Redis:
    """An asyncio Redis client for recstop's keys, from explicit settings (TLS, Sentinel included).

    Create it in the event loop that uses it (an ASGI app's startup, ``asyncio.run``'s coroutine).
    """
    if settings.sentinel:
        first = urlsplit(settings.url.split(";", 1)[0])
        sentinel = Sentinel(
            settings.sentinels(),
            sentinel_kwargs=sentinel_kwargs(settings),
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
        )
        client: Redis = sentinel.master_for(
            settings.sentinel_master or "",
            redis_class=Redis,
            connection_pool_class=AsyncBlockingSentinelConnectionPool,
            connection_class=AsyncTrackedSentinelConnection,
            max_connections=settings.max_connections,
            timeout=settings.pool_timeout_s,
            db=settings.sentinel_db(),
            username=unquote(first.username) if first.username else None,
            password=unquote(first.password) if first.password else None,
            decode_responses=decode,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry_on_timeout=False,
        )
        return client
    pool = BlockingConnectionPool.from_url(
        settings.url,
        connection_class=_connection_class(settings.url),
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


def async_tracks_sending(client: Redis) -> bool:
    """Whether this client's connections mark errors after sending."""
    kind = client.connection_pool.connection_class
    return isinstance(kind, type) and issubclass(kind, AsyncTracksSending)
