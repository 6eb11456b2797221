"""The rate limiter without Redis: settings validation and the wait_for_slot loop."""

from __future__ import annotations

import math

import pytest
import redis

from recstop.worker.config.ratelimit import RateLimitSettings
from recstop.worker.policy.ratelimit import MIN_RETRY_S, Grant, RateLimiter, RateLimitWaitTooLong


class Scripted(RateLimiter):
    """A limiter whose grants are scripted; its client points nowhere and is never used."""

    def __init__(self, settings, grants):
        super().__init__(redis.Redis(host="127.0.0.1", port=1), settings)
        self.grants = list(grants)
        self.asked = []

    def _acquire(self, auth_id, *, urgent, max_reserve_s):
        self.asked.append((auth_id, urgent, max_reserve_s))
        return self.grants.pop(0)


def run(limiter, **kwargs):
    slept = []
    total = limiter.wait_for_slot("MA_X", sleep=slept.append, **kwargs)
    return total, slept


def test_defaults_are_valid():
    """The documented defaults pass validation."""
    s = RateLimitSettings(rate_rps=5)
    assert (s.max_reserve_s, s.decrease_factor, s.floor_fraction) == (2.0, 0.5, 0.1)
    assert (s.recover_fraction_per_s, s.cooldown_s, s.retry_after_cap_s) == (0.1, 1.0, 30.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rate_rps", -1, "rate_rps must be >= 0"),
        ("rate_rps", math.inf, "rate_rps must be a finite number"),
        ("rate_rps", math.nan, "rate_rps must be a finite number"),
        ("max_reserve_s", -0.1, "max_reserve_s must be >= 0"),
        ("decrease_factor", 0, r"decrease_factor must be in \(0, 1\)"),
        ("decrease_factor", 1, r"decrease_factor must be in \(0, 1\)"),
        ("floor_fraction", 0, r"floor_fraction must be in \(0, 1\]"),
        ("floor_fraction", 1.5, r"floor_fraction must be in \(0, 1\]"),
        ("recover_fraction_per_s", 0, "recover_fraction_per_s must be > 0"),
        ("cooldown_s", -1, "cooldown_s must be >= 0"),
        ("retry_after_cap_s", -1, "retry_after_cap_s must be >= 0"),
    ],
)
def test_invalid_settings_are_refused(field, value, message):
    """Each out-of-range setting raises ValueError naming the field."""
    kwargs = {"rate_rps": 10.0, field: value}
    with pytest.raises(ValueError, match=f"RateLimitSettings: {message}"):
        RateLimitSettings(**kwargs)


def test_reserved_grant_sleeps_its_wait_once():
    """A reserved grant is slept once and its wait returned."""
    limiter = Scripted(RateLimitSettings(rate_rps=10), [Grant(0.25, reserved=True, rate_rps=10)])
    assert run(limiter) == (0.25, [0.25])
    assert limiter.asked == [("MA_X", False, 2.0)]


def test_zero_wait_does_not_sleep():
    """A slot that is due now is taken without calling sleep."""
    limiter = Scripted(RateLimitSettings(rate_rps=10), [Grant(0.0, reserved=True, rate_rps=10)])
    assert run(limiter, urgent=True) == (0.0, [])
    assert limiter.asked == [("MA_X", True, 2.0)]


def test_unreserved_grant_sleeps_until_within_reach_then_asks_again():
    """Beyond max_reserve_s the caller sleeps the excess, asks again, then sleeps the reserved wait."""
    grants = [Grant(3.0, reserved=False, rate_rps=10), Grant(1.9, reserved=True, rate_rps=10)]
    limiter = Scripted(RateLimitSettings(rate_rps=10), grants)
    total, slept = run(limiter)
    assert slept == [pytest.approx(1.0), 1.9]
    assert total == pytest.approx(2.9)


def test_tiny_excess_pauses_at_least_min_retry():
    """A slot just past max_reserve_s still pauses MIN_RETRY_S, so callers do not spin on Redis."""
    grants = [Grant(2.0001, reserved=False, rate_rps=10), Grant(1.99, reserved=True, rate_rps=10)]
    _, slept = run(Scripted(RateLimitSettings(rate_rps=10), grants))
    assert slept == [MIN_RETRY_S, 1.99]


def test_deadline_narrows_the_reservation_and_raises_without_sleeping():
    """The script may reserve only within the deadline; a later slot raises at once."""
    limiter = Scripted(RateLimitSettings(rate_rps=10), [Grant(1.6, reserved=False, rate_rps=10)])
    with pytest.raises(
        RateLimitWaitTooLong, match=r"'MA_X': next slot in 1\.600s, past the deadline of 1\.500s"
    ):
        run(limiter, deadline_s=1.5)
    assert limiter.asked == [("MA_X", False, 1.5)]


def test_deadline_allows_sleeping_toward_a_slot_within_it():
    """A slot beyond max_reserve_s but within the deadline is waited for; one past it raises."""
    grants = [Grant(3.0, reserved=False, rate_rps=10), Grant(1.9, reserved=True, rate_rps=10)]
    limiter = Scripted(RateLimitSettings(rate_rps=10), grants)
    total, _ = run(limiter, deadline_s=3.5)
    assert total == pytest.approx(2.9)
    assert [a[2] for a in limiter.asked] == [2.0, 2.0]
    far = Scripted(RateLimitSettings(rate_rps=10), [Grant(3.0, reserved=False, rate_rps=10)])
    with pytest.raises(RateLimitWaitTooLong):
        run(far, deadline_s=2.5)


def test_rate_zero_is_a_no_op():
    """With no limit configured every method answers at once and never asks for a grant."""
    limiter = Scripted(RateLimitSettings(rate_rps=0), [])
    assert limiter.acquire("MA_X") == Grant(0.0, reserved=True, rate_rps=0.0)
    assert run(limiter, deadline_s=0) == (0.0, [])
    assert limiter.penalize("MA_X", retry_after_s=5) == 0.0
    assert limiter.effective_rate("MA_X") == 0.0
