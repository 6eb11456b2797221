"""Bad input: a clear error at the producer and the CLI; a dead letter in the worker."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from support import cli, final, publish_raw, wait_for

from recstop.producers import StopSpec
from recstop.worker.model.errors import InvalidBulkItem, InvalidStopRequest, UnknownAccountError
from recstop.worker.model.validation import StopRequest
from recstop.worker.state.acl import Role
from recstop.worker.state.enqueue import NewStop

pytestmark = pytest.mark.integration
GOOD = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"

BAD_CALLS = ["a/b", "..", GOOD + "?x=1", GOOD + "#frag", GOOD + "\r\nX: 1", "", "f" * 300]
BAD_URLS = ["ftp://host/rec.mp3", "https://h/" + "a" * 3000]


@pytest.mark.parametrize("call_uuid", BAD_CALLS)
def test_producer_rejects_bad_call_uuid(producer, redis_server, call_uuid):
    """A hostile or malformed call_uuid raises InvalidStopRequest before anything is stored."""
    with pytest.raises(InvalidStopRequest, match="call_uuid"):
        producer.stop_recording(call_uuid)
    assert redis_server.client().dbsize() == 0


@pytest.mark.parametrize("url", BAD_URLS)
def test_producer_rejects_bad_url(producer, url):
    """A non-http(s) or over-long URL raises InvalidStopRequest."""
    with pytest.raises(InvalidStopRequest, match="url"):
        producer.stop_recording(GOOD, url)


def test_producer_rejects_unknown_account(producer):
    """An auth_id without configured credentials raises UnknownAccountError."""
    with pytest.raises(UnknownAccountError, match="MA_NOBODY99"):
        producer.stop_recording(GOOD, auth_id="MA_NOBODY99")


def test_producer_rejects_delay_and_at_together(producer):
    """Delay and at are exclusive; negative delays are refused."""
    with pytest.raises(InvalidStopRequest, match="delay"):
        producer.stop_recording(GOOD, delay=1, at="2030-01-01T00:00:00Z")
    with pytest.raises(InvalidStopRequest, match="delay"):
        producer.stop_recording(GOOD, delay=-1)


def _ago(**delta: float) -> str:
    """A UTC time that far in the past, ISO-8601 with its offset (as a caller would pass it)."""
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="seconds")


def test_an_at_in_the_past_is_refused_naming_it_unless_it_is_clock_skew(producer, redis_server):
    """An at years or minutes past is refused, naming it and how far back; seconds past is due now."""
    with pytest.raises(InvalidStopRequest) as years:
        producer.stop_recording(GOOD, at="2020-01-01T00:00:00Z")
    assert years.value.field == "at"
    assert str(years.value).startswith(
        "at: 2020-01-01T00:00:00+00:00 is 6 years in the past: a time up to 60 s"
    )
    assert "not_after" not in str(years.value)  # no --not-after was given: none is blamed
    ten = _ago(minutes=10)
    with pytest.raises(InvalidStopRequest, match=rf"^at: {re.escape(ten)} is (9|10) minutes in the past: "):
        producer.stop_recording(GOOD, at=ten)
    assert redis_server.client().dbsize() == 0
    skewed = producer.stop_recording(GOOD, at=_ago(seconds=5))  # a clock a few seconds behind
    assert (skewed.state, skewed.deduplicated) == ("queued", False)


def test_a_deadline_in_the_past_or_before_the_stop_is_due_names_what_was_given_and_defaulted(
    producer, redis_server
):
    """A not_after past or before at is named; Redis' clock refusing a default names RECSTOP_DEADLINE_S."""
    past = _ago(hours=3)
    with pytest.raises(InvalidStopRequest, match=rf"^not_after: {re.escape(past)} is 3 hours in the past$"):
        producer.stop_recording(GOOD, not_after=past)
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    early = (datetime.now(UTC) + timedelta(minutes=30)).isoformat(timespec="seconds")
    with pytest.raises(
        InvalidStopRequest,
        match=rf"^not_after: {re.escape(early)} is (29|30) minutes before .* \(at {re.escape(at)}\)",
    ):
        producer.stop_recording(GOOD, at=at, not_after=early)
    with pytest.raises(InvalidBulkItem, match=r"^stops\[1\]\.not_after: .* in the past"):
        producer.stop_recordings([str(uuid.uuid4()), StopSpec(GOOD, not_after=past)])
    assert redis_server.client().dbsize() == 0
    # The same check in enqueue.lua, by Redis' clock (a producer whose clock runs ahead of it).
    stale = NewStop(StopRequest(GOOD, auth_id="MA_TESTACCT01"), str(uuid.uuid4()), at_epoch=1577836800.0)
    with pytest.raises(InvalidStopRequest) as refused:
        producer.store.enqueues.enqueue(stale, urgent=False, origin=producer.origin)
    assert str(refused.value) == (
        "not_after: 2020-01-01T01:00:00.000+00:00 (by default the time the stop is due + 3600 s: "
        "RECSTOP_DEADLINE_S) is already past by Redis' clock (due at 2020-01-01T00:00:00.000+00:00)"
    )


