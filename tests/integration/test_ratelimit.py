"""The shared per-account rate limiter on a real Redis: rate, sharing, 429 adaptation, urgency."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from support import free_port

from recstop.worker.config.ratelimit import RateLimitSettings
from recstop.worker.policy.ratelimit import RateLimiter, RateLimitWaitTooLong
from recstop.worker.state.keys import rate_key

pytestmark = pytest.mark.integration

ACCOUNT = "MA_RATETEST01"


@pytest.fixture
def client(redis_server):
    """A decoded client on the test's private Redis."""
    return redis_server.client()


def limiter_on(client, rate_rps, **overrides):
    """A limiter with the given rate and settings on ``client``."""
    return RateLimiter(client, RateLimitSettings(rate_rps=rate_rps, **overrides))


def field(client, name):
    """One float field of the test account's rate hash."""
    return float(client.hget(rate_key(ACCOUNT), name))


def server_now(client):
    """Redis server time in seconds."""
    seconds, micros = client.time()
    return seconds + micros / 1e6


def timed(client, call):
    """``call()`` with Redis' clock read just before and just after it: (before, result, after)."""
    before = server_now(client)
    result = call()
    return before, result, server_now(client)


def waits_until(wait_s, slot, before, after):
    """A wait the script computed at some instant between ``before`` and ``after`` ends at ``slot``.

    Exact against Redis' own clock, however long this loaded machine took between the calls.
    """
    return slot - after - 1e-6 <= wait_s <= slot - before + 1e-6


