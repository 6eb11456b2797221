"""Whether one lookup of a call's recordings confirms a stop: pure rules, no I/O.

A stop covers one recording (its URL) or every recording of the call (a stop-all). It is
**confirmed** when every recording it covers reports its end (``recording_end_ms``). A covered
recording without its end yet, or a lookup that failed for a reason that may pass (429, 5xx, a
timeout), is looked up again after a backoff, until the deadline: then it is **unconfirmed**,
reason ``deadline``. A permanent failure (401, 403, an answer that is not the documented list, an
end before the start, the older list shape without end times, the covered recording not listed)
makes it unconfirmed at once. A stop that found nothing to stop and a call that lists none of its
recordings is ``nothing_listed``: there is nothing to confirm. None of this ever changes the
stop's own state: the recording was stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recstop.worker.api.client import CallRecordings, LookupFailed
from recstop.worker.config.confirm import ConfirmSettings
from recstop.worker.model.recording import Recording
from recstop.worker.model.vocabulary import Confirmation, ConfirmReason
from recstop.worker.policy.backoff import compute_backoff


@dataclass(frozen=True)
class Verdict:
    """What one lookup settles: a confirmation, or (``confirmation`` None) look again later."""

    confirmation: Confirmation | None
    #: Why it is unconfirmed: a ConfirmReason or ``http_<status>``.
    reason: str = ""
    error: str = ""
    recordings: tuple[Recording, ...] = ()

    @property
    def final(self) -> bool:
        """No further lookup: the stop's confirmation is settled."""
        return self.confirmation is not None


LOOK_AGAIN = Verdict(None)


def covered(recordings: Sequence[Recording], url: str | None) -> tuple[Recording, ...]:
    """The recordings a stop covers: the one with its URL, or every recording of the call (``url`` None)."""
    if url is None:
        return tuple(recordings)
    return tuple(recording for recording in recordings if recording.recording_url == url)


def judge(
    lookup: CallRecordings | LookupFailed, *, url: str | None, already_stopped: bool, deadline_passed: bool
) -> Verdict:
    """The verdict of one lookup for a stop of ``url`` (None: every recording)."""
    if isinstance(lookup, LookupFailed):
        if not lookup.transient:
            return Verdict(Confirmation.UNCONFIRMED, lookup.reason, lookup.error)
        if deadline_passed:
            error = f"{lookup.reason}: {lookup.error}"
            return Verdict(Confirmation.UNCONFIRMED, ConfirmReason.DEADLINE, error)
        return LOOK_AGAIN
    mine = covered(lookup.recordings, url)
    if not mine:
        if already_stopped:
            return Verdict(Confirmation.NOTHING_LISTED)
        what = "the stop's recording" if url is not None else "any recording"
        error = f"the call's list holds not {what}"
        return Verdict(Confirmation.UNCONFIRMED, ConfirmReason.NOT_LISTED, error)
    return _ended(mine, has_end_times=lookup.has_end_times, deadline_passed=deadline_passed)


def _ended(mine: tuple[Recording, ...], *, has_end_times: bool, deadline_passed: bool) -> Verdict:
    """The verdict on the covered recordings the list shows."""
    if not has_end_times:
        error = "the list answered its older shape, which has no end times"
        return Verdict(Confirmation.UNCONFIRMED, ConfirmReason.NO_END_TIME, error, mine)
    backwards = [recording for recording in mine if _ends_before_it_starts(recording)]
    if backwards:
        error = f"recording {backwards[0].recording_id} ends before it starts"
        return Verdict(Confirmation.UNCONFIRMED, ConfirmReason.BAD_ANSWER, error, mine)
    if all(recording.ended for recording in mine):
        return Verdict(Confirmation.CONFIRMED, recordings=mine)
    if deadline_passed:
        waiting = sum(1 for recording in mine if not recording.ended)
        error = f"{waiting} of {len(mine)} recording(s) had not reported their end"
        return Verdict(Confirmation.UNCONFIRMED, ConfirmReason.DEADLINE, error, mine)
    return LOOK_AGAIN


def _ends_before_it_starts(recording: Recording) -> bool:
    start, end = recording.recording_start_ms, recording.recording_end_ms
    return start is not None and end is not None and end < start


def next_lookup_s(lookups: int, settings: ConfirmSettings) -> float:
    """Seconds until the next lookup after ``lookups`` of them (0: the first, ``backoff_base_s`` on)."""
    return compute_backoff(
        lookups + 1, base_s=settings.backoff_base_s, cap_s=settings.backoff_cap_s, jitter="none"
    )
