"""The Recordings API's answers read in both shapes, and the rules that confirm a stop: pure functions."""

from __future__ import annotations

import json

import pytest

from recstop.worker.api.client import CallRecordings, LookupFailed
from recstop.worker.api.confirmation import LOOK_AGAIN, covered, judge, next_lookup_s
from recstop.worker.api.recordings import BadAnswerError, parse_page
from recstop.worker.config.confirm import ConfirmSettings
from recstop.worker.model.recording import Recording

CALL = "0f3c2b1a-1111-4222-8333-944455556666"
URL = "https://media.vobiz.test/rec/a.mp3"


def current(objects, *, next_path=None, offset=0):
    """A page of today's shape."""
    meta = {"limit": 100, "offset": offset, "next": next_path, "previous": None, "total_count": len(objects)}
    return json.dumps({"api_id": "x", "meta": meta, "objects": objects})


def obj(**fields):
    """One recording object of today's shape, as Vobiz's sample has it (a decimal-string duration)."""
    return {
        "recording_id": "r1",
        "recording_url": URL,
        "call_uuid": CALL,
        "recording_start_ms": 1000,
        "recording_end_ms": 8880,
        "recording_duration_ms": "7880.00000",
        **fields,
    }


def test_todays_shape_is_read_with_numbers_as_strings_or_numbers():
    """recording_duration_ms as "7880.00000", times as numbers or digit strings: all read as numbers."""
    page = parse_page(
        current([obj(), obj(recording_id="r2", recording_end_ms="9000")]), offset=0, call_uuid=CALL
    )
    assert page.recordings == (
        Recording("r1", URL, 1000, 8880, 7880.0),
        Recording("r2", URL, 1000, 9000, 7880.0),
    )
    assert (page.next_offset, page.has_end_times) == (None, True)


def test_null_or_missing_end_is_not_ended_and_other_calls_are_left_out():
    """A null or absent recording_end_ms is no end yet; an object of another call is not this call's."""
    body = current(
        [obj(recording_end_ms=None), {"recording_id": "r3", "recording_url": URL}, obj(call_uuid="x")]
    )
    page = parse_page(body, offset=0, call_uuid=CALL.upper())
    assert [r.ended for r in page.recordings] == [False, False]


def test_meta_next_gives_the_next_offset():
    """meta.next is a ready path: its offset is the next page's."""
    body = current([obj()], next_path="/v1/Account/MA_X/Recording/?limit=100&offset=100&call_uuid=" + CALL)
    assert parse_page(body, offset=0, call_uuid=CALL).next_offset == 100


def test_the_older_shape_is_read_without_end_times():
    """{"recordings": [{recording_id, call_id, url, duration ...}]}: ids and URLs, no end times."""
    body = json.dumps({"recordings": [{"recording_id": "r1", "call_id": CALL, "url": URL, "duration": 7.88}]})
    page = parse_page(body, offset=0, call_uuid=CALL)
    assert page.recordings == (Recording("r1", URL),)
    assert page.has_end_times is False


@pytest.mark.parametrize(
    "body",
    [
        "<!DOCTYPE html><html><body>maintenance</body></html>",
        current([obj()])[:40],
        "[1, 2]",
        json.dumps({"api_id": "x"}),
        current([obj(recording_end_ms="soon")]),
        current([obj(recording_end_ms=True)]),
        current(["not an object"]),
    ],
    ids=["html", "truncated", "array", "no-list", "word-for-a-time", "bool-for-a-time", "string-object"],
)
def test_anything_else_is_a_bad_answer(body):
    """HTML, truncated JSON, another shape, a time that is not a number: BadAnswerError, never a crash."""
    with pytest.raises(BadAnswerError):
        parse_page(body, offset=0, call_uuid=CALL)


def listed(*recordings, has_end_times=True):
    """A lookup that found these recordings."""
    return CallRecordings(tuple(recordings), has_end_times, pages=1)


