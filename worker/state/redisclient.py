"""Connections to Redis, in one place: the client factory (TLS, Sentinel) and replica ``WAIT``.

Every recstop process reaches Redis through :func:`redis_client` (its own keys, strings decoded);
Celery's broker connection gets the same TLS and Sentinel options through
:func:`sentinel_transport_options` and ``RedisSettings.tls_options``. A write that must survive a
failover is followed by :func:`wait_for_replicas` on the same connection. When Redis cannot be
reached, :func:`redis_unavailable` says which Redis and why, passwords masked; a loop that keeps
trying reports the outage through :class:`RedisOutage` (a few lines, not one per try).

The client's pool waits for a free connection (``RECSTOP_REDIS_MAX_CONNECTIONS``,
``RECSTOP_REDIS_POOL_TIMEOUT_S``) rather than failing at once, and its connections mark every error
raised once a command has left for Redis (:func:`was_sent`): a caller can then tell "nothing was
sent" (connect refused, no connection free, a failed handshake) from "sent, and no answer". The
``asyncio`` client with the same pool and marks is ``state.asyncclient``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis import BlockingConnectionPool, Redis
from redis.client import Pipeline
from redis.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    InvalidResponse,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)

from recstop.worker.config.redis import RedisSettings
from recstop.worker.model.redaction import Redactor

#: Seconds between PINGs on an idle pooled connection (finds a dead server before a command does).
HEALTH_CHECK_INTERVAL_S: Final = 10
#: While an outage lasts, the line a loop logs is repeated this often, as a reminder.
OUTAGE_REMIND_S: Final = 60.0


class ReplicaShortfall(Exception):  # noqa: N818 - reads as the condition it reports
    """Fewer replicas than required acknowledged a write within the timeout."""

    def __init__(self, acked: int, required: int, timeout_ms: int) -> None:
        super().__init__(f"held by {acked} replica(s) after {timeout_ms} ms, {required} required")
        self.acked = acked
        self.required = required


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
    return any(getattr(link, SENT_MARK, False) for link in _chain(exc))


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


class BlockingSentinelConnectionPool(SentinelConnectionPool, WaitingConnectionPool):
    """Sentinel's pool (follows the master) that waits for a free connection instead of failing."""


def tracks_sending(client: Redis) -> bool:
    """Whether this client's connections mark errors after sending (see :func:`was_sent`)."""
    pool = client.connection_pool
    return isinstance(pool.connection_class, type) and issubclass(pool.connection_class, TracksSending)


def _connection_class(url: str) -> type[TracksSending]:
    if url.startswith("rediss://"):
        return TrackedSSLConnection
    if url.startswith("unix://"):
        return TrackedUnixConnection
    return TrackedConnection


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


def redis_problem(exc: BaseException) -> str:
    """Why a Redis call failed, in words: refused, timed out, authentication, TLS, unknown host ...

    Looks at the exception and what caused it (redis-py keeps the socket's error as the context);
    anything else is named by its class and text. The text may hold a password: see
    :func:`redis_unavailable`, which masks it.
    """
    problem = _problem(exc)
    if problem is None:
        return f"{type(exc).__name__}: {exc}"
    return problem.reason if problem.reason != _TLS else f"TLS failed: {exc}"


def misconfigured(exc: BaseException) -> bool:
    """Whether the failure is Redis refusing what recstop needs, which no retry changes.

    A wrong password or ACL, Redis Cluster, a read-only replica, an out-of-memory Redis, no Lua.
    """
    problem = _problem(exc)
    return problem is not None and problem.misconfigured


def redis_unavailable(settings: RedisSettings, exc: BaseException) -> str:
    """``Redis at <URL, passwords masked>: <why>``; passwords are masked in the reason too."""
    reason = Redactor(settings.secrets()).text(redis_problem(exc))
    return f"Redis at {settings.safe_url}: {reason}"


def _problem(exc: BaseException) -> _Problem | None:
    chain = _chain(exc)
    text = " ".join(str(link) for link in chain).lower()
    for problem in _PROBLEMS:
        if any(isinstance(link, problem.kinds) for link in chain) or any(n in text for n in problem.needles):
            return problem
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, then its causes and contexts."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


@dataclass(frozen=True)
class _Problem:
    """A kind of failure: the classes and lower-case text fragments that show it, and its reason."""

    kinds: tuple[type[BaseException], ...]
    needles: tuple[str, ...]
    reason: str
    #: Redis refuses what recstop needs: a retry cannot help (a setting or the server must change).
    misconfigured: bool = False


