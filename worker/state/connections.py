"""Redis connections that mark errors raised after a command left, and pools that wait for a free one.

A caller can then tell "nothing was sent" (connect refused, no connection free, a failed handshake)
from "sent, and no answer" (:func:`was_sent`); the pool waits for a free connection
(``RECSTOP_REDIS_MAX_CONNECTIONS``, ``RECSTOP_REDIS_POOL_TIMEOUT_S``) rather than failing at once.
The ``asyncio`` counterparts are ``state.asyncclient``.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

from redis import BlockingConnectionPool, Redis
from redis.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.retry import Retry
from redis.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
)

from recstop.worker.state.problems import exception_chain

#: The attribute :class:`TracksSending` sets on an error raised after a command left for Redis.
SENT_MARK: Final = "recstop_sent"


def mark_sent(exc: BaseException) -> None:
    """Mark ``exc`` as raised after a command was (perhaps partly) sent: its outcome is unknown."""
    setattr(exc, SENT_MARK, True)


def was_sent(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) was raised after a command left for Redis.

    Only a client of :func:`redis_client` (or ``asyncclient``) marks its errors; see
    :func:`tracks_sending`.
    """
    return any(getattr(link, SENT_MARK, False) for link in exception_chain(exc))


class TracksSending(AbstractConnection):
    """A connection that marks (:func:`mark_sent`) every error raised once a command was sent.

    Connecting, the handshake (AUTH, HELLO, SELECT) and the idle connection's health check PING come
    first and are not marked: an error there means the command never left. Writing the command and
    reading its answer are marked (a write that fails may have reached Redis in part).
    """

    _recstop_awaiting = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:  # noqa: ANN401, FBT001, FBT002 - redis-py's signature
        """Connect and check health (unmarked), then send (marked)."""
        if not check_health:  # the connection's own PING and handshake commands
            super().send_packed_command(command, check_health=False)  # type: ignore[no-untyped-call]
            return
        self._recstop_awaiting = False
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]
        self.check_health()  # type: ignore[no-untyped-call]
        self._recstop_awaiting = True
        try:
            super().send_packed_command(command, check_health=False)  # type: ignore[no-untyped-call]
        except Exception as exc:
            mark_sent(exc)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - redis-py's signature
        """Read an answer; an error reading the answer to a sent command is marked."""
        try:
            return super().read_response(*args, **kwargs)
        except Exception as exc:
            if self._recstop_awaiting:
                mark_sent(exc)
            raise


class TrackedConnection(TracksSending, Connection):
    """A TCP connection that marks errors after sending."""


class TrackedSSLConnection(TracksSending, SSLConnection):
    """A TLS connection (``rediss://``) that marks errors after sending."""


class TrackedUnixConnection(TracksSending, UnixDomainSocketConnection):
    """A Unix socket connection (``unix://``) that marks errors after sending."""


class TrackedSentinelConnection(TracksSending, SentinelManagedConnection):
    """A connection to the master the sentinels name that marks errors after sending."""


class WaitingConnectionPool(BlockingConnectionPool):
    """redis-py's blocking pool (a caller waits for a free connection), with a working ``set_retry``.

    (redis-py's ``set_retry`` walks lists only the non-blocking pool has; this pool keeps every
    connection it made in ``_connections``.)
    """

    def set_retry(self, retry: Retry) -> None:
        """Retry policy for new connections and every existing one."""
        self.connection_kwargs.update({"retry": retry})
        for connection in self._connections:
            connection.retry = retry

    def disconnect(self, inuse_connections: bool = True) -> None:  # noqa: FBT001, FBT002 - redis-py's signature
        """Close the connections, as redis-py 8's blocking pool does.

        Sentinel's pool calls ``disconnect(inuse_connections=False)`` when the master moves; the
        blocking pool of redis-py before 7 takes no argument (it closes every connection): recstop
        supports redis-py from 6.4 (pyproject), so the argument is passed on only where it exists.
        """
        if "inuse_connections" in inspect.signature(BlockingConnectionPool.disconnect).parameters:
            super().disconnect(inuse_connections=inuse_connections)  # type: ignore[call-arg, unused-ignore]
        else:
            super().disconnect()


class BlockingSentinelConnectionPool(SentinelConnectionPool, WaitingConnectionPool):
    """Sentinel's pool (follows the master) that waits for a free connection instead of failing."""


def tracks_sending(client: Redis) -> bool:
    """Whether this client's connections mark errors after sending (see :func:`was_sent`)."""
    pool = client.connection_pool
    return isinstance(pool.connection_class, type) and issubclass(pool.connection_class, TracksSending)


def connection_class(url: str) -> type[TracksSending]:
    """The marking connection class for a Redis URL (TLS, a Unix socket, or TCP)."""
    if url.startswith("rediss://"):
        return TrackedSSLConnection
    if url.startswith("unix://"):
        return TrackedUnixConnection
    return TrackedConnection
