"""The Recordings API's list answer, read in either of its two documented shapes, never trusted.

``GET {api_base}/Account/{auth_id}/Recording/?call_uuid=...&limit=...&offset=...`` answers today
``{"api_id", "meta": {limit, offset, next, previous, total_count}, "objects": [...]}`` and, on older
pages, ``{"recordings": [{recording_id, call_id, url, duration, created_at, format ...}]}``. Numbers
may come as decimal strings, any field may be null or missing, a recording's URL may be named
``recording_url`` or ``url`` and its call ``call_uuid`` or ``call_id`` (``../shared/reference``).
Whatever else arrives is a :class:`BadAnswerError`: the confirmation says so, the worker goes on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from recstop.worker.model.recording import Recording

#: The most recordings one page may hold (the API refuses a larger ``limit``).
PAGE_LIMIT: Final = 100
#: Longest text kept of a bad answer's reason.
_MAX_DETAIL: Final = 200


class BadAnswerError(ValueError):
    """An answer that is not the documented list (HTML, truncated JSON, wrong types ...)."""


@dataclass(frozen=True)
class Page:
    """One page of a call's recordings, and the offset of the next page (None: this is the last)."""

    recordings: tuple[Recording, ...]
    next_offset: int | None
    #: False for the older shape, whose objects never carry an end time.
    has_end_times: bool = True


def parse_page(body: bytes | str, *, offset: int, call_uuid: str) -> Page:
    """Read one page of the list; only recordings of ``call_uuid`` are kept (the filter is trusted less)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadAnswerError(f"not JSON: {_clip(str(exc))}") from None
    if not isinstance(data, dict):
        raise BadAnswerError(f"not a JSON object but {type(data).__name__}")
    if isinstance(data.get("objects"), list):
        recordings = [_current(item) for item in data["objects"]]
        return Page(_of_call(recordings, call_uuid), _next_offset(data.get("meta"), offset, len(recordings)))
    if isinstance(data.get("recordings"), list):
        recordings = [_older(item) for item in data["recordings"]]
        return Page(_of_call(recordings, call_uuid), None, has_end_times=False)
    raise BadAnswerError(f"neither objects nor recordings in an answer with keys {sorted(data)[:8]}")


def _of_call(found: list[tuple[str | None, Recording]], call_uuid: str) -> tuple[Recording, ...]:
    wanted = call_uuid.lower()
    return tuple(recording for call, recording in found if call is None or call.lower() == wanted)


def _current(item: object) -> tuple[str | None, Recording]:
    """One object of today's shape: ``recording_url``, ``recording_start_ms`` ... (``url`` also read)."""
    fields = _object(item)
    return _text(fields, "call_uuid", "call_id"), Recording(
        recording_id=_text(fields, "recording_id"),
        recording_url=_text(fields, "recording_url", "url"),
        recording_start_ms=_millis(fields, "recording_start_ms"),
        recording_end_ms=_millis(fields, "recording_end_ms"),
        recording_duration_ms=_number(fields, "recording_duration_ms"),
    )


def _older(item: object) -> tuple[str | None, Recording]:
    """One object of the older shape: an id and a URL; no start or end time."""
    fields = _object(item)
    return _text(fields, "call_id", "call_uuid"), Recording(
        recording_id=_text(fields, "recording_id"),
        recording_url=_text(fields, "url", "recording_url"),
    )


def _next_offset(meta: object, offset: int, count: int) -> int | None:
    """The offset of the next page: ``meta.next``'s own offset, else this one plus what came."""
    if not isinstance(meta, Mapping) or not meta.get("next"):
        return None
    following = meta["next"]
    found = parse_qs(urlsplit(following).query).get("offset") if isinstance(following, str) else None
    if found and found[-1].isascii() and found[-1].isdigit():
        return int(found[-1])
    return offset + count if count else None


def _object(item: object) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise BadAnswerError(f"a recording that is not a JSON object but {type(item).__name__}")
    return item


def _text(fields: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = fields.get(name)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if value is not None and not isinstance(value, str):
            raise BadAnswerError(f"{name} is {type(value).__name__}, not text")
    return None


def _number(fields: Mapping[str, Any], name: str) -> float | None:
    """A number, or a decimal string such as ``"7880.00000"``; null or missing is None."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadAnswerError(f"{name} is {type(value).__name__}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise BadAnswerError(f"{name} is not a number: {_clip(repr(value))}") from None
    if not math.isfinite(number) or number < 0:
        raise BadAnswerError(f"{name} is not a time: {_clip(repr(value))}")
    return number


def _millis(fields: Mapping[str, Any], name: str) -> int | None:
    number = _number(fields, name)
    return None if number is None else round(number)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
