"""Why a Redis call failed, in words (refused, timed out, authentication, TLS ...), passwords masked.

:func:`redis_unavailable` names the Redis and the cause; :func:`misconfigured` tells a setting or a
server that a retry cannot fix (Cluster, a read-only replica, out of memory, no Lua) from an outage.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Final

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
from redis.sentinel import (
    MasterNotFoundError,
)

from recstop.worker.config.redis import RedisSettings
from recstop.worker.model.redaction import Redactor


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
    chain = exception_chain(exc)
    text = " ".join(str(link) for link in chain).lower()
    for problem in _PROBLEMS:
        if any(isinstance(link, problem.kinds) for link in chain) or any(n in text for n in problem.needles):
            return problem
    return None


def exception_chain(exc: BaseException) -> list[BaseException]:
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
