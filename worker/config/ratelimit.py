"""The per-account rate limit's settings: the rate shared through Redis and how it adapts to 429s."""

from __future__ import annotations

import math
from dataclasses import dataclass

from recstop.worker.config import parsers
from recstop.worker.config.fields import require, setting


@dataclass(frozen=True)
class RateLimitSettings:
    """The per-account rate shared through Redis (``rate_rps`` 0 = no limit) and how it adapts to 429s."""

    rate_rps: float = setting(
        0.0,
        env="RECSTOP_RATE_LIMIT_RPS",
        parse=parsers.finite_float,
        help="API requests per second per account, shared by every worker process and host through "
        "Redis; slows down on 429s and recovers (0 = no limit).",
    )
    max_reserve_s: float = setting(
        2.0,
        env="RECSTOP_RATE_LIMIT_MAX_RESERVE_S",
        parse=parsers.finite_float,
        help="A worker reserves the account's next slot only if it comes within this many seconds; "
        "a later one is asked for again.",
    )
    decrease_factor: float = setting(
        0.5,
        env="RECSTOP_RATE_LIMIT_DECREASE_FACTOR",
        parse=parsers.finite_float,
        help="A 429 multiplies the account's rate by this, in (0, 1).",
    )
    floor_fraction: float = setting(
        0.1,
        env="RECSTOP_RATE_LIMIT_FLOOR_FRACTION",
        parse=parsers.finite_float,
        help="429s never lower the rate below this fraction of `RECSTOP_RATE_LIMIT_RPS`, in (0, 1].",
    )
    recover_fraction_per_s: float = setting(
        0.1,
        env="RECSTOP_RATE_LIMIT_RECOVER_FRACTION_PER_S",
        parse=parsers.finite_float,
        help="After a 429 the rate grows back by this fraction of `RECSTOP_RATE_LIMIT_RPS` per second.",
    )
    cooldown_s: float = setting(
        1.0,
        env="RECSTOP_RATE_LIMIT_COOLDOWN_S",
        parse=parsers.finite_float,
        help="429s within this many seconds of the last decrease lower the rate only once.",
    )
    retry_after_cap_s: float = setting(
        30.0,
        env="RECSTOP_RATE_LIMIT_RETRY_AFTER_CAP_S",
        parse=parsers.finite_float,
        help="Longest Retry-After for which the limiter holds back every request of the account.",
    )
    max_wait_s: float = setting(
        30.0,
        env="RECSTOP_RATE_LIMIT_MAX_WAIT_S",
        parse=parsers.finite_float,
        help="Longest wait for a slot; a stop that would wait longer goes back to the queue.",
    )

    def __post_init__(self) -> None:
        cls = type(self)
        for name, value in vars(self).items():
            require(math.isfinite(value), cls, name, f"must be a finite number, got {value!r}")
        require(self.rate_rps >= 0, cls, "rate_rps", f"must be >= 0 (0 = no limit), got {self.rate_rps}")
        require(self.max_reserve_s >= 0, cls, "max_reserve_s", f"must be >= 0, got {self.max_reserve_s}")
        require(
            0 < self.decrease_factor < 1,
            cls,
            "decrease_factor",
            f"must be in (0, 1), got {self.decrease_factor}",
        )
        require(
            0 < self.floor_fraction <= 1,
            cls,
            "floor_fraction",
            f"must be in (0, 1], got {self.floor_fraction}",
        )
        require(
            self.recover_fraction_per_s > 0,
            cls,
            "recover_fraction_per_s",
            f"must be > 0, got {self.recover_fraction_per_s}",
        )
        require(self.cooldown_s >= 0, cls, "cooldown_s", f"must be >= 0, got {self.cooldown_s}")
        require(
            self.retry_after_cap_s >= 0,
            cls,
            "retry_after_cap_s",
            f"must be >= 0, got {self.retry_after_cap_s}",
        )
        require(self.max_wait_s >= 0, cls, "max_wait_s", f"must be >= 0, got {self.max_wait_s}")
