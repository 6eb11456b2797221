"""The error hierarchy: each class decides what happens to a stop that raised it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final


class RecstopError(Exception):
    """Base of every error recstop raises on purpose."""


class ConfigError(RecstopError):
    """The settings are unusable; the process must not start."""


class BrokerMisconfiguredError(ConfigError):
    """Redis answered, but cannot hold recstop's stops as configured; nothing was stored.

    A wrong password or missing permission, Redis Cluster (recstop's scripts need every key on one
    server), a read-only replica, an out-of-memory Redis, a Redis without Lua scripting. Retrying
    does not help: the message names the cause and what to change.
    """


class InvalidStopRequest(RecstopError, ValueError):  # noqa: N818 - reads as a noun, like ValueError
    """A stop request is malformed: rejected at the producer, dead-lettered at the worker."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidBulkItem(InvalidStopRequest):
    """One item of a bulk enqueue is malformed: ``index`` is its position (from 0), ``item`` the error."""

    def __init__(self, index: int, item: InvalidStopRequest) -> None:
        super().__init__(f"stops[{index}].{item.field}", item.reason)
        self.index = index
        self.item = item


class UnknownAccountError(InvalidStopRequest):
    """The stop names an auth_id this deployment holds no credentials for."""

    def __init__(self, auth_id: str | None) -> None:
        super().__init__("auth_id", f"no credentials configured for account {auth_id!r}")


class BrokerUnavailableError(RecstopError):
    """Redis did not complete the call. Catch one of the two outcomes below to act on it.

    :class:`StopNotStoredError`: nothing was done. :class:`StopOutcomeUnknownError`: it may have
    been. Either way, retrying with the same ``request_id`` is safe (the stop is deduplicated).
    """


class StopNotStoredError(BrokerUnavailableError):
    """Nothing was done: the call never reached Redis, or Redis refused it before running it.

    Connection refused, unknown host, TLS failure, no pooled connection free in time, a connect
    timeout, Redis loading its data set. The stop was not stored (a cancel cancelled nothing, a
    replay replayed nothing): retry.
    """


class StopOutcomeUnknownError(BrokerUnavailableError):
    """The call reached Redis and no answer came: it may have been done, or not.

    A timeout waiting for the answer, a connection reset mid-call, fewer replicas than
    ``RECSTOP_REDIS_WAIT_REPLICAS`` holding the write in time (stored on the master, not yet safe
    from a failover). Retry with the same ``request_id``: a stored stop is deduplicated (the same
    task id comes back), one that did not arrive is stored now.
    """


class StopDead(RecstopError):  # noqa: N818 - named for the task state it stands for
    """The stop was given up (dead-lettered): the task's FAILURE in Celery, Flower and its events.

    Its text is the dead reason and the API's error text (tokens masked), e.g.
    ``http_403: Account inactive``.
    """

    def __init__(self, reason: str, error: str = "") -> None:
        super().__init__(f"{reason}: {error}" if error else reason)
        self.reason = reason
        self.error = error


class RetryScheduled(RecstopError):  # noqa: N818 - named for the task state it stands for
    """An attempt failed and the next one waits in recstop's schedule: the task's RETRY.

    Celery's ``task-retried`` event carries its text: what failed and when the next attempt is due
    (:meth:`after` writes it, :data:`RETRY_TEXT` reads it back, for Flower's task list).
    """

    @classmethod
    def after(cls, attempt: int, http_status: int | None, error: str | None, due_at: float) -> RetryScheduled:
        """``attempt 2: HTTP 503: Service Unavailable; next attempt at <ISO time>``."""
        why = f"HTTP {http_status}" if http_status else "no response"
        due = datetime.fromtimestamp(due_at, UTC).isoformat()
        return cls(f"attempt {attempt}: {why}: {error or '-'}; next attempt at {due}")


#: The text of a :class:`RetryScheduled`: the attempt, what failed, when the next one is due.
RETRY_TEXT: Final = re.compile(
    r"attempt (?P<attempt>\d+): (?P<why>.*?); next attempt at "
    r"(?P<due>\d{4}-\d\d-\d\dT[\d:.]+(?:[+-]\d\d:\d\d|Z)?)",
    re.DOTALL,
)
