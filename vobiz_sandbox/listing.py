"""The Recordings API's answers: the list's query and paging, and the bad answers faults ask for.

The list is ordered oldest first (by when each recording started, then by arrival): recordings are never
removed, so a new one only ever lands on the last page and paging through never skips or repeats one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qs, urlencode

from recstop.sandbox.bodies import HTML_TYPE, Reply
from recstop.sandbox.recordings import RECORDING_TYPES, Shown, current_object, decimal, old_object

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
#: How far before its start a recording's end is shown by the ``end_before_start`` answer.
END_BEFORE_START_MS: Final = 1000

#: The bad answers a ``kind="answer"`` fault rule makes the Recordings API give (a 200 each):
#: ``old_shape``: the older page ``{"recordings": [{recording_id, call_id, url, duration ...}]}``;
#: ``html``: an HTML page; ``truncated``: the JSON cut in half; ``no_end_ms``: objects without
#: ``recording_end_ms``; ``end_before_start``: ``recording_end_ms`` a second before the start;
#: ``strings``: every number a decimal string; ``numbers``: ``recording_duration_ms`` a number;
#: ``never_finalized``: the end and durations stay null.
Answer = Literal[
    "old_shape", "html", "truncated", "no_end_ms", "end_before_start", "strings", "numbers", "never_finalized"
]
ANSWERS: Final = (
    "old_shape",
    "html",
    "truncated",
    "no_end_ms",
    "end_before_start",
    "strings",
    "numbers",
    "never_finalized",
)
MAINTENANCE_PAGE: Final = (
    b"<!DOCTYPE html>\n<html><head><title>Vobiz Console</title></head>\n"
    b"<body><h1>We'll be right back</h1><p>Scheduled maintenance is in progress.</p></body></html>\n"
)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The list's filters and page."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    call_uuid: str | None = None
    recording_type: str | None = None


class QueryError(ValueError):
    """A list query the API refuses (400), with the reason."""


def whole(text: str) -> int | None:
    """The value of a plain decimal integer (ASCII digits, at most 18 of them), else ``None``."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None  # noqa: PLR2004


def _count(values: dict[str, list[str]], key: str, low: int, high: int | None, default: int) -> int:
    if key not in values:
        return default
    text = values[key][-1]
    value = whole(text)
    if value is not None and value >= low and (high is None or value <= high):
        return value
    bound = f"from {low} to {high}" if high is not None else f">= {low}"
    raise QueryError(f"{key} must be an integer {bound}, not {text!r}")


def parse_query(query: str) -> ListQuery:
    """Read ``limit`` (1 to 100, default 20), ``offset``, ``call_uuid`` and ``recording_type``.

    Raises :class:`QueryError` for a bad value; other parameters are ignored; a repeated one counts once,
    its last value.
    """
    values = parse_qs(query, keep_blank_values=True)
    recording_type = values.get("recording_type", [None])[-1]
    if recording_type is not None and recording_type not in RECORDING_TYPES:
        raise QueryError(f"recording_type must be one of {', '.join(RECORDING_TYPES)}")
    return ListQuery(
        limit=_count(values, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT),
        offset=_count(values, "offset", 0, None, 0),
        call_uuid=values.get("call_uuid", [None])[-1] or None,
        recording_type=recording_type,
    )


def page_path(auth_id: str, query: ListQuery, offset: int) -> str:
    """The ready path of a page of this query, as ``meta.next``/``previous`` give it (filters kept)."""
    params: list[tuple[str, object]] = [("limit", query.limit), ("offset", offset)]
    params += [
        (k, v) for k, v in (("call_uuid", query.call_uuid), ("recording_type", query.recording_type)) if v
    ]
    return f"/v1/Account/{auth_id}/Recording/?{urlencode(params)}"


def meta(auth_id: str, query: ListQuery, total_count: int) -> dict[str, object]:
    """The list's ``meta``: the page asked for, the total, the paths of the next and previous pages."""
    after = query.offset + query.limit
    before = max(0, query.offset - query.limit)
    return {
        "limit": query.limit,
        "offset": query.offset,
        "next": page_path(auth_id, query, after) if after < total_count else None,
        "previous": page_path(auth_id, query, before) if query.offset > 0 else None,
        "total_count": total_count,
    }


def _no_end(item: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in item.items() if k != "recording_end_ms"}


def _end_before_start(item: dict[str, object]) -> dict[str, object]:
    start = item["recording_start_ms"]
    assert isinstance(start, int)
    return item | {"recording_end_ms": start - END_BEFORE_START_MS}


def _strings(item: dict[str, object]) -> dict[str, object]:
    changed: dict[str, object] = {}
    for key in (
        "recording_start_ms",
        "recording_end_ms",
        "recording_duration_ms",
        "rounded_recording_duration",
    ):
        value = item[key]
        if isinstance(value, int):
            changed[key] = decimal(value) if key.endswith("_ms") else str(value)
    return item | changed


def _numbers(item: dict[str, object]) -> dict[str, object]:
    value = item["recording_duration_ms"]
    return item | {"recording_duration_ms": None if value is None else float(str(value))}


def _never_finalized(item: dict[str, object]) -> dict[str, object]:
    nulls = ("recording_end_ms", "recording_duration_ms", "rounded_recording_duration")
    return item | dict.fromkeys(nulls)


_BEND: Final[dict[str, Callable[[dict[str, object]], dict[str, object]]]] = {
    "no_end_ms": _no_end,
    "end_before_start": _end_before_start,
    "strings": _strings,
    "numbers": _numbers,
    "never_finalized": _never_finalized,
}


def _item(shown: Shown, answer: Answer | None) -> dict[str, object]:
    item = current_object(shown)
    bend = _BEND.get(answer or "")
    return item if bend is None else bend(item)


def _reply(body: object, answer: Answer | None) -> Reply:
    if answer == "html":
        return Reply(200, raw=MAINTENANCE_PAGE, content_type=HTML_TYPE)
    if answer == "truncated":
        data = json.dumps(body).encode()
        return Reply(200, raw=data[: len(data) // 2])
    return Reply(200, body)


def list_reply(
    auth_id: str, query: ListQuery, page: Sequence[Shown], total_count: int, answer: Answer | None = None
) -> Reply:
    """The 200 answer of the list: the current shape, or the bad answer ``answer`` names."""
    if answer == "old_shape":
        return Reply(200, {"recordings": [old_object(shown) for shown in page]})
    body = {
        "api_id": str(uuid.uuid4()),
        "meta": meta(auth_id, query, total_count),
        "objects": [_item(shown, answer) for shown in page],
    }
    return _reply(body, answer)


def one_reply(shown: Shown, answer: Answer | None = None) -> Reply:
    """The 200 answer of ``GET .../Recording/{recording_id}/``: the object with its ``api_id``."""
    if answer == "old_shape":
        return Reply(200, old_object(shown))
    return _reply({"api_id": str(uuid.uuid4()), **_item(shown, answer)}, answer)