def run_grants(limiters, total, threads_per_limiter):
    """Threads on every limiter take ``total`` slots between them; the sorted grant times."""
    times, lock = [], threading.Lock()
    tickets = iter(range(total))

    def work(limiter):
        while True:
            with lock:
                if next(tickets, None) is None:
                    return
            limiter.wait_for_slot(ACCOUNT)
            at = time.monotonic()
            with lock:
                times.append(at)

    threads = [
        threading.Thread(target=work, args=(lim,)) for lim in limiters for _ in range(threads_per_limiter)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(times) == total
    return sorted(times)


def max_in_window(times, window_s=1.0):
    """The most grant times any half-open window of ``window_s`` seconds holds."""
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + window_s:
            j += 1
        best = max(best, j - i)
    return best


def assert_paced(times, rate_rps):
    """The grants ran at 95-101 % of the rate and no 1 s window went 5 % over it."""
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert 0.95 * rate_rps <= achieved <= 1.01 * rate_rps, achieved
    assert max_in_window(times) <= 1.05 * rate_rps


def test_threads_are_paced_at_the_configured_rate(client):
    """8 threads taking 400 slots at 200/s achieve 95-101 % of it and no 1 s window exceeds 210."""
    times = run_grants([limiter_on(client, 200)], total=400, threads_per_limiter=8)
    assert_paced(times, 200)


def test_separate_clients_share_one_limit(redis_server):
    """Two limiters on two connections (as two processes) together stay at the account's rate."""
    limiters = [limiter_on(redis_server.client(), 200), limiter_on(redis_server.client(), 200)]
    times = run_grants(limiters, total=300, threads_per_limiter=4)
    assert_paced(times, 200)


def test_penalize_decreases_once_per_cooldown_and_recovers_linearly(client):
    """A 429 halves the rate, a second inside the cooldown does not, and the rate recovers 10/s per s."""
    lim = limiter_on(client, 100, decrease_factor=0.5, recover_fraction_per_s=0.1, cooldown_s=3.0)
    assert lim.penalize(ACCOUNT) == pytest.approx(50.0)
    penalized_at = field(client, "penalized_at")
    assert 50.0 <= lim.penalize(ACCOUNT) < 50.5
    assert field(client, "rate") == 50.0
    assert field(client, "penalized_at") == penalized_at
    first, second = lim.acquire(ACCOUNT), lim.acquire(ACCOUNT)
    assert first.rate_rps == pytest.approx(50.0, abs=0.5)
    assert second.wait_s - first.wait_s == pytest.approx(1 / 50, abs=0.002)

    # Recovery, read against Redis time: pretend the penalty happened ``ago`` seconds earlier.
    for ago, expected in [(2.0, 70.0), (4.0, 90.0), (10.0, 100.0)]:
        client.hset(rate_key(ACCOUNT), "penalized_at", f"{server_now(client) - ago:.6f}")
        assert lim.effective_rate(ACCOUNT) == pytest.approx(expected, abs=0.2)

    # Past the cooldown, the next 429 decreases from the recovered rate.
    client.hset(rate_key(ACCOUNT), "penalized_at", f"{server_now(client) - 3.0:.6f}")
    assert lim.penalize(ACCOUNT) == pytest.approx(40.0, abs=0.2)


def test_penalize_never_goes_below_the_floor(client):
    """Repeated 429s without a cooldown stop at floor_fraction of the configured rate."""
    lim = limiter_on(client, 100, decrease_factor=0.5, floor_fraction=0.1, cooldown_s=0.0)
    rates = [lim.penalize(ACCOUNT) for _ in range(6)]
    assert rates[:3] == [pytest.approx(50, abs=0.1), pytest.approx(25, abs=0.1), pytest.approx(12.5, abs=0.1)]
    assert rates[-1] == 10.0


def test_retry_after_blocks_acquire_until_then(client):
    """After a Retry-After of 0.5 s the next slot is 0.5 s away; a huge one is capped and not reserved."""
    lim = limiter_on(client, 100, retry_after_cap_s=30.0)
    before, _, after = timed(client, lambda: lim.penalize(ACCOUNT, retry_after_s=0.5))
    blocked = field(client, "blocked_until")
    assert before + 0.5 <= blocked <= after + 0.5
    grant = timed(client, lambda: lim.acquire(ACCOUNT))
    assert grant[1].reserved
    assert waits_until(grant[1].wait_s, blocked, grant[0], grant[2])
    urgent = timed(client, lambda: lim.acquire(ACCOUNT, urgent=True))
    assert waits_until(urgent[1].wait_s, blocked, urgent[0], urgent[2])

    before, _, after = timed(client, lambda: lim.penalize(ACCOUNT, retry_after_s=3600))
    capped = field(client, "blocked_until")
    assert before + 30.0 <= capped <= after + 30.0
    grant = timed(client, lambda: lim.acquire(ACCOUNT))
    assert not grant[1].reserved
    assert waits_until(grant[1].wait_s, capped, grant[0], grant[2])
    lim.penalize(ACCOUNT, retry_after_s=0.1)  # a shorter Retry-After never shortens the block
    assert field(client, "blocked_until") == capped


def test_urgent_skips_reserved_slots_but_pushes_them_one_interval(client):
    """With routine slots reserved 1 s ahead an urgent stop goes now; routine slots move by 1/rate."""
    lim = limiter_on(client, 10, max_reserve_s=2.0)
    for _ in range(10):
        assert lim.acquire(ACCOUNT).reserved
    slot = field(client, "tat")  # the next routine slot, about 1 s ahead
    eleventh = timed(client, lambda: lim.acquire(ACCOUNT))
    assert waits_until(eleventh[1].wait_s, slot, eleventh[0], eleventh[2])
    assert eleventh[1].wait_s > 0.5  # reserved ahead: ten slots of 0.1 s were taken before it
    tat = field(client, "tat")
    urgent = lim.acquire(ACCOUNT, urgent=True)
    assert urgent.reserved
    assert urgent.wait_s == 0.0
    assert field(client, "tat") == pytest.approx(tat + 0.1, abs=1e-6)
    routine = timed(client, lambda: lim.acquire(ACCOUNT))
    assert waits_until(routine[1].wait_s, tat + 0.1, routine[0], routine[2])


def test_rate_zero_never_touches_redis():
    """With no limit configured a client on a closed port is never used."""
    no_retry = Retry(NoBackoff(), 0)
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=no_retry)
    with pytest.raises(redis.ConnectionError):
        dead.ping()
    lim = limiter_on(dead, 0)
    assert lim.acquire(ACCOUNT).reserved
    assert lim.acquire(ACCOUNT, urgent=True).wait_s == 0.0
    assert lim.wait_for_slot(ACCOUNT, deadline_s=0.0) == 0.0
    assert lim.penalize(ACCOUNT, retry_after_s=10) == 0.0
    assert lim.effective_rate(ACCOUNT) == 0.0


