"""Celery's eta, countdown and expires headers, read as Celery's worker reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from recstop.worker.celeryapp.timing import (
    NOT_AFTER_HEADER,
    Timing,
    TimingError,
    read_timing,
    strip,
    with_not_after,
)
from recstop.worker.model.validation import StopRequest

CALL = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"


def test_a_timezone_less_eta_is_utc_and_an_offset_is_honoured():
    """A naive ISO time is UTC (Celery's maybe_make_aware); +02:00 is two hours before the same UTC text."""
    naive = read_timing({"eta": "2030-01-01T12:00:00"})
    aware = read_timing({"eta": "2030-01-01T12:00:00+02:00"})
    assert naive.eta == datetime(2030, 1, 1, 12, tzinfo=UTC).timestamp()
    assert aware.eta == datetime(2030, 1, 1, 10, tzinfo=UTC).timestamp()


def test_countdown_counts_from_receipt_and_eta_wins_over_it():
    """A countdown is seconds from now; with an eta as well, the eta is the due time."""
    assert read_timing({"countdown": 5}, now=1000.0).eta == 1005.0
    assert (
        read_timing({"countdown": 5, "eta": "2030-01-01T00:00:00Z"}, now=1000.0).eta
        == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    )


@pytest.mark.parametrize(
    "headers",
    [{"eta": "next tuesday"}, {"eta": 1700000000}, {"expires": ["x"]}, {"countdown": "5"}, {"countdown": -1}],
)
def test_a_header_that_is_not_a_time_is_refused_with_its_name(headers):
    """Such a message is dead-lettered (invalid_message) with a text naming the header."""
    with pytest.raises(TimingError, match=next(iter(headers))):
        read_timing(headers)


def test_only_an_eta_in_the_future_delays_the_stop():
    """An eta a second ahead goes to the schedule; one in the past, or none, runs now."""
    assert Timing(eta=101.0).delayed(now=100.0)
    assert not Timing(eta=99.0).delayed(now=100.0)
    assert not Timing().delayed(now=100.0)


def test_expires_becomes_not_after_unless_the_stop_has_an_earlier_one():
    """The earlier of the message's expires and the stop's own not_after is kept."""
    soon = datetime.now(UTC) + timedelta(minutes=1)
    later = soon + timedelta(hours=1)
    assert with_not_after(StopRequest(CALL), soon.timestamp()).not_after == soon
    assert with_not_after(StopRequest(CALL, not_after=soon), later.timestamp()).not_after == soon
    assert with_not_after(StopRequest(CALL, not_after=later), soon.timestamp()).not_after == soon
    assert with_not_after(StopRequest(CALL), None).not_after is None


def test_a_message_that_runs_now_reaches_celery_without_timing_headers():
    """Celery never sees eta/expires (it would hold or drop the message); the expiry travels as ours."""
    headers = {"eta": "2020-01-01T00:00:00", "expires": "2030-01-01T00:00:00+00:00", "id": "t"}
    strip(headers, read_timing(headers))
    assert headers == {"id": "t", NOT_AFTER_HEADER: "2030-01-01T00:00:00+00:00"}
    assert datetime.fromisoformat(headers[NOT_AFTER_HEADER]).tzinfo == timezone.utc  # noqa: UP017
