"""A per-account request rate shared by every worker thread, process and host through Redis.

GCRA (virtual scheduling) in one atomic Lua script on Redis server time, so host clocks do not
matter. Each account has one hash, ``recstop:rate:<auth_id>`` (see ``worker.keys.rate_key``):

- ``tat``: the theoretical arrival time, when the next routine request may go;
- ``rate`` and ``penalized_at``: the effective rate right after the last 429 penalty and when it
  happened; the rate then recovers linearly back to the configured one;
- ``blocked_until``: nothing goes before this time (the API's Retry-After, capped).

All times are seconds of Redis server time. The hash expires after ``IDLE_TTL_S`` of inactivity.

An urgent request never waits behind reserved routine slots: it goes at once (unless the account
is blocked by a Retry-After) and pushes ``tat`` one interval further, so the average rate holds
but each urgent request may exceed the instantaneous rate by one request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from redis import Redis

from worker.errors import RecstopError
from worker.keys import rate_key

#: Seconds an idle account's state is kept (longer while a reservation or block lies further ahead).
IDLE_TTL_S: Final = 3600.0
#: Shortest pause before asking again when the next free slot lies beyond ``max_reserve_s``.
MIN_RETRY_S: Final = 0.005


def _source(name: str) -> str:
    return (resources.files("worker") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


#: The script, with the ``common.lua`` prelude every recstop script gets (``now_s`` ...).
SOURCE: Final = _source("common") + "\n" + _source("ratelimit")


class RateLimitWaitTooLong(RecstopError):  # noqa: N818 - reads as a condition, like TimeoutExpired
    """The account's next free slot lies beyond the caller's deadline; no slot was reserved."""

    def __init__(self, auth_id: str, wait_s: float, deadline_s: float) -> None:
        super().__init__(
            f"rate limit of account {auth_id!r}: next slot in {wait_s:.3f}s,"
            f" past the deadline of {deadline_s:.3f}s"
        )
        self.auth_id = auth_id
        self.wait_s = wait_s
        self.deadline_s = deadline_s


def _check(ok: bool, message: str) -> None:  # noqa: FBT001 - a predicate and its message
    if not ok:
        raise ValueError(f"RateLimitSettings: {message}")


@dataclass(frozen=True)
class RateLimitSettings:
    """The per-account limit (``rate_rps`` 0 = no limit) and how it adapts to 429 answers."""

    rate_rps: float
    max_reserve_s: float = 2.0
    decrease_factor: float = 0.5
    floor_fraction: float = 0.1
    recover_fraction_per_s: float = 0.1
    cooldown_s: float = 1.0
    retry_after_cap_s: float = 30.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            _check(math.isfinite(value), f"{name} must be a finite number, got {value!r}")
        _check(self.rate_rps >= 0, f"rate_rps must be >= 0 (0 = no limit), got {self.rate_rps}")
        _check(self.max_reserve_s >= 0, f"max_reserve_s must be >= 0, got {self.max_reserve_s}")
        _check(0 < self.decrease_factor < 1, f"decrease_factor must be in (0, 1), got {self.decrease_factor}")
        _check(0 < self.floor_fraction <= 1, f"floor_fraction must be in (0, 1], got {self.floor_fraction}")
        _check(
            self.recover_fraction_per_s > 0,
            f"recover_fraction_per_s must be > 0, got {self.recover_fraction_per_s}",
        )
        _check(self.cooldown_s >= 0, f"cooldown_s must be >= 0, got {self.cooldown_s}")
        _check(self.retry_after_cap_s >= 0, f"retry_after_cap_s must be >= 0, got {self.retry_after_cap_s}")


@dataclass(frozen=True)
class Grant:
    """One answer of ``acquire``: sleep ``wait_s`` then send if ``reserved``, else ask again later."""

    wait_s: float
    reserved: bool
    rate_rps: float


class RateLimiter:
    """The shared limiter: every instance on the same Redis and account shares one rate."""

    def __init__(self, redis: Redis, settings: RateLimitSettings) -> None:
        self._redis = redis
        self.settings = settings
        self._script = redis.register_script(SOURCE)

    @property
    def enabled(self) -> bool:
        """Whether a limit is configured (``rate_rps`` > 0); if not, nothing touches Redis."""
        return self.settings.rate_rps > 0

    def acquire(self, auth_id: str, *, urgent: bool = False) -> Grant:
        """Reserve the account's next slot if it comes within ``max_reserve_s``."""
        if not self.enabled:
            return Grant(0.0, reserved=True, rate_rps=0.0)
        return self._acquire(auth_id, urgent=urgent, max_reserve_s=self.settings.max_reserve_s)

    def wait_for_slot(
        self,
        auth_id: str,
        *,
        urgent: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        deadline_s: float | None = None,
    ) -> float:
        """Sleep until a reserved slot has come; the seconds slept (at most ``deadline_s``)."""
        if not self.enabled:
            return 0.0
        waited = 0.0
        while True:
            reserve_s = self.settings.max_reserve_s
            if deadline_s is not None:
                reserve_s = min(reserve_s, max(0.0, deadline_s - waited))
            grant = self._acquire(auth_id, urgent=urgent, max_reserve_s=reserve_s)
            if grant.reserved:
                if grant.wait_s > 0:
                    sleep(grant.wait_s)
                return waited + grant.wait_s
            if deadline_s is not None and waited + grant.wait_s > deadline_s:
                raise RateLimitWaitTooLong(auth_id, waited + grant.wait_s, deadline_s)
            pause = max(grant.wait_s - self.settings.max_reserve_s, MIN_RETRY_S)
            sleep(pause)
            waited += pause

    def penalize(self, auth_id: str, *, retry_after_s: float | None = None) -> float:
        """Record a 429: lower the rate (once per cooldown), honour Retry-After; the new rate."""
        if not self.enabled:
            return 0.0
        retry = "" if retry_after_s is None else repr(float(retry_after_s))
        return float(self._run("penalize", auth_id, retry_after_s=retry)[2])

    def effective_rate(self, auth_id: str) -> float:
        """The account's current rate in requests per second (0 when no limit is configured)."""
        if not self.enabled:
            return 0.0
        return float(self._run("rate", auth_id)[2])

    def _acquire(self, auth_id: str, *, urgent: bool, max_reserve_s: float) -> Grant:
        wait, reserved, rate = self._run("acquire", auth_id, urgent=urgent, max_reserve_s=max_reserve_s)
        return Grant(float(wait), reserved=int(reserved) == 1, rate_rps=float(rate))

    def _run(
        self,
        op: str,
        auth_id: str,
        *,
        urgent: bool = False,
        max_reserve_s: float = 0.0,
        retry_after_s: str = "",
    ) -> Any:  # noqa: ANN401 - Lua reply
        s = self.settings
        args: list[str | float] = [
            op,
            s.rate_rps,
            s.floor_fraction,
            s.recover_fraction_per_s * s.rate_rps,
            max_reserve_s,
            int(urgent),
            s.decrease_factor,
            s.cooldown_s,
            retry_after_s,
            s.retry_after_cap_s,
            IDLE_TTL_S,
        ]
        return self._script(keys=[rate_key(auth_id)], args=args, client=self._redis)
