"""Retry timing as pure functions: exponential backoff with jitter, and Retry-After parsing."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from recstop.worker.config.settings import Jitter

#: The longest Retry-After taken from a response (about 116 days); retry_delay caps it further.
MAX_RETRY_AFTER_S: Final = 10**7


def compute_backoff(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    jitter: Jitter,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    The ceiling doubles from ``base_s`` up to ``cap_s``; ``full`` jitter draws uniformly from
    [0, ceiling] (the AWS "full jitter" scheme), ``equal`` from [ceiling/2, ceiling].
    """
    exponent = min(max(attempt - 1, 0), 62)
    ceiling = min(cap_s, base_s * (2.0**exponent))
    if jitter == "full":
        return ceiling * rand()
    if jitter == "equal":
        return ceiling / 2 + ceiling / 2 * rand()
    return ceiling


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date), if valid."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # "²" passes str.isdigit, yet int() refuses it
        # Long digit strings are clamped as text: int() refuses 4,300+ digits, float() overflows.
        seconds = MAX_RETRY_AFTER_S if len(text) > 9 else min(int(text), MAX_RETRY_AFTER_S)  # noqa: PLR2004
        return float(seconds)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return min(max(0.0, (moment - current).total_seconds()), float(MAX_RETRY_AFTER_S))


def retry_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    jitter: Jitter,
    retry_after_s: float | None,
    retry_after_cap_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """The wait before the next attempt: the backoff, but never less than a capped Retry-After."""
    delay = compute_backoff(attempt, base_s=base_s, cap_s=cap_s, jitter=jitter, rand=rand)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, retry_after_cap_s))
    return delay
