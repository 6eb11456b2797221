"""Bounded, sequence-numbered logs: the requests to the API routes, and the recording callbacks sent."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final, Generic, Protocol, TypeVar

MAX_ENTRIES: Final = 100_000


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """What the sandbox saw and did for one API request (never the token itself).

    ``endpoint`` is ``stop``, ``start``, ``recordings``, or ``None`` for a request that matches no route;
    ``call_uuid`` is the call in the path, the list's ``call_uuid`` filter, or the call of the recording
    asked for.
    """

    time: float
    method: str
    path: str
    auth_id_header: str | None
    token_ok: bool
    body: object
    call_uuid: str | None
    status: int | None
    fault: str | None
    duration_ms: float
    retry_after: str | None = None  # the Retry-After header sent, if any
    retry_after_body: object = None  # details.retryAfter in the body sent, if any
    endpoint: str | None = None
    answer: str | None = None  # the bad answer an ``answer`` fault gave, if any

    def to_json(self) -> dict[str, object]:
        """The entry as a JSON object."""
        return asdict(self)


class Entry(Protocol):
    """What a log holds: entries about one call (or none), readable as JSON."""

    @property
    def call_uuid(self) -> str | None:
        """The call the entry is about."""

    def to_json(self) -> dict[str, object]:
        """The entry as a JSON object."""


E = TypeVar("E", bound=Entry)


class SequencedLog(Generic[E]):
    """Keeps the last ``limit`` entries, numbered from 1 (callers hold the state lock)."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._entries: deque[tuple[int, E]] = deque(maxlen=limit)
        self._seq = 0

    def append(self, entry: E) -> int:
        """Store ``entry`` under the next sequence number and return that number."""
        self._seq += 1
        self._entries.append((self._seq, entry))
        return self._seq

    def select(
        self,
        *,
        call_uuid: str | None = None,
        since_seq: int | None = None,
        where: Callable[[E], bool] | None = None,
    ) -> list[dict[str, object]]:
        """Entries as JSON objects, oldest first, for one call and/or after ``since_seq`` and/or ``where``."""
        picked: list[dict[str, object]] = []
        for seq, entry in reversed(self._entries):
            if since_seq is not None and seq <= since_seq:
                break
            if (call_uuid is None or entry.call_uuid == call_uuid) and (where is None or where(entry)):
                picked.append({"seq": seq, **entry.to_json()})
        picked.reverse()
        return picked

    def clear(self) -> None:
        """Forget every entry; sequence numbers keep counting up."""
        self._entries.clear()


class RequestLog(SequencedLog[LoggedRequest]):
    """The log of requests to the API routes."""