_TLS: Final = "TLS"
#: The first that matches names the problem.
_PROBLEMS: Final = (
    _Problem(  # redis-py's Sentinel client, on a READONLY from a demoted master: it asks the sentinels again
        (),
        ("previous master is now a slave",),
        "the master changed (a Sentinel failover): the sentinels name the new one",
    ),
    _Problem(
        (AuthenticationError,),
        ("noauth", "wrongpass", "invalid username-password", "invalid password"),
        "authentication failed: wrong or missing user/password in RECSTOP_BROKER_URL",
        misconfigured=True,
    ),
    _Problem(
        (NoPermissionError,),
        ("noperm",),
        "the Redis user may not run recstop's commands (ACL): it needs +@scripting, +@write and +@read",
        misconfigured=True,
    ),
    _Problem(
        (ClusterCrossSlotError, AskError, ClusterDownError),
        ("crossslot", "moved ", "clusterdown"),
        "Redis Cluster is not supported: recstop's scripts use keys of many hash slots; point "
        "RECSTOP_BROKER_URL at one server, or at Sentinel (sentinel://...)",
        misconfigured=True,
    ),
    _Problem(
        (),
        ("unknown command 'evalsha'", "unknown command `evalsha`", "unknown command 'eval'"),
        "this Redis runs no Lua scripts (EVALSHA disabled or renamed): recstop needs Redis >= 6.2 "
        "with scripting",
        misconfigured=True,
    ),
    _Problem((ssl.SSLError,), ("ssl", "certificate"), _TLS),
    _Problem(
        (ConnectionRefusedError,),
        ("connection refused",),
        "connection refused: nothing listens there (is redis-server running? is RECSTOP_BROKER_URL right?)",
    ),
    _Problem(
        (socket.gaierror,),
        ("name or service not known", "nodename nor servname", "name resolution"),
        "unknown host: the host name in RECSTOP_BROKER_URL does not resolve",
    ),
    _Problem(
        (RedisTimeoutError, TimeoutError),
        ("timed out", "timeout"),
        "timed out: no answer within RECSTOP_REDIS_SOCKET_TIMEOUT_S",
    ),
    _Problem(
        (BusyLoadingError,), ("loading",), "Redis is loading its data set into memory; try again shortly"
    ),
    _Problem(
        (ReadOnlyError,),
        ("readonly",),
        "a read-only replica: point RECSTOP_BROKER_URL at the master",
        misconfigured=True,
    ),
    _Problem(
        (MasterNotFoundError,),
        ("no master found",),
        "the sentinels name no master for RECSTOP_REDIS_SENTINEL_MASTER",
    ),
    _Problem(
        (OutOfMemoryError,),
        ("oom command not allowed",),
        "Redis is out of memory (maxmemory reached under noeviction): free memory or raise maxmemory",
        misconfigured=True,
    ),
    _Problem(
        (InvalidResponse,),
        ("protocol error",),
        "the server there does not speak the Redis protocol (wrong port? TLS needs rediss://)",
    ),
    _Problem(
        (ConnectionResetError,),
        ("connection reset", "closed by server", "connection closed"),
        "the server closed the connection (does it require TLS? maxclients reached?)",
    ),
)


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


class RedisOutage:
    """How a loop that keeps trying reports a Redis it cannot reach: a few lines, and a backoff.

    Not a line per failed try (a worker's scheduler logged ``scheduler_redis_error`` five times a
    second, naming neither the Redis nor the cause): one warning when the outage starts, one when
    its cause changes, a reminder every ``remind_s`` while it lasts, and one info line when Redis
    answers again. Each names the Redis (``where``) and the warnings the cause (``describe``:
    :func:`redis_unavailable` with the settings, or :func:`redis_problem` for a bare client).
    ``failed`` returns how long to wait before the next try: ``base_s`` doubling up to ``cap_s``.
    """

    def __init__(
        self,
        event: str,
        where: str,
        describe: Callable[[BaseException], str],
        *,
        logger: Any,  # noqa: ANN401 - the loop's structlog logger (a producer loads no structlog)
        base_s: float = 0.5,
        cap_s: float = 5.0,
        remind_s: float = OUTAGE_REMIND_S,
        clock: Callable[[], float] = time.monotonic,
        **context: object,
    ) -> None:
        self.event = event
        #: The info line at the end of an outage: ``x_redis_unavailable`` -> ``x_redis_recovered``.
        self.recovered_event = event.removesuffix("_unavailable") + "_recovered"
        self.where = where
        self.describe = describe
        self.base_s = base_s
        self.cap_s = cap_s
        self.remind_s = remind_s
        self.log = logger
        self.clock = clock
        self.context = context
        self.failures = 0
        self._since: float | None = None
        self._logged_at = 0.0
        self._reason = ""

    @classmethod
    def for_settings(cls, event: str, settings: RedisSettings, **options: Any) -> RedisOutage:  # noqa: ANN401
        """The outage of the Redis of ``settings`` (named by its URL, password masked)."""
        return cls(event, settings.safe_url, lambda exc: redis_unavailable(settings, exc), **options)

    @classmethod
    def for_client(cls, event: str, client: Redis, **options: Any) -> RedisOutage:  # noqa: ANN401
        """The outage of the Redis ``client`` talks to (named by :func:`client_url`)."""
        where = client_url(client)
        return cls(event, where, lambda exc: f"Redis at {where}: {redis_problem(exc)}", **options)

    @property
    def down(self) -> bool:
        """Whether the last try failed."""
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        """Count a failed try; log it if the outage is new, its cause changed or a reminder is due.

        Returns the seconds to wait before the next try.
        """
        now = self.clock()
        self.failures += 1
        wait_s = min(self.cap_s, self.base_s * 2.0 ** min(self.failures - 1, 30))
        reason = self.describe(exc)
        if self._since is None or reason != self._reason or now - self._logged_at >= self.remind_s:
            since = now if self._since is None else self._since
            self.log.warning(
                self.event,
                error=reason,
                failures=self.failures,
                down_s=round(now - since, 1),
                retry_in_s=round(wait_s, 2),
                **self.context,
            )
            self._logged_at, self._reason = now, reason
        self._since = now if self._since is None else self._since
        return wait_s

    def recovered(self) -> None:
        """A try succeeded: log the end of an outage (once), and start counting afresh."""
        if self._since is None:
            return
        self.log.info(
            self.recovered_event,
            redis=self.where,
            after_failures=self.failures,
            down_s=round(self.clock() - self._since, 1),
            **self.context,
        )
        self.failures, self._since, self._reason = 0, None, ""
