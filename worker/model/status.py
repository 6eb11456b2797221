"""The per-stop status record: the answer to "was this recording stopped, when, after how many attempts?"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from recstop.worker.model.recording import Recording
from recstop.worker.model.vocabulary import Confirmation, State

#: The times of a record, shown as ISO-8601 in ``to_dict``.
TIME_FIELDS: Final = (
    "enqueued_at",
    "due_at",
    "first_attempt_at",
    "last_attempt_at",
    "finished_at",
    "not_after",
    "confirmed_at",
)


#: Fields of an attempt log entry that are null when unknown (the scripts store them only when set).
ATTEMPT_FIELDS: Final = ("http_status", "error")


def attempt_log(raw: object) -> tuple[Mapping[str, Any], ...]:
    """The attempt log as stored (a JSON array; absent when empty), every entry with all its fields."""
    if not isinstance(raw, list):
        return ()
    return tuple({**dict.fromkeys(ATTEMPT_FIELDS), **entry} for entry in raw if isinstance(entry, dict))


def recordings(raw: object) -> tuple[Mapping[str, Any], ...]:
    """The covered recordings as stored (a JSON array; an empty one arrives as ``{}``), all fields each."""
    if not isinstance(raw, list):
        return ()
    blank = Recording(None, None).to_dict()
    return tuple({**blank, **entry} for entry in raw if isinstance(entry, dict))


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


#: (seconds in the unit, its name) from the largest: how ``span`` words a duration.
_UNITS: Final = ((365 * 86400, "year"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def span(seconds: float) -> str:
    """A duration in words, in its largest whole unit of at least two (``6 years``, ``90 seconds``)."""
    seconds = abs(seconds)
    for size, unit in _UNITS:
        count = int(seconds // size)
        if count >= 2 or size == 1:  # noqa: PLR2004 - "1 hour 50 minutes" reads better as 110 minutes
            return f"{count} {unit}{'' if count == 1 else 's'}"
    raise AssertionError("unreachable: the last unit is one second")


@dataclass(frozen=True)
class ReplayedFrom:
    """The dead run a replay (``recstop dlq replay``) started from: what an operator asks after a replay.

    Its dead letter, task id, dead reason and time, its attempts and their log, and
    ``attempts_before``: every attempt before the replayed run (the dead run's, and those of the
    runs it replayed in turn). Every event of the stop's life stays in its audit trail.
    """

    dlq_id: str
    task_id: str
    reason: str
    dead_at: float | None
    attempts: int
    attempts_before: int = 0
    attempt_log: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> ReplayedFrom:
        """Read it from a stop record's ``replayed_from``."""
        return cls(
            dlq_id=str(data.get("dlq_id", "")),
            task_id=str(data.get("task_id", "")),
            reason=str(data.get("reason", "")),
            dead_at=data.get("dead_at"),
            attempts=int(data.get("attempts", 0)),
            attempts_before=int(data.get("attempts_before", data.get("attempts", 0))),
            attempt_log=attempt_log(data.get("attempt_log")),
        )

    def to_args(self) -> dict[str, Any]:
        """What ``enqueue.lua`` records (it adds the runs before the dead one to ``attempts_before``)."""
        return {**asdict(self), "attempt_log": list(self.attempt_log)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, its time in ISO-8601."""
        return {**self.to_args(), "dead_at": iso(self.dead_at)}


@dataclass(frozen=True)
class StatusRecord:
    """One stop's current run (the stop record of ``worker.keys.call_key``, as a typed view)."""

    call_uuid: str
    url: str | None
    state: State
    task_id: str
    attempts: int
    auth_id: str | None = None
    request_id: str | None = None
    last_http_status: int | None = None
    last_error: str | None = None
    enqueued_at: float | None = None
    due_at: float | None = None
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    finished_at: float | None = None
    not_after: float | None = None
    dead_reason: str | None = None
    dlq_id: str | None = None
    settled_by: str | None = None
    urgent: bool = False
    #: Task ids of Celery messages that joined this run (their results are this run's).
    joined: tuple[str, ...] = ()
    attempt_log: tuple[Mapping[str, Any], ...] = field(default=())
    #: After a successful stop: whether Vobiz confirms the covered recordings ended (None: not looked
    #: up: confirmation off, or a stop that did not succeed), and why not.
    confirmation: Confirmation | None = None
    confirm_reason: str | None = None
    confirm_error: str | None = None
    #: The covered recordings as the Recordings API reported them, each with its ``ended_after_ms``.
    recordings: tuple[Mapping[str, Any], ...] = field(default=())
    #: The latest recording end less when the stop was due: how long recording went on after it.
    ended_after_ms: float | None = None
    confirm_lookups: int = 0
    confirmed_at: float | None = None
    #: The dead run this run replays (``recstop dlq replay``), None for a run that is no replay.
    replayed_from: ReplayedFrom | None = None

    @property
    def attempts_total(self) -> int:
        """Every attempt of the stop: this run's, and those before it was replayed."""
        return self.attempts + (self.replayed_from.attempts_before if self.replayed_from else 0)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> StatusRecord:
        """Build from a stop record as the scripts store it."""
        state = State(data["state"])
        return cls(
            call_uuid=data["call_uuid"],
            url=data.get("url"),
            state=state,
            task_id=data["task_id"],
            attempts=int(data.get("attempts", 0)),
            auth_id=data.get("auth_id"),
            request_id=data.get("request_id"),
            last_http_status=data.get("last_http_status"),
            last_error=data.get("last_error") or None,
            enqueued_at=data.get("enqueued_at"),
            due_at=data.get("due_at"),
            first_attempt_at=data.get("first_attempt_at"),
            last_attempt_at=data.get("last_attempt_at"),
            finished_at=data.get("finished_at"),
            not_after=data.get("not_after"),
            dead_reason=data.get("dead_reason") if state is State.DEAD else None,
            dlq_id=data.get("dlq_id"),
            settled_by=data.get("settled_by"),
            urgent=bool(data.get("urgent")),
            joined=tuple(data.get("joined") or ()),
            attempt_log=attempt_log(data.get("log")),
            replayed_from=ReplayedFrom.from_record(data["replayed_from"])
            if data.get("replayed_from")
            else None,
            confirmation=Confirmation(data["confirmation"]) if data.get("confirmation") else None,
            confirm_reason=data.get("confirm_reason") or None,
            confirm_error=data.get("confirm_error") or None,
            recordings=recordings(data.get("recordings")),
            ended_after_ms=data.get("ended_after_ms"),
            confirm_lookups=int(data.get("confirm_lookups", 0)),
            confirmed_at=data.get("confirmed_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view with ISO-8601 times."""
        out = asdict(self)
        out["state"] = str(self.state)
        out["attempt_log"] = list(self.attempt_log)
        out["confirmation"] = None if self.confirmation is None else str(self.confirmation)
        out["recordings"] = list(self.recordings)
        for name in TIME_FIELDS:
            out[name] = iso(getattr(self, name))
        out["replayed_from"] = self.replayed_from.to_dict() if self.replayed_from else None
        out["attempts_total"] = self.attempts_total
        return out