def test_slot_beyond_max_reserve_is_not_reserved(client):
    """With 0.5 s reserved ahead, the next grant comes back reserved=False and tat is unchanged."""
    lim = limiter_on(client, 10, max_reserve_s=0.5)
    assert all(lim.acquire(ACCOUNT).reserved for _ in range(6))
    tat = client.hget(rate_key(ACCOUNT), "tat")
    before, grant, after = timed(client, lambda: lim.acquire(ACCOUNT))
    assert not grant.reserved
    assert waits_until(grant.wait_s, float(tat), before, after)
    assert client.hget(rate_key(ACCOUNT), "tat") == tat
    assert 3500 < client.ttl(rate_key(ACCOUNT)) <= 3600


def test_wait_for_slot_asks_again_for_a_slot_beyond_max_reserve(client):
    """A slot 0.5 s ahead with max_reserve_s 0.2: sleep 0.3 s unreserved, then 0.2 s reserved."""
    ahead = limiter_on(client, 10, max_reserve_s=2.0)
    for _ in range(5):
        assert ahead.acquire(ACCOUNT).reserved
    lim = limiter_on(client, 10, max_reserve_s=0.2)
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        time.sleep(seconds)

    slot = field(client, "tat")  # 0.5 s ahead when the wait starts
    before, total, after = timed(client, lambda: lim.wait_for_slot(ACCOUNT, sleep=sleep))
    assert len(slept) == 2
    assert waits_until(slept[0] + 0.2, slot, before, after)  # unreserved: wait less the reserve
    assert 0 < slept[1] <= 0.2  # then reserved, within max_reserve_s
    assert waits_until(total, slot, before, after)


def test_wait_for_slot_past_the_deadline_raises_without_reserving(client):
    """A slot 0.5 s ahead and a deadline of 0.3 s: RateLimitWaitTooLong, no sleep, tat unchanged."""
    lim = limiter_on(client, 10, max_reserve_s=2.0)
    for _ in range(5):
        lim.acquire(ACCOUNT)
    tat = client.hget(rate_key(ACCOUNT), "tat")
    slept = []
    with pytest.raises(RateLimitWaitTooLong, match=r"past the deadline of 0\.300s"):
        lim.wait_for_slot(ACCOUNT, sleep=slept.append, deadline_s=0.3)
    assert slept == []
    assert client.hget(rate_key(ACCOUNT), "tat") == tat


def test_a_spare_slot_is_taken_only_when_no_stop_has_reserved_ahead(client):
    """Lookups take what DELETEs leave: refused while routine slots are reserved ahead, granted once free."""
    lim = limiter_on(client, 10, max_reserve_s=2.0)
    assert lim.spare_slot(ACCOUNT).reserved  # nothing reserved: the slot is free now
    for _ in range(5):
        assert lim.acquire(ACCOUNT).reserved  # DELETEs reserve the next 0.5 s
    tat = client.hget(rate_key(ACCOUNT), "tat")
    before, spare, after = timed(client, lambda: lim.spare_slot(ACCOUNT))
    assert not spare.reserved
    assert waits_until(spare.wait_s, float(tat), before, after)
    assert client.hget(rate_key(ACCOUNT), "tat") == tat  # a refused lookup takes nothing from them
