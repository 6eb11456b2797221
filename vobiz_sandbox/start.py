"""Start Recording's parameters: read from a JSON or form body, validated into a :class:`RecordingSpec`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from recstop.sandbox.listing import whole
from recstop.sandbox.recordings import FILE_FORMATS

#: Start Recording's ``time_limit`` when none is given, and the most it accepts.
DEFAULT_TIME_LIMIT_S: Final = 60
MAX_TIME_LIMIT_S: Final = 28_800
CALLBACK_METHODS: Final = ("POST", "GET")
MAX_URL_LENGTH: Final = 2048
FORM_TYPE: Final = "application/x-www-form-urlencoded"


class SpecError(ValueError):
    """A parameter Start Recording refuses (400): ``field`` and the reason."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """How to record: ``time_limit_s`` ``None`` records until a stop or the hang-up."""

    time_limit_s: int | None = None
    file_format: str = FILE_FORMATS[0]
    callback_url: str | None = None
    callback_method: str = CALLBACK_METHODS[0]


def parse_fields(raw_body: bytes, content_type: str | None) -> Mapping[str, object]:
    """The body's parameters: form-encoded when the Content-Type says so, else a JSON object (or none)."""
    if not raw_body.strip():
        return {}
    if (content_type or "").split(";")[0].strip().lower() == FORM_TYPE:
        try:
            form = parse_qs(raw_body.decode(), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise SpecError(None, "Malformed form body.") from None
        return {key: values[-1] for key, values in form.items()}
    try:
        data = json.loads(raw_body)
    except (ValueError, RecursionError):
        raise SpecError(None, "Malformed JSON body.") from None
    if not isinstance(data, dict):
        raise SpecError(None, "The request body must be a JSON object.")
    return data


def _time_limit(fields: Mapping[str, object], default: int | None) -> int | None:
    value = fields.get("time_limit")
    if value is None:
        return default
    number = whole(value) if isinstance(value, str) else value
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_TIME_LIMIT_S:
        raise SpecError(
            "time_limit", f"time_limit must be a whole number of seconds from 1 to {MAX_TIME_LIMIT_S}."
        )
    return number


def _choice(fields: Mapping[str, object], key: str, options: tuple[str, ...]) -> str:
    value = fields.get(key, options[0])
    if value not in options:
        raise SpecError(key, f"{key} must be one of {', '.join(options)}.")
    return str(value)


def _callback_url(fields: Mapping[str, object]) -> str | None:
    value = fields.get("callback_url")
    if value is None or value == "":
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in {"http", "https"}
        or not parts.hostname
        or len(str(value)) > MAX_URL_LENGTH
        or not str(value).isprintable()
    ):
        raise SpecError("callback_url", "callback_url must be an http or https URL.")
    return str(value)


def read_spec(fields: Mapping[str, object], *, default_time_limit_s: int | None) -> RecordingSpec:
    """Validate ``time_limit``, ``file_format``, ``callback_url``, ``callback_method``; ignore the rest.

    ``transcription_type``, ``transcription_url`` and ``record_channel_type`` are accepted and ignored.
    """
    return RecordingSpec(
        time_limit_s=_time_limit(fields, default_time_limit_s),
        file_format=_choice(fields, "file_format", FILE_FORMATS),
        callback_url=_callback_url(fields),
        callback_method=_choice(fields, "callback_method", CALLBACK_METHODS),
    )
