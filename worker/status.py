"""The per-stop status record: the audit answer to "was this recording stopped, and when?"."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """The status vocabulary."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RETRYING = "retrying"
    STOPPED = "stopped"
    ALREADY_STOPPED = "already_stopped"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def pending(self) -> bool:
        """Still going to be attempted."""
        return self in {State.SCHEDULED, State.QUEUED, State.RETRYING}


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class StatusRecord:
    """One stop key's current run."""

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
    attempt_log: tuple[Mapping[str, Any], ...] = field(default=())

    @classmethod
    def from_redis(cls, data: Mapping[str, str], attempt_log: list[str]) -> StatusRecord:
        """Build from the status hash and the attempts list."""

        def opt(name: str) -> str | None:
            return data.get(name) or None

        def num(name: str) -> float | None:
            raw = data.get(name)
            return float(raw) if raw else None

        http = opt("last_http_status")
        return cls(
            call_uuid=data["call_uuid"],
            url=opt("url"),
            state=State(data["state"]),
            task_id=data["task_id"],
            attempts=int(data.get("attempts") or 0),
            auth_id=opt("auth_id"),
            request_id=opt("request_id"),
            last_http_status=int(http) if http else None,
            last_error=opt("last_error"),
            enqueued_at=num("enqueued_at"),
            due_at=num("due_at"),
            first_attempt_at=num("first_attempt_at"),
            last_attempt_at=num("last_attempt_at"),
            finished_at=num("finished_at"),
            not_after=num("not_after"),
            dead_reason=opt("dead_reason") if data.get("state") == State.DEAD else None,
            dlq_id=opt("dlq_id"),
            settled_by=opt("settled_by"),
            attempt_log=tuple(json.loads(item) for item in attempt_log),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view with ISO-8601 times."""
        out = asdict(self)
        out["state"] = str(self.state)
        out["attempt_log"] = list(self.attempt_log)
        for name in (
            "enqueued_at",
            "due_at",
            "first_attempt_at",
            "last_attempt_at",
            "finished_at",
            "not_after",
        ):
            out[name] = iso(getattr(self, name))
        return out
