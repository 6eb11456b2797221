"""What a producer raises when Redis does not complete a call: one of three answers a caller acts on.

- :class:`StopNotStoredError`: nothing was done (never sent: refused, unknown host, TLS, no pooled
  connection free in time, a connect timeout; or Redis refused to run it: loading, busy). Retry.
- :class:`StopOutcomeUnknownError`: the call was sent and no answer came (a timeout, a reset
  mid-call), or fewer replicas than required hold it (``WAIT``). Retry with the same ``request_id``:
  the stop is deduplicated if it was stored.
- :class:`BrokerMisconfiguredError` (a ``ConfigError``): Redis refuses what recstop needs (a wrong
  password, Cluster, a read-only replica, out of memory, no Lua). Nothing was stored; a retry does
  not help until the setting or the server changes.

Each names the Redis (password masked) and the cause in words (``redisclient.redis_problem``).
Whether a call was sent is read from the mark the client's connections put on an error raised
after sending (``redisclient.was_sent``); a client from elsewhere, which puts no mark, is judged
by the error alone, and anything not known to come before sending counts as sent.
"""

from __future__ import annotations

import socket
import ssl
from typing import Final

from redis.exceptions import BusyLoadingError, MaxConnectionsError

from recstop.worker.config.redis import RedisSettings
from recstop.worker.model.errors import (
    BrokerMisconfiguredError,
    RecstopError,
    StopNotStoredError,
    StopOutcomeUnknownError,
)
from recstop.worker.state.connections import was_sent
from recstop.worker.state.problems import misconfigured, redis_unavailable
from recstop.worker.state.redisclient import ReplicaShortfall

#: Answers with which Redis refuses a command before running it (nothing done): retry later.
_REFUSED_BEFORE_RUNNING: Final = (
    "busy ",
    "masterdown",
    "tryagain",
    "misconf",
    "max number of clients",
    "the previous master is now a slave",  # READONLY from a demoted master: the script did not run
)
#: Errors an unmarked client raises only before it sends anything.
_BEFORE_SENDING: Final = (ConnectionRefusedError, socket.gaierror, ssl.SSLError, MaxConnectionsError)
_CONNECTING: Final = ("no connection available", "timeout connecting", "connecting to")
NOT_STORED: Final = "nothing was stored: retrying is safe"
UNKNOWN: Final = (
    "the call reached Redis and no answer came: the stop may be stored; retry with the same "
    "request_id (a stored stop is deduplicated), or read its status"
)


def broker_error(
    redis: RedisSettings, what: str, exc: Exception, *, marks: bool, writes: bool = True
) -> RecstopError:
    """The producer's error for a Redis call that failed: ``what`` failed, at which Redis, why.

    ``marks``: the client's connections mark errors raised after sending (``redis_client``'s do).
    ``writes``: the call stores or changes something (an enqueue, a cancel), so the message says
    what became of it; a read (status, dead letters) only says why it failed.
    """
    if isinstance(exc, ReplicaShortfall):
        return StopOutcomeUnknownError(
            f"{what}: Redis at {redis.safe_url}: stored on the master but {exc} "
            "(RECSTOP_REDIS_WAIT_REPLICAS): a failover now could lose it; retry with the same request_id "
            "(the stop is deduplicated)"
        )
    reason = redis_unavailable(redis, exc)
    if misconfigured(exc):
        return BrokerMisconfiguredError(f"{what}: {reason}" + ("; nothing was stored" if writes else ""))
    if _refused_before_running(exc) or not (was_sent(exc) if marks else _maybe_sent(exc)):
        return StopNotStoredError(f"{what}: {reason}" + (f"; {NOT_STORED}" if writes else ""))
    return StopOutcomeUnknownError(f"{what}: {reason}" + (f"; {UNKNOWN}" if writes else ""))


def _refused_before_running(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, BusyLoadingError) or text.startswith(_REFUSED_BEFORE_RUNNING)


def _maybe_sent(exc: BaseException) -> bool:
    """For a client that marks nothing: False only for errors that come before anything is sent."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, _BEFORE_SENDING) or any(n in str(link).lower() for n in _CONNECTING):
            return False
        link = link.__cause__ or link.__context__
    return True
