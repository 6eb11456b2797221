"""Token buckets per account: how the sandbox imitates Vobiz's ``429 RATE_LIMIT_EXCEEDED``.

Each auth id gets a bucket that holds up to ``burst`` tokens, starts full and refills at ``rate_rps``
tokens per second; every counted request takes one token, and a request that finds less than one is
refused with the seconds until the next token. ``burst`` defaults to 50 ms worth of requests,
``max(1, round(rate_rps * 0.05))``, so a client pacing evenly at ``rate_rps`` is never refused while a
burst beyond that is. A ``rate_rps`` of ``None`` or ``0`` turns the limit off. Checks are O(1).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Final

DEFAULT_BURST_S: Final = 0.05
MAX_BURST: Final = 1_000_000_000
_SLACK: Final = 1e-9  # float rounding: 0.1 s at 10/s is one whole token, not 0.9999999999


def default_burst(rate_rps: float) -> int:
    """Return the default bucket size for ``rate_rps``: 50 ms worth of requests, at least 1."""
    return max(1, round(rate_rps * DEFAULT_BURST_S))


def retry_after_s(wait_s: float) -> int:
    """Return a wait as whole ``Retry-After`` seconds: rounded up, at least 1."""
    return max(1, math.ceil(wait_s - _SLACK))


class RateLimiter:
    """One token bucket per auth id; thread-safe with its own lock (callers may hold the state lock)."""

    def __init__(self, rate_rps: float | None = None, burst: int | None = None) -> None:
        if rate_rps is not None and not (math.isfinite(rate_rps) and rate_rps >= 0):
            raise ValueError(f"rate_limit_rps must be a finite number >= 0, not {rate_rps!r}")
        if burst is not None and not 1 <= burst <= MAX_BURST:
            raise ValueError(f"rate_limit_burst must be an integer in [1, {MAX_BURST}], not {burst!r}")
        self.rate_rps: Final = float(rate_rps) if rate_rps else None
        self.burst: Final = burst if burst is not None else default_burst(rate_rps or 0.0)
        self._buckets: dict[str, tuple[float, float]] = {}  # auth id -> (tokens, as of monotonic time)
        self._lock = threading.Lock()

    def take(self, auth_id: str, now: float | None = None) -> float | None:
        """Take one token: ``None`` when allowed, else the seconds until a token is available."""
        rate = self.rate_rps
        if rate is None:
            return None
        with self._lock:
            if now is None:
                now = time.monotonic()
            tokens, then = self._buckets.get(auth_id, (float(self.burst), now))
            if now > then:  # a clock that steps back refills nothing
                tokens, then = min(float(self.burst), tokens + (now - then) * rate), now
            if tokens >= 1.0 - _SLACK:
                self._buckets[auth_id] = (tokens - 1.0, then)
                return None
            self._buckets[auth_id] = (tokens, then)
            return (1.0 - tokens) / rate
