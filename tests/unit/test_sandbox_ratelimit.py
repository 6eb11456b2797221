"""The sandbox's per-account rate limit: token buckets, 429 answers, control API and CLI."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

import recstop.sandbox.__main__ as sandbox_main
from recstop.sandbox import SandboxClient, SandboxError, SandboxServer
from recstop.sandbox.ratelimit import RateLimiter, default_burst, retry_after_s

AUTH_ID = "MA_LIMITED01"
TOKEN = "tok-limited-secret"
OTHER_ID = "MA_OTHER02"
OTHER_TOKEN = "tok-other-secret"
SLOW = 0.01  # one token per 100 s: within a test, a drained bucket stays drained


@pytest.fixture
def server():
    accounts = {AUTH_ID: TOKEN, OTHER_ID: OTHER_TOKEN}
    with SandboxServer(accounts=accounts, auto_calls=True, nothing_to_stop="204") as running:
        yield running


@pytest.fixture
def client(server):
    with SandboxClient(server.base_url) as control:
        yield control


@pytest.fixture
def session():
    with requests.Session() as http:
        yield http


def stop(server, session, call_uuid="call-1", *, auth_id=AUTH_ID, token=TOKEN, method="DELETE"):
    url = f"{server.base_url}/api/v1/Account/{auth_id}/Call/{call_uuid}/Record/"
    return session.request(method, url, headers={"X-Auth-ID": auth_id, "X-Auth-Token": token}, timeout=5)


def statuses(server, session, count, **kwargs):
    return [
        stop(server, session, f"call-{kwargs.get('auth_id', AUTH_ID)}-{i}", **kwargs).status_code
        for i in range(count)
    ]


def put_config(server, body):
    data = json.dumps(body)  # NaN and Infinity too, as Python's JSON parser reads them
    headers = {"Content-Type": "application/json"}
    return requests.put(f"{server.base_url}/_sandbox/config", data=data, headers=headers, timeout=5)


# -- the token bucket, with an injected clock ---------------------------------------------------


def test_bucket_starts_full_and_refuses_when_empty():
    """A fresh bucket allows ``burst`` requests at once, then refuses with the time to the next token."""
    limiter = RateLimiter(10, burst=3)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [None, None, None]
    assert limiter.take("a", 0.0) == pytest.approx(0.1)
    assert limiter.take("a", 0.04) == pytest.approx(0.06)


def test_bucket_refills_at_the_rate_and_refusals_take_nothing():
    """Tokens come back at ``rate_rps``; a refused request does not use up the partial token."""
    limiter = RateLimiter(10, burst=2)
    assert [limiter.take("a", 0.0) for _ in range(2)] == [None, None]
    assert limiter.take("a", 0.05) == pytest.approx(0.05)
    assert limiter.take("a", 0.1) is None
    assert limiter.take("a", 0.25) is None  # 1.5 tokens: one taken, half left
    assert limiter.take("a", 0.25) == pytest.approx(0.05)
    assert limiter.take("a", 0.3) is None


def test_bucket_never_holds_more_than_burst():
    """After a long idle spell, only ``burst`` requests pass at once."""
    limiter = RateLimiter(100, burst=4)
    assert limiter.take("a", 0.0) is None
    allowed = [limiter.take("a", 1000.0) is None for _ in range(6)]
    assert allowed == [True] * 4 + [False] * 2


def test_bucket_counts_a_whole_token_despite_float_rounding():
    """0.3 - 0.2 s at 10/s is a whole token although the float difference is a hair below 0.1."""
    assert (0.3 - 0.2) * 10 < 1
    limiter = RateLimiter(10, burst=1)
    assert limiter.take("a", 0.2) is None
    assert limiter.take("a", 0.3) is None


def test_buckets_are_per_account():
    """Draining one account's bucket leaves another's full."""
    limiter = RateLimiter(1, burst=2)
    assert [limiter.take("a", 0.0) is None for _ in range(3)] == [True, True, False]
    assert [limiter.take("b", 0.0) is None for _ in range(3)] == [True, True, False]


def test_a_clock_stepping_back_refills_nothing():
    """An earlier ``now`` than the bucket's last one adds no tokens and loses none."""
    limiter = RateLimiter(10, burst=1)
    assert limiter.take("a", 5.0) is None
    assert limiter.take("a", 4.0) == pytest.approx(0.1)
    assert limiter.take("a", 5.1) is None


def test_limit_off_allows_everything():
    """A rate of ``None`` or 0 never refuses."""
    for limiter in (RateLimiter(), RateLimiter(0), RateLimiter(None, burst=1)):
        assert limiter.rate_rps is None
        assert all(limiter.take("a", 0.0) is None for _ in range(1000))


