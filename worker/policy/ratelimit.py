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

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from redis import Redis

from recstop.worker.config.ratelimit import RateLimitSettings
from recstop.worker.model.errors import RecstopError
from recstop.worker.state.keys import rate_key
from recstop.worker.state.scripts import LuaScript, Scripts, reply_json

#: Seconds an idle account's state is kept (longer while a reservation or block lies further ahead).
IDLE_TTL_S: Final = 3600.0
#: Shortest pause before asking again when the next free slot lies beyond ``max_reserve_s``.
MIN_RETRY_S: Final = 0.005


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


@dataclass(frozen=True)
class Grant:
    """The reply of ``ratelimit.lua``: for ``acquire``, sleep ``wait_s`` then send if ``reserved``.

    Not reserved: ask again later. ``rate_rps``: the account's effective rate (every operation
    answers it).
    """

    wait_s: float
    reserved: bool
    rate_rps: float

    @classmethod
    def parse(cls, raw: object) -> Grant:
        """Read the script's JSON."""
        reply = reply_json(raw)
        return cls(
            float(reply["wait_s"]), reserved=bool(reply["reserved"]), rate_rps=float(reply["rate_rps"])
        )


RATELIMIT: Final = LuaScript("ratelimit", Grant.parse)


class RateLimiter:
    """The shared limiter: every instance on the same Redis and account shares one rate."""

    def __init__(self, redis: Redis, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._scripts = Scripts(redis)

    @property
    def enabled(self) -> bool:
        """Whether a limit is configured (``rate_rps`` > 0); if not, nothing touches Redis."""
        return self.settings.rate_rps > 0

    def acquire(self, auth_id: str, *, urgent: bool = False) -> Grant:
        """Reserve the account's next slot if it comes within ``max_reserve_s``."""
        if not self.enabled:
            return Grant(0.0, reserved=True, rate_rps=0.0)
        return self._acquire(auth_id, urgent=urgent, max_reserve_s=self.settings.max_reserve_s)

    def spare_slot(self, auth_id: str) -> Grant:
        """Take the account's next slot only if it is free now: what the API calls that wait.

        Routine stops reserve their slots ahead (``max_reserve_s``), so while they are queued no slot
        is free now and a background call (a recordings lookup) gets none: DELETEs always go first.
        """
        if not self.enabled:
            return Grant(0.0, reserved=True, rate_rps=0.0)
        return self._acquire(auth_id, urgent=False, max_reserve_s=0.0)

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
        return self._run("penalize", auth_id, retry_after_s=retry_after_s).rate_rps

    def effective_rate(self, auth_id: str) -> float:
        """The account's current rate in requests per second (0 when no limit is configured)."""
        if not self.enabled:
            return 0.0
        return self._run("rate", auth_id).rate_rps

    def _acquire(self, auth_id: str, *, urgent: bool, max_reserve_s: float) -> Grant:
        return self._run("acquire", auth_id, urgent=urgent, max_reserve_s=max_reserve_s)

    def _run(
        self,
        op: str,
        auth_id: str,
        *,
        urgent: bool = False,
        max_reserve_s: float | None = None,
        retry_after_s: float | None = None,
    ) -> Grant:
        """One call of ``lua/ratelimit.lua`` (``max_reserve_s``: acquire only)."""
        s = self.settings
        return self._scripts.run(
            RATELIMIT,
            [rate_key(auth_id)],
            {
                "op": op,
                "rate_rps": s.rate_rps,
                "floor_fraction": s.floor_fraction,
                "recover_rps_per_s": s.recover_fraction_per_s * s.rate_rps,
                "max_reserve_s": max_reserve_s,
                "urgent": urgent,
                "decrease_factor": s.decrease_factor,
                "cooldown_s": s.cooldown_s,
                "retry_after_s": retry_after_s,
                "retry_after_cap_s": s.retry_after_cap_s,
                "idle_ttl_s": IDLE_TTL_S,
            },
        )