def test_cli_refuses_an_at_in_the_past_in_one_line_and_takes_one_seconds_past(env):
    """`--at 2020-...` exits 2 with one line naming the time; a few seconds past is queued (exit 0)."""
    refused = cli(env, "enqueue", GOOD, "--at", "2020-01-01T00:00:00Z")
    assert refused.returncode == 2
    assert refused.stderr.startswith("recstop: error: at: 2020-01-01T00:00:00+00:00 is 6 years in the past: ")
    assert refused.stderr.count("\n") == 1
    assert refused.stdout == ""
    skewed = cli(env, "enqueue", GOOD, "--at", _ago(seconds=3))
    assert skewed.returncode == 0, skewed.stderr
    assert skewed.stdout.startswith("queued task_id=")


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "a/b"],
        ["enqueue", ".."],
        ["enqueue", GOOD + "?x"],
        ["enqueue", GOOD + "\r\n"],
        ["enqueue", ""],
        ["enqueue", GOOD, "--url", "ftp://x/y"],
        ["enqueue", GOOD, "--url", "https://h/" + "a" * 3000],
        ["enqueue", GOOD, "--auth-id", "MA_NOBODY99"],
        ["enqueue", GOOD, "--delay", "5", "--at", "2030-01-01T00:00:00Z"],
        ["enqueue", GOOD, "--at", "next tuesday"],
        ["status", "not-a-uuid"],
        ["frobnicate"],
    ],
)
def test_cli_exits_2_with_the_reason(env, args):
    """Bad input on the command line → exit 2 and the reason on stderr."""
    result = cli(env, *args)
    assert result.returncode == 2, result.stderr
    assert "error" in result.stderr


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        ((), {"call_uuid": "a/b"}, "call_uuid"),
        ((), {"call_uuid": ".."}, "call_uuid"),
        ((), {"call_uuid": GOOD + "\r\n"}, "call_uuid"),
        ((), {"call_uuid": ""}, "call_uuid"),
        ((), {"call_uuid": "x" * 5000}, "call_uuid"),
        ((), {"call_uuid": GOOD, "url": "ftp://x/y"}, "url"),
        ((), {"call_uuid": GOOD, "url": "https://h/" + "a" * 3000}, "url"),
        ((), {"call_uuid": GOOD, "auth_id": "not an id"}, "auth_id"),
        ((GOOD,), {}, "args"),
        ((), {"call_uuid": GOOD, "surprise": 1}, "kwargs"),
        ((), {}, "call_uuid"),
    ],
)
def test_raw_malformed_messages_are_dead_lettered(
    producer, start_worker, redis_server, call, args, kwargs, reason
):
    """Malformed raw messages → dead letter 'malformed' with the reason; the worker keeps serving."""
    worker = start_worker()
    task_id = publish_raw(redis_server.role_url(Role.PRODUCER), kwargs, args)
    entry = wait_for(lambda: next(iter(producer.dead_letters.list()), None), what="dead letter")
    assert entry.reason == "malformed"
    assert entry.task_id == task_id
    assert reason in entry.error
    assert worker.alive
    call_uuid = call()
    producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state == "stopped"


def test_malformed_dead_letter_cannot_be_replayed(producer, start_worker, redis_server):
    """Replaying a malformed message fails with a reason and keeps the entry."""
    start_worker()
    publish_raw(redis_server.role_url(Role.PRODUCER), {"call_uuid": "../../etc"})
    entry = wait_for(lambda: next(iter(producer.dead_letters.list()), None), what="dead letter")
    [result] = producer.replay([entry.id])
    assert "malformed" in result.error
    assert producer.dead_letters.count() == 1


def test_unknown_call_uuid_status_is_none(producer):
    """status() of a stop never enqueued is None."""
    assert producer.status(str(uuid.uuid4())) is None
