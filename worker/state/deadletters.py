"""The dead-letter store: stops that cannot succeed, with their reason and every attempt."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from redis import Redis

from recstop.worker.config.settings import Retention
from recstop.worker.model.ids import new_id
from recstop.worker.model.redaction import Redactor
from recstop.worker.model.status import attempt_log, iso
from recstop.worker.model.vocabulary import DeadReason
from recstop.worker.state import keys
from recstop.worker.state.scripts import LuaScript, Scripts, reply_json

MAX_PAYLOAD_CHARS: Final = 16_384
#: Binary bodies keep this many bytes: their base64 text is MAX_PAYLOAD_CHARS long.
MAX_RAW_BODY_BYTES: Final = MAX_PAYLOAD_CHARS // 4 * 3
MAX_HEADER_CHARS: Final = 200


def parse_dead_at(raw: object) -> float:
    """The reply of ``deadletter.lua``: when the entry was stored (Redis time)."""
    return float(reply_json(raw)["dead_at"])


def parse_removed(raw: object) -> int:
    """The reply of ``dlq_remove.lua``: how many of the entries named existed."""
    return int(reply_json(raw)["removed"])


DEADLETTER: Final = LuaScript("deadletter", parse_dead_at)
DLQ_REMOVE: Final = LuaScript("dlq_remove", parse_removed)


def new_entry_id() -> str:
    """A short, unique dead-letter id."""
    return new_id().replace("-", "")[:16]


def encode_payload(payload: object, redactor: Redactor) -> str:
    """The original message as JSON text: secrets masked, bounded in size."""
    try:
        text = json.dumps(redactor.value(payload), default=repr, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(repr(payload))
    if len(text) > MAX_PAYLOAD_CHARS:
        return json.dumps({"truncated": True, "chars": len(text), "head": text[:MAX_PAYLOAD_CHARS]})
    return text


def encode_raw_body(body: object, redactor: Redactor) -> dict[str, Any]:
    """A refused message's body as stored, never deserialized: printable UTF-8 as text, else base64.

    Secrets are masked before the body is cut to its bound, so no part of a token survives.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
    elif isinstance(body, str):
        raw = body.encode("utf-8", "surrogatepass")
    else:
        raw = repr(body).encode("utf-8", "backslashreplace")
    out: dict[str, Any] = {"body_bytes": len(raw)}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\t\n\r" for ch in text):
        text = redactor.text(text)
        out["body_text"] = text[:MAX_PAYLOAD_CHARS]
        out["body_truncated"] = len(text) > MAX_PAYLOAD_CHARS
        return out
    # latin-1 maps every byte to one character and back, so ASCII tokens are masked in place.
    masked = redactor.text(raw.decode("latin-1")).encode("latin-1")
    out["body_base64"] = base64.b64encode(masked[:MAX_RAW_BODY_BYTES]).decode("ascii")
    out["body_truncated"] = len(masked) > MAX_RAW_BODY_BYTES
    return out


def header_text(value: object, redactor: Redactor) -> str | None:
    """A header value as bounded, redacted text (``repr`` for anything that is not a string)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return redactor.text(text)[:MAX_HEADER_CHARS]


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered stop."""

    id: str
    reason: str
    task_id: str
    dead_at: float
    payload: Any
    error: str | None = None
    http_status: int | None = None
    key: str | None = None
    call_uuid: str | None = None
    url: str | None = None
    auth_id: str | None = None
    request_id: str | None = None
    attempts: tuple[Mapping[str, Any], ...] = ()
    #: How many attempts the stop made (its log, ``attempts``, keeps the last 200).
    attempt_count: int | None = None

    @classmethod
    def from_entry(cls, data: Mapping[str, Any]) -> DeadLetter:
        """Build from the entry as the scripts store it (``keys.DLQ_ENTRIES``)."""
        payload = data.get("payload")
        return cls(
            id=data["id"],
            reason=data.get("reason", ""),
            task_id=data.get("task_id", ""),
            dead_at=float(data.get("dead_at") or 0),
            payload=json.loads(payload) if payload else None,
            error=data.get("error") or None,
            http_status=data.get("http_status"),
            key=data.get("key"),
            call_uuid=data.get("call_uuid"),
            url=data.get("url"),
            auth_id=data.get("auth_id"),
            request_id=data.get("request_id"),
            attempts=attempt_log(data.get("attempts")),
            attempt_count=data.get("attempt_count"),
        )

    @classmethod
    def from_row(cls, row: str | bytes | None) -> DeadLetter | None:
        """Build from a row of ``keys.DLQ_ENTRIES`` as read (None: no such entry)."""
        return cls.from_entry(json.loads(row)) if row else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        out = dict(self.__dict__)
        out["dead_at"] = iso(self.dead_at)
        out["attempts"] = list(self.attempts)
        return out