def test_default_burst_is_50_ms_worth_and_at_least_one():
    """The default bucket holds ``max(1, round(rate_rps * 0.05))`` tokens."""
    assert [default_burst(rate) for rate in (0.5, 5, 20, 100, 1000)] == [1, 1, 1, 5, 50]
    assert RateLimiter(1000).burst == 50
    assert RateLimiter(1000, burst=7).burst == 7


def test_retry_after_rounds_up_to_whole_seconds_at_least_one():
    """``Retry-After`` seconds round any fraction up, never below 1, ignoring float dust."""
    waits = (0.0, 0.001, 0.2, 1.0, 1.0 + 1e-12, 1.01, 2.0, 99.5)
    assert [retry_after_s(wait) for wait in waits] == [1, 1, 1, 1, 1, 2, 2, 100]


@pytest.mark.parametrize(
    ("rate", "burst"), [(-1, None), (float("nan"), None), (float("inf"), None), (5, 0), (5, -3)]
)
def test_bad_limiter_parameters_are_refused(rate, burst):
    """Negative or non-finite rates and bursts below 1 raise ``ValueError``."""
    with pytest.raises(ValueError, match="rate_limit"):
        RateLimiter(rate, burst)


def test_concurrent_takes_hand_out_exactly_burst_tokens():
    """Threads racing on one bucket get exactly ``burst`` tokens between them."""
    limiter = RateLimiter(1, burst=100)
    allowed = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        allowed.append(sum(limiter.take("a", 0.0) is None for _ in range(50)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100


# -- over HTTP ---------------------------------------------------------------------------------


def test_limit_is_off_by_default(server, client, session):
    """Without a configured limit nothing is refused and the config says so."""
    assert 429 not in statuses(server, session, 50)
    assert client.config() == {
        "auto_calls": True,
        "nothing_to_stop": "204",
        "rate_limit_rps": 0.0,
        "rate_limit_burst": None,
        "rate_limited": 0,
        "finalize_delay_s": 0.5,
    }


def test_quick_requests_beyond_the_rate_get_429_with_retry_after(server, client, session):
    """At 5/s with burst 1, 20 quick requests pass only ``burst + elapsed * rate``; the rest get 429."""
    client.configure(rate_limit_rps=5, rate_limit_burst=1)
    started = time.monotonic()
    responses = [stop(server, session, f"call-{i}") for i in range(20)]
    elapsed = time.monotonic() - started
    passed = [r for r in responses if r.status_code != 429]
    refused = [r for r in responses if r.status_code == 429]
    assert {r.status_code for r in passed} == {204}
    assert responses[0].status_code == 204
    assert 1 <= len(passed) <= 1 + elapsed * 5 + 1e-6
    for response in refused:
        assert response.headers["Retry-After"] == "1"
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert set(body) == {"status", "error", "requestId"}
        assert body["status"] == "error"
        assert body["error"] == {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Rate limit exceeded.",
            "details": {"retryAfter": 1},
        }
    assert client.rate_limited() == len(refused)


def test_refused_requests_are_logged_with_their_retry_after(server, client, session):
    """The request log records each 429 with the header and body ``retryAfter`` it sent."""
    client.configure(rate_limit_rps=SLOW, rate_limit_burst=1)
    assert statuses(server, session, 3) == [204, 429, 429]
    logged = client.requests()
    assert [entry["status"] for entry in logged] == [204, 429, 429]
    for entry in logged[1:]:
        assert entry["retry_after"] == str(entry["retry_after_body"])
        assert entry["retry_after_body"] in {99, 100}
        assert entry["fault"] is None


def test_a_429_does_not_stop_the_recording(server, client, session):
    """A refused stop leaves the call's recording running."""
    client.configure(rate_limit_rps=SLOW, rate_limit_burst=1)
    call_uuid = client.create_call(AUTH_ID)
    url = client.start_recording(call_uuid)
    assert stop(server, session, "call-first").status_code == 204
    assert stop(server, session, call_uuid).status_code == 429
    assert client.call(call_uuid)["recordings"] == [url]


def test_each_account_has_its_own_bucket(server, client, session):
    """Draining one account's bucket does not refuse another account."""
    client.configure(rate_limit_rps=SLOW, rate_limit_burst=2)
    assert statuses(server, session, 3) == [204, 204, 429]
    assert statuses(server, session, 3, auth_id=OTHER_ID, token=OTHER_TOKEN) == [204, 204, 429]


def test_refused_credentials_and_methods_are_not_counted(server, client, session):
    """401, 403 and 405 answers take no token; the next good request still passes."""
    client.configure(rate_limit_rps=SLOW, rate_limit_burst=1)
    assert set(statuses(server, session, 5, token="wrong-token")) == {401}
    assert set(statuses(server, session, 5, auth_id=OTHER_ID, token=TOKEN)) == {401}
    assert set(statuses(server, session, 5, method="PUT")) == {405}
    client.update_account(AUTH_ID, active=False)
    assert set(statuses(server, session, 5)) == {403}
    client.update_account(AUTH_ID, active=True)
    assert statuses(server, session, 2) == [204, 429]
    assert client.rate_limited() == 1


def test_changing_the_limit_at_run_time_takes_effect_at_once(server, client, session):
    """Each change starts buckets full; burst-only changes keep the rate; 0 turns the limit off."""
    client.configure(rate_limit_rps=SLOW, rate_limit_burst=1)
    assert statuses(server, session, 2) == [204, 429]
    client.configure(rate_limit_burst=3)
    assert client.config()["rate_limit_rps"] == SLOW
    assert statuses(server, session, 4) == [204, 204, 204, 429]
    assert put_config(server, {"rate_limit_burst": None}).json()["rate_limit_burst"] is None
    assert statuses(server, session, 2) == [204, 429]  # the default burst at 0.01/s is 1
    client.configure(rate_limit_rps=0)
    assert 429 not in statuses(server, session, 20)
    assert client.rate_limited() == 3


def test_put_config_answers_with_the_new_settings(server):
    """``PUT /_sandbox/config`` returns the whole config, rate limit fields included."""
    response = put_config(server, {"rate_limit_rps": 250, "rate_limit_burst": 10})
    assert response.status_code == 200
    body = response.json()
    assert (body["rate_limit_rps"], body["rate_limit_burst"], body["rate_limited"]) == (250.0, 10, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate_limit_rps": -1}, "rate_limit_rps"),
        ({"rate_limit_rps": "5"}, "rate_limit_rps"),
        ({"rate_limit_rps": True}, "rate_limit_rps"),
        ({"rate_limit_rps": float("nan")}, "rate_limit_rps"),
        ({"rate_limit_rps": float("inf")}, "rate_limit_rps"),
        ({"rate_limit_burst": 0}, "rate_limit_burst"),
        ({"rate_limit_burst": -2}, "rate_limit_burst"),
        ({"rate_limit_burst": 1.5}, "rate_limit_burst"),
        ({"rate_limit_burst": "3"}, "rate_limit_burst"),
        ({"rate_limit_burst": False}, "rate_limit_burst"),
        ({"rate_limit_burst": 10**12}, "rate_limit_burst"),
        ({"auto_calls": False, "rate_limit_rps": 5, "rate_limit_burst": 0}, "rate_limit_burst"),
    ],
)
def test_bad_rate_limit_config_is_a_400_with_a_reason_and_changes_nothing(server, client, body, field):
    """Negative rates, bursts below 1 and wrong types are refused and leave the config as it was."""
    before = client.config()
    response = put_config(server, body)
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert client.config() == before


def test_client_configure_reports_errors(client):
    """``SandboxClient.configure`` raises ``SandboxError`` for a bad rate limit."""
    with pytest.raises(SandboxError) as raised:
        client.configure(rate_limit_rps=-5)
    assert raised.value.status == 400
    assert "rate_limit_rps" in raised.value.reason


def test_server_arguments_set_the_limit(session):
    """``SandboxServer(rate_limit_rps=..., rate_limit_burst=...)`` starts with the limit on."""
    with (
        SandboxServer(
            accounts={AUTH_ID: TOKEN}, auto_calls=True, rate_limit_rps=SLOW, rate_limit_burst=2
        ) as server,
        SandboxClient(server.base_url) as client,
    ):
        assert statuses(server, session, 3) == [204, 204, 429]
        assert client.config()["rate_limit_burst"] == 2
        assert client.rate_limited() == 1


def test_cli_flags_reach_serve(monkeypatch):
    """``--rate-limit`` and ``--rate-limit-burst`` are passed to ``serve``; both default to off/default."""
    seen = []
    monkeypatch.setattr(sandbox_main, "serve", lambda *_, **kwargs: seen.append(kwargs))
    sandbox_main.main(["--rate-limit", "12.5", "--rate-limit-burst", "4"])
    sandbox_main.main([])
    assert [(k["rate_limit_rps"], k["rate_limit_burst"]) for k in seen] == [(12.5, 4), (None, None)]


@pytest.mark.parametrize("argv", [["--rate-limit", "-1"], ["--rate-limit", "x"], ["--rate-limit-burst", "0"]])
def test_cli_refuses_bad_flags(monkeypatch, argv):
    """Bad ``--rate-limit``/``--rate-limit-burst`` values stop argument parsing."""
    monkeypatch.setattr(sandbox_main, "serve", lambda *_, **__: pytest.fail("serve must not run"))
    with pytest.raises(SystemExit):
        sandbox_main.main(argv)
