"""What ``recstop`` prints about a stop: the enqueue line, the status listing, "nothing known"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from recstop.producers.producer import StopHandle
from recstop.worker.model.status import TIME_FIELDS, StatusRecord, iso
from recstop.worker.model.vocabulary import State

#: The fields of the plain ``status`` listing, in order (empty ones are left out; see ``status_lines``).
STATUS_FIELDS: Final = (
    "call_uuid",
    "url",
    "state",
    "urgent",
    "attempts",
    "attempts_total",
    "last_http_status",
    "last_error",
    "task_id",
    "request_id",
    *TIME_FIELDS,
    "dead_reason",
    "dlq_id",
    "replayed_from",
    "settled_by",
    "confirmation",
    "confirm_reason",
    "confirm_error",
    "ended_after_ms",
)

#: Times that only matter while the stop is pending: when it is due (or its next attempt is).
_PENDING_ONLY: Final = ("due_at",)


def enqueue_line(handle: StopHandle, record: StatusRecord | None) -> str:
    """``<state> task_id=<id>``, and for a deduplicated stop what it joined: pending, or already done."""
    line = f"{handle.state} task_id={handle.task_id}"
    if handle.deduplicated:
        line += f" (deduplicated: {dedup_note(State(handle.state), record)})"
    return line + "\n"


def dedup_note(state: State, record: StatusRecord | None) -> str:
    """Why nothing new was enqueued, from the state of the run the stop joined (and its times)."""
    finished = iso(record.finished_at) if record is not None else None
    due = iso(record.due_at) if record is not None else None
    if state in (State.STOPPED, State.ALREADY_STOPPED):
        at = f" at {finished}" if finished else ""
        return f"already stopped{at} by a stop with this request_id; nothing was enqueued"
    if state is State.SCHEDULED and due:
        return f"a stop for this recording is already scheduled, due at {due}"
    if state is State.RETRYING and due:
        return f"a stop for this recording is already retrying, next attempt at {due}"
    return f"a stop for this recording is already {state}"


def status_lines(record: StatusRecord) -> str:
    """The plain ``status`` listing: one ``name  value`` line per known field (a replay: what it replays)."""
    data: dict[str, Any] = record.to_dict()
    data["urgent"] = "yes" if record.urgent else "no"
    if not record.state.pending:
        for name in _PENDING_ONLY:
            data[name] = None
    data["replayed_from"] = data["attempts_total"] = None
    if (dead := record.replayed_from) is not None:
        tries = f"{dead.attempts} attempt{'' if dead.attempts == 1 else 's'}"
        data["replayed_from"] = (
            f"dead letter {dead.dlq_id}: {dead.reason} after {tries}, dead at {iso(dead.dead_at)} "
            f"(task {dead.task_id})"
        )
        data["attempts_total"] = (
            f"{record.attempts_total} ({dead.attempts_before} before the replay; every event: "
            f"recstop audit show {record.call_uuid})"
        )
    lines = [f"{name:17} {data[name]}\n" for name in STATUS_FIELDS if data.get(name) not in (None, "")]
    lines += [recording_line(recording) for recording in record.recordings]
    return "".join(lines)


def recording_line(recording: Mapping[str, Any]) -> str:
    """One covered recording: its URL, when it ended as Vobiz reports it, and its id."""
    end = recording.get("recording_end_ms")
    ended = "not ended yet" if end is None else f"ended {iso(end / 1000)}"
    after = recording.get("ended_after_ms")
    after_text = "" if after is None else f" ({after / 1000:+.2f} s after the stop was due)"
    url, recording_id = recording.get("recording_url"), recording.get("recording_id")
    return f"{'recording':17} {url} {ended}{after_text} id={recording_id}\n"


def unknown(call_uuid: str, url: str | None, redis_url: str, *, default_redis: bool) -> str:
    """No record: which stop was asked for, and in which Redis (a forgotten environment shows)."""
    what = f"recording {url} of call {call_uuid}" if url else f"call {call_uuid} (any recording)"
    where = f"Redis at {redis_url}"
    if default_redis:
        where += " (the default URL: is RECSTOP_BROKER_URL set?)"
    return f"no stop is known for {what} in {where}"