class DeadLetters:
    """List, read, add and remove dead letters; the connection is passed in."""

    def __init__(self, client: Redis, retention: Retention, redactor: Redactor | None = None) -> None:
        self.client = client
        self.retention = retention
        self.redactor = redactor or Redactor(())
        self.scripts = Scripts(client)

    def add_malformed(self, task_id: str, payload: object, error: str) -> str:
        """Dead-letter a message that is not a valid stop; return the entry id."""
        return self._add(
            {
                "task_id": task_id,
                "reason": DeadReason.MALFORMED,
                "error": self.redactor.text(error)[:1000],
                "payload": encode_payload(payload, self.redactor),
            }
        )

    def add_raw(
        self,
        reason: str,
        error: str,
        *,
        body: object,
        content_type: object,
        content_encoding: object,
        headers: Mapping[str, object],
    ) -> str:
        """Dead-letter a broker message refused before decoding; its body is kept raw, never decoded."""
        task_id = header_text(headers.get("id"), self.redactor) or ""
        payload = {
            "raw": True,
            "content_type": header_text(content_type, self.redactor),
            "content_encoding": header_text(content_encoding, self.redactor),
            "headers": {
                "task": header_text(headers.get("task"), self.redactor),
                "id": task_id or None,
            },
            **encode_raw_body(body, self.redactor),
        }
        return self._add(
            {
                "task_id": task_id,
                "reason": reason,
                "error": self.redactor.text(error)[:1000],
                "payload": json.dumps(payload, separators=(",", ":")),
            }
        )

    def _add(self, entry: Mapping[str, str]) -> str:
        entry_id = new_entry_id()
        self.scripts.run(
            DEADLETTER,
            [keys.DLQ_INDEX, keys.DLQ_ENTRIES, keys.METRICS],
            {
                "entry": {"id": entry_id, **entry},
                "max_entries": self.retention.dlq_max_entries,
                "max_age_s": self.retention.dlq_max_age_s,
            },
        )
        return entry_id

    def list(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first."""
        ids = cast("list[str]", self.client.zrange(keys.DLQ_INDEX, 0, limit - 1, desc=True))
        if not ids:
            return []
        rows = cast("list[str | None]", self.client.hmget(keys.DLQ_ENTRIES, ids))
        return [entry for entry in map(DeadLetter.from_row, rows) if entry is not None]

    def get(self, entry_id: str) -> DeadLetter | None:
        """One dead letter, or None."""
        return DeadLetter.from_row(cast("str | None", self.client.hget(keys.DLQ_ENTRIES, entry_id)))

    def count(self) -> int:
        """How many dead letters are stored."""
        return int(self.client.zcard(keys.DLQ_INDEX))

    def remove(self, *entry_ids: str) -> int:
        """Delete the given entries; return how many existed."""
        if not entry_ids:
            return 0
        return self._remove({"ids": list(entry_ids)})

    def purge(self) -> int:
        """Delete every entry; return how many there were."""
        return self._remove({})

    def _remove(self, args: Mapping[str, Any]) -> int:
        return self.scripts.run(DLQ_REMOVE, [keys.DLQ_INDEX, keys.DLQ_ENTRIES], args)
