"""One audit event: a stream entry of ``recstop:audit`` parsed into a typed row, never refused.

The producers' scripts append ``XADD recstop:audit * e <json>`` (the contract: docs/audit.md). An
entry that does not meet it (not JSON, not an object, a field of the wrong type, a string holding
NUL) is kept all the same, as event ``invalid`` with its raw text: the trail never loses an entry
and a bad one never stops the sink. Keys the contract does not name go, as sorted JSON, to
``extra``. Every text passes through the redactor, so a token a producer leaked is stored masked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from recstop.worker.model.redaction import Redactor

INVALID: Final = "invalid"
#: The reason of an entry that was pending and is gone from the stream when a sink came to store it.
GONE_REASON: Final = "gone: trimmed or deleted from the stream before a sink stored it"
#: The field of a stream entry that holds the event.
FIELD: Final = b"e"
_EVENT_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Longest call_uuid stored as one (an index key must stay small); a longer one makes the entry invalid.
_MAX_CALL_UUID: Final = 128
#: The first instant of year 10000: times at or after it have no ISO-8601 form.
_YEAR_10000: Final = 253402300800
#: attempt and http_status are 32-bit columns.
_MAX_INT: Final = 2**31
_STRINGS: Final = ("url", "target", "task_id", "request_id", "auth_id", "reason", "error", "origin")
_FLOATS: Final = ("duration_ms", "retry_in_s", "due_at")
_INTS: Final = ("attempt", "http_status")


class MalformedEventError(ValueError):
    """A stream entry that does not meet the event contract (the reason, never its contents)."""


@dataclass(frozen=True)
class AuditEvent:
    """One event of a stop's life, as one row of the audit table (``None``: absent)."""

    stream_id: str
    event: str
    at: float
    call_uuid: str | None = None
    url: str | None = None
    target: str | None = None
    task_id: str | None = None
    request_id: str | None = None
    auth_id: str | None = None
    attempt: int | None = None
    http_status: int | None = None
    reason: str | None = None
    error: str | None = None
    duration_ms: float | None = None
    retry_in_s: float | None = None
    urgent: bool | None = None
    due_at: float | None = None
    origin: str | None = None
    #: Keys the contract does not name, as sorted JSON; ``raw``: the entry's text when invalid.
    extra: str | None = None
    raw: str | None = None


#: The event's columns, in the table's order (``stream_id`` first).
COLUMNS: Final = tuple(f.name for f in fields(AuditEvent))
_KNOWN: Final = frozenset(COLUMNS) - {"stream_id", "extra", "raw"}


def stream_time(stream_id: str) -> float:
    """The Redis time (epoch seconds) at which an entry was added: the milliseconds of its id."""
    return int(stream_id.partition("-")[0]) / 1000


def parse_entry(stream_id: str, entry: Mapping[bytes, bytes] | None, redactor: Redactor) -> AuditEvent:
    """The event of one stream entry; an entry off the contract is an ``invalid`` event with its raw text.

    An entry with no fields at all is one that was pending and is gone from the stream (trimmed or
    deleted before any sink stored it): it is recorded too, so the gap shows in the trail.
    """
    if not entry:
        return _invalid(stream_id, "", GONE_REASON, redactor)
    if FIELD not in entry:
        return _invalid(stream_id, _fields(entry), f"no field {FIELD.decode()!r}", redactor)
    raw = entry[FIELD]
    try:
        return _parse(stream_id, raw.decode("utf-8"), redactor)
    except (MalformedEventError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        return _invalid(stream_id, raw.decode("utf-8", "backslashreplace"), reason, redactor)


def _invalid(stream_id: str, text: str, reason: str, redactor: Redactor) -> AuditEvent:
    """An entry off the contract, kept: its time is the entry's, its text is ``raw``."""
    return AuditEvent(
        stream_id=stream_id,
        event=INVALID,
        at=stream_time(stream_id),
        call_uuid=_salvage_call(text),
        reason=reason,
        raw=redactor.text(text.replace("\x00", "\\x00")),
    )


def _fields(entry: Mapping[bytes, bytes]) -> str:
    """An entry without ``e``: its fields as JSON, so that what was sent is kept."""
    decoded = {
        k.decode("utf-8", "backslashreplace"): v.decode("utf-8", "backslashreplace") for k, v in entry.items()
    }
    return json.dumps(decoded, sort_keys=True)


def _parse(stream_id: str, text: str, redactor: Redactor) -> AuditEvent:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise MalformedEventError(f"not a JSON object but {type(data).__name__}")
    event = data.get("event")
    if not isinstance(event, str) or not _EVENT_RE.fullmatch(event) or event == INVALID:
        raise MalformedEventError("event must be a lower-case word")
    call_uuid = data.get("call_uuid")
    if not isinstance(call_uuid, str) or not 0 < len(call_uuid) <= _MAX_CALL_UUID:
        raise MalformedEventError(f"call_uuid must be a string of 1 to {_MAX_CALL_UUID} characters")
    values: dict[str, Any] = {"at": _time("at", data.get("at"))}
    if values["at"] is None:
        raise MalformedEventError("at is missing")
    values.update({name: _text(name, data.get(name)) for name in _STRINGS})
    values.update({name: _number(name, data.get(name)) for name in _FLOATS})
    values["due_at"] = _time("due_at", values["due_at"])
    values.update({name: _integer(name, data.get(name)) for name in _INTS})
    urgent = data.get("urgent")
    if urgent is not None and not isinstance(urgent, bool):
        raise MalformedEventError("urgent must be a boolean")
    others = {key: value for key, value in data.items() if key not in _KNOWN}
    extra = json.dumps(others, sort_keys=True, allow_nan=False) if others else None
    redacted: dict[str, Any] = {
        name: redactor.text(v) if isinstance(v, str) else v for name, v in values.items()
    }
    return AuditEvent(
        stream_id=stream_id,
        event=event,
        call_uuid=redactor.text(_text("call_uuid", call_uuid) or "").lower(),
        urgent=urgent,
        extra=None if extra is None else redactor.text(extra),
        **redacted,
    )


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise MalformedEventError(f"{name} must be a string without NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): no database column can hold it
        raise MalformedEventError(f"{name} is not valid Unicode text") from None
    return value


def _number(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedEventError(f"{name} must be a finite number")
    return float(value)


def _time(name: str, value: object) -> float | None:
    """An epoch time a calendar can show (year 1970 to 9999)."""
    seconds = _number(name, value)
    if seconds is not None and not 0 <= seconds < _YEAR_10000:
        raise MalformedEventError(f"{name} must be epoch seconds between 1970 and 9999")
    return seconds


def _integer(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # a Lua number that cjson wrote as 3.0
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= _MAX_INT:
        raise MalformedEventError(f"{name} must be an integer")
    return value


_UUID_IN_TEXT: Final = re.compile(r'"call_uuid"\s*:\s*"([0-9A-Fa-f-]{36})"')


def _salvage_call(text: str) -> str | None:
    """The call_uuid of an invalid entry when its text shows one plainly (so ``audit show`` finds it)."""
    found = _UUID_IN_TEXT.search(text)
    return found.group(1).lower() if found else None
