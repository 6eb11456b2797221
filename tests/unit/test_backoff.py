"""Backoff is a pure function: exponential ceiling, jitter within it, Retry-After as a floor."""

from __future__ import annotations

import random

import pytest

from recstop.worker.policy.backoff import compute_backoff, retry_delay


def test_ceiling_doubles_until_the_cap():
    """Without jitter the delay is base, 2·base, 4·base … up to the cap."""
    delays = [compute_backoff(n, base_s=1, cap_s=10, jitter="none") for n in range(1, 7)]
    assert delays == [1, 2, 4, 8, 10, 10]


def test_full_jitter_stays_within_zero_and_ceiling():
    """Full jitter draws from [0, ceiling] and uses the whole range."""
    rng = random.Random(7)
    draws = [compute_backoff(4, base_s=1, cap_s=100, jitter="full", rand=rng.random) for _ in range(2000)]
    assert min(draws) >= 0
    assert max(draws) <= 8
    assert min(draws) < 0.5
    assert max(draws) > 7.5


def test_equal_jitter_keeps_half_the_ceiling():
    """Equal jitter draws from [ceiling/2, ceiling]."""
    rng = random.Random(3)
    draws = [compute_backoff(3, base_s=1, cap_s=100, jitter="equal", rand=rng.random) for _ in range(500)]
    assert all(2 <= d <= 4 for d in draws)


def test_huge_attempt_numbers_do_not_overflow():
    """Attempt 10,000 is just the cap."""
    assert compute_backoff(10_000, base_s=1, cap_s=30, jitter="none") == 30


@pytest.mark.parametrize(("retry_after", "expected"), [(None, 1.0), (5.0, 5.0), (0.5, 1.0), (10_000.0, 60.0)])
def test_retry_after_is_a_capped_floor(retry_after, expected):
    """Retry-After raises the delay, but never beyond its cap."""
    delay = retry_delay(1, base_s=1, cap_s=30, jitter="none", retry_after_s=retry_after, retry_after_cap_s=60)
    assert delay == expected
