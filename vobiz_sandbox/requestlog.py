"""The bounded, sequence-numbered log of requests to the API routes."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Final

MAX_ENTRIES: Final = 100_000


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """What the sandbox saw and did for one API request (never the token itself)."""

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


class RequestLog:
    """Keeps the last ``limit`` requests, numbered from 1 (callers hold the state lock)."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._entries: deque[tuple[int, LoggedRequest]] = deque(maxlen=limit)
        self._seq = 0

    def append(self, entry: LoggedRequest) -> int:
        """Store ``entry`` under the next sequence number and return that number."""
        self._seq += 1
        self._entries.append((self._seq, entry))
        return self._seq

    def select(
        self, *, call_uuid: str | None = None, since_seq: int | None = None
    ) -> list[dict[str, object]]:
        """Entries as JSON objects, oldest first, for one call and/or after ``since_seq``."""
        picked: list[dict[str, object]] = []
        for seq, entry in reversed(self._entries):
            if since_seq is not None and seq <= since_seq:
                break
            if call_uuid is None or entry.call_uuid == call_uuid:
                picked.append({"seq": seq, **asdict(entry)})
        picked.reverse()
        return picked

    def clear(self) -> None:
        """Forget every entry; sequence numbers keep counting up."""
        self._entries.clear()
