"""Bad input: a clear error at the producer and the CLI; a dead letter in the worker."""

from __future__ import annotations

import uuid

import pytest
from support import cli, final, publish_raw, wait_for

from recstop.worker.model.errors import InvalidStopRequest, UnknownAccountError

pytestmark = pytest.mark.integration
GOOD = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"

BAD_CALLS = ["a/b", "..", GOOD + "?x=1", GOOD + "#frag", GOOD + "\r\nX: 1", "", "f" * 300]
BAD_URLS = ["ftp://host/rec.mp3", "https://h/" + "a" * 3000]


@pytest.mark.parametrize("call_uuid", BAD_CALLS)
def test_producer_rejects_bad_call_uuid(producer, call_uuid):
    """A hostile or malformed call_uuid raises InvalidStopRequest before anything is stored."""
    with pytest.raises(InvalidStopRequest, match="call_uuid"):
        producer.stop_recording(call_uuid)
    assert producer.redis.dbsize() == 0


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
    task_id = publish_raw(redis_server.url, kwargs, args)
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
    publish_raw(redis_server.url, {"call_uuid": "../../etc"})
    entry = wait_for(lambda: next(iter(producer.dead_letters.list()), None), what="dead letter")
    [result] = producer.replay([entry.id])
    assert "malformed" in result.error
    assert producer.dead_letters.count() == 1


def test_unknown_call_uuid_status_is_none(producer):
    """status() of a stop never enqueued is None."""
    assert producer.status(str(uuid.uuid4())) is None
