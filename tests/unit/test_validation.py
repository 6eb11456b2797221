"""Validation: the same rules protect the producer and the worker."""

from __future__ import annotations

import pytest

from recstop.worker.model.errors import InvalidStopRequest
from recstop.worker.model.validation import decode_task_message, validate_stop
from recstop.worker.state.keys import stop_key, target_of

GOOD = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"


@pytest.mark.parametrize(
    "call_uuid",
    [
        "",
        "a/b",
        "..",
        "../x",
        GOOD + "/../other",
        GOOD + "?x=1",
        GOOD + "#f",
        GOOD + "\r\n",
        "x" * 5000,
        GOOD[:-1],
        GOOD + "0",
        f" {GOOD}",
        None,
        42,
        ["x"],
    ],
)
def test_bad_call_uuid_is_rejected(call_uuid):
    """A call_uuid that is not exactly UUID-shaped is rejected."""
    with pytest.raises(InvalidStopRequest, match="call_uuid"):
        validate_stop(call_uuid)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x.mp3",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//host/x",
        "http://",
        "no-scheme",
        "https://h/" + "a" * 3000,
        "https://h/x\r\nX-Injected: 1",
        "https://h/a b",
        5,
    ],
)
def test_bad_url_is_rejected(url):
    """Only absolute http(s) URLs without whitespace or control characters, ≤ 2048 chars."""
    with pytest.raises(InvalidStopRequest, match="url"):
        validate_stop(GOOD, url)


@pytest.mark.parametrize(
    "auth_id", ["", "MA", "XX_ABCDEFGH", "MA_ABC/../x", "MA_" + "A" * 80, "ma_abcdefgh", 7]
)
def test_bad_auth_id_is_rejected(auth_id):
    """auth_id must look like MA_... or SA_...."""
    with pytest.raises(InvalidStopRequest, match="auth_id"):
        validate_stop(GOOD, None, auth_id)


def test_good_request_round_trips_to_task_kwargs():
    """A valid request becomes JSON-safe task kwargs and decodes back to itself."""
    request = validate_stop(
        GOOD, "https://media.example/rec/1.mp3", "MA_ABCDEFGH", "req-1", "2030-01-01T00:00:00Z"
    )
    assert decode_task_message((), request.to_kwargs()) == request


@pytest.mark.parametrize("not_after", ["tomorrow", "2030-01-01T00:00:00", 12, "9" * 100])
def test_not_after_must_be_an_aware_iso_time(not_after):
    """not_after must be ISO-8601 with a timezone."""
    with pytest.raises(InvalidStopRequest, match="not_after"):
        validate_stop(GOOD, not_after=not_after)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((GOOD,), {}, "args"),
        ((), [GOOD], "kwargs"),
        ((), {"call_uuid": GOOD, "token": "x"}, "kwargs"),
        ((), {}, "call_uuid"),
        ((), {"call_uuid": 5}, "call_uuid"),
        ((), {"call_uuid": GOOD, "url": ["x"]}, "url"),
    ],
)
def test_task_messages_must_be_known_keyword_arguments(args, kwargs, field):
    """The worker accepts keyword arguments with known names and types only."""
    with pytest.raises(InvalidStopRequest, match=field):
        decode_task_message(args, kwargs)


def test_stop_keys_separate_stop_all_from_each_url():
    """Stop-all and each URL are distinct keys; the key ignores call_uuid case."""
    assert target_of(None) == "all"
    assert target_of("https://a/1") != target_of("https://a/2")
    assert stop_key(GOOD.upper(), None) == stop_key(GOOD, None) == f"{GOOD}/all"
    assert stop_key(GOOD, "https://a/1").startswith(f"{GOOD}/url-")