ENDED = Recording("r1", URL, 1000, 8880, 7880.0)
OPEN = Recording("r2", "https://media.vobiz.test/rec/b.mp3", 1000, None, None)


def test_a_url_stop_covers_its_recording_and_a_stop_all_every_one():
    """covered(): the recording with the stop's URL; every recording for a stop-all."""
    assert covered([ENDED, OPEN], URL) == (ENDED,)
    assert covered([ENDED, OPEN], None) == (ENDED, OPEN)


def test_confirmed_when_every_covered_recording_has_its_end():
    """A URL stop whose recording ended is confirmed, even while another recording of the call goes on."""
    verdict = judge(listed(ENDED, OPEN), url=URL, already_stopped=False, deadline_passed=False)
    assert (verdict.confirmation, verdict.recordings) == ("confirmed", (ENDED,))


def test_an_end_not_there_yet_looks_again_until_the_deadline():
    """A stop-all with one recording still open: look again; at the deadline, unconfirmed deadline."""
    assert judge(listed(ENDED, OPEN), url=None, already_stopped=False, deadline_passed=False) is LOOK_AGAIN
    late = judge(listed(ENDED, OPEN), url=None, already_stopped=False, deadline_passed=True)
    assert (late.confirmation, late.reason, late.recordings) == ("unconfirmed", "deadline", (ENDED, OPEN))
    assert "1 of 2" in late.error


def test_a_transient_failure_looks_again_and_a_permanent_one_settles_at_once():
    """503 or a timeout: look again (deadline: unconfirmed deadline); 403: unconfirmed http_403 at once."""
    busy = LookupFailed("http_503", transient=True, error="Service Unavailable")
    assert judge(busy, url=URL, already_stopped=False, deadline_passed=False) is LOOK_AGAIN
    assert judge(busy, url=URL, already_stopped=False, deadline_passed=True).reason == "deadline"
    refused = judge(LookupFailed("http_403", transient=False, error="Forbidden"), url=URL,
                    already_stopped=False, deadline_passed=False)  # fmt: skip
    assert (refused.confirmation, refused.reason, refused.error) == ("unconfirmed", "http_403", "Forbidden")


def test_not_listed_is_unconfirmed_for_a_stopped_stop_and_nothing_listed_for_an_already_stopped_one():
    """The covered recording missing from the list: not_listed after a 204, nothing to confirm after a 404."""
    stopped = judge(listed(OPEN), url=URL, already_stopped=False, deadline_passed=False)
    assert (stopped.confirmation, stopped.reason) == ("unconfirmed", "not_listed")
    assert (
        judge(listed(), url=None, already_stopped=True, deadline_passed=False).confirmation
        == "nothing_listed"
    )


def test_an_end_before_the_start_and_the_older_shape_are_unconfirmed_at_once():
    """recording_end_ms before recording_start_ms: bad_answer; the older shape: no_end_time."""
    backwards = Recording("r1", URL, 9000, 8000, None)
    assert (
        judge(listed(backwards), url=URL, already_stopped=False, deadline_passed=False).reason == "bad_answer"
    )
    older = judge(listed(Recording("r1", URL), has_end_times=False), url=URL, already_stopped=False,
                  deadline_passed=False)  # fmt: skip
    assert (older.confirmation, older.reason) == ("unconfirmed", "no_end_time")


def test_lookups_back_off_from_the_base_to_the_cap():
    """0.5 s after the stop, then 1, 2, 4 ... never more than 30 s apart (the shipped defaults)."""
    settings = ConfirmSettings()
    assert [next_lookup_s(n, settings) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_ended_after_is_the_end_less_when_the_stop_was_due():
    """A recording that ended 1.25 s after its stop was due ran on 1250 ms; one not ended: None."""
    assert ENDED.ended_after_ms(asked_at_s=7.63) == 1250.0
    assert OPEN.ended_after_ms(asked_at_s=7.63) is None
