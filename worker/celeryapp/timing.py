"""Celery's ``eta``, ``countdown`` and ``expires`` message headers, read as Celery reads them.

Any Celery client can send them (``apply_async(countdown=, eta=, expires=)``, ``celery call
--countdown/--eta/--expires``, other-language clients, a raw envelope). Celery itself would hold an
ETA message in the worker's memory (lost with the worker, and redelivered in a loop by kombu's
visibility timeout: kombu issue 337) and drop an expired one with no record. recstop maps them onto
its own durable schedule instead (``worker.consumer``): ``eta`` is the stop's due time, ``expires``
its ``not_after``. Times are ISO 8601; a time without a timezone is UTC, as Celery reads it
(``maybe_make_aware``). ``countdown`` (seconds, not a protocol 2 header, but some clients send it)
counts from receipt.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from celery.utils.time import maybe_iso8601, maybe_make_aware

from recstop.worker.model.validation import StopRequest

#: The header the consumer sets for the task: the message's ``expires`` as an ISO 8601 time.
NOT_AFTER_HEADER: Final = "recstop_not_after"
#: An ETA this close to now runs now: scheduling it would only add the scheduler's round trip.
DUE_NOW_S: Final = 0.05


class TimingError(ValueError):
    """An ``eta``, ``countdown`` or ``expires`` header that is not a time."""


@dataclass(frozen=True)
class Timing:
    """When a message's stop is due and when it is given up (epoch seconds; None: not set)."""

    eta: float | None = None
    expires: float | None = None

    def delayed(self, now: float | None = None) -> bool:
        """Whether the stop is due later than now (it goes into the schedule)."""
        return self.eta is not None and self.eta > (time.time() if now is None else now) + DUE_NOW_S


def read_timing(headers: Mapping[str, Any], tz: tzinfo | None = UTC, now: float | None = None) -> Timing:
    """The message's due time and expiry, as Celery's worker would read them."""
    eta = _time(headers, "eta", tz)
    countdown = headers.get("countdown")
    if countdown is not None and eta is None:
        if (
            isinstance(countdown, bool)
            or not isinstance(countdown, int | float)
            or not 0 <= countdown < 10**9
        ):
            raise TimingError(f"countdown must be a number of seconds, got {countdown!r:.60}")
        eta = (time.time() if now is None else now) + float(countdown)
    return Timing(eta, _time(headers, "expires", tz))


def _time(headers: Mapping[str, Any], name: str, tz: tzinfo | None) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    if not isinstance(value, str | datetime):
        raise TimingError(f"{name} must be an ISO 8601 time, got {type(value).__name__}")
    try:
        parsed = maybe_iso8601(value)
    except (ValueError, TypeError) as exc:
        raise TimingError(f"{name} is not an ISO 8601 time: {value!r:.60} ({exc})") from None
    if parsed is None:
        return None
    return float(maybe_make_aware(parsed, tz).timestamp())


def iso(epoch: float) -> str:
    """An epoch time as the ISO 8601 text the task header carries."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def with_not_after(request: StopRequest, expires: float | None) -> StopRequest:
    """The request with the message's expiry as its ``not_after`` (the earlier one, when both are set)."""
    if expires is None:
        return request
    limit = datetime.fromtimestamp(expires, UTC)
    if request.not_after is not None and request.not_after <= limit:
        return request
    return replace(request, not_after=limit)


def strip(headers: dict[str, Any], timing: Timing) -> None:
    """Hand a message that runs now to Celery without its timing headers (the expiry as ours)."""
    for name in ("eta", "countdown", "expires"):
        headers.pop(name, None)
    if timing.expires is not None:
        headers[NOT_AFTER_HEADER] = iso(timing.expires)
