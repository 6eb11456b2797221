"""How a loop that keeps trying reports a Redis it cannot reach: a few lines per outage, and a backoff."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from redis import Redis

from recstop.worker.config.redis import RedisSettings
from recstop.worker.state.problems import redis_problem, redis_unavailable
from recstop.worker.state.redisclient import client_url

#: While an outage lasts, the line a loop logs is repeated this often, as a reminder.
OUTAGE_REMIND_S: Final = 60.0


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
