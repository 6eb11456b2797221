"""One pure, table-driven classification of every Vobiz API response."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from worker.backoff import parse_retry_after


class Kind(StrEnum):
    """What a response means for the stop."""

    STOPPED = "stopped"
    ALREADY_STOPPED = "already_stopped"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Classification:
    """The verdict on one response, with what the API said."""

    kind: Kind
    http_status: int | None
    code: str | None = None
    message: str | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        """Stopped now or already stopped: the stop is done either way."""
        return self.kind in {Kind.STOPPED, Kind.ALREADY_STOPPED}


#: Status codes with a fixed meaning. Other 2xx succeed, other 4xx are permanent, other 5xx retry.
STATUS_TABLE: Final[Mapping[int, Kind]] = {
    404: Kind.ALREADY_STOPPED,  # call not found / not active: nothing is recording
    408: Kind.RETRY,
    425: Kind.RETRY,
    429: Kind.RETRY,
    500: Kind.RETRY,
    502: Kind.RETRY,
    503: Kind.RETRY,
    504: Kind.RETRY,
}

#: Error texts and codes meaning "there is nothing to stop" (the stop is already done).
NOTHING_TO_STOP_RE: Final = re.compile(
    r"recording[s]? not found|no (?:active |ongoing |current )?recordings?\b"
    r"|not (?:being |currently )?record(?:ed|ing)|nothing to stop"
    r"|recording (?:is |was )?(?:already )?stopped|call (?:is )?not (?:found|active)",
    re.IGNORECASE,
)
NOTHING_TO_STOP_CODES: Final = frozenset(
    {"RECORDING_NOT_FOUND", "NO_ACTIVE_RECORDING", "CALL_NOT_FOUND", "CALL_NOT_ACTIVE", "NOT_RECORDING"}
)
MAX_MESSAGE: Final = 300


@dataclass(frozen=True)
class ErrorBody:
    """The parts of either documented error body shape."""

    code: str | None = None
    message: str | None = None
    retry_after_s: float | None = None


def parse_error_body(body: bytes | str | None) -> ErrorBody:
    """Parse ``{"api_id", "error": "text"}`` or ``{"status", "error": {code, message, details}}``."""
    if not body:
        return ErrorBody()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return ErrorBody(message=_clip(text.strip()) or None)
    if not isinstance(data, dict):
        return ErrorBody()
    error = data.get("error")
    if isinstance(error, str):
        return ErrorBody(message=_clip(error))
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        details = error.get("details")
        retry_after = details.get("retryAfter") if isinstance(details, dict) else None
        return ErrorBody(
            code=_clip(code) if isinstance(code, str) else None,
            message=_clip(message) if isinstance(message, str) else None,
            retry_after_s=_seconds(retry_after),
        )
    message = data.get("message")
    return ErrorBody(message=_clip(message) if isinstance(message, str) else None)


def classify(
    status: int,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    *,
    now: datetime | None = None,
) -> Classification:
    """Decide what a response means: stopped, already stopped, retry later, or give up."""
    if 200 <= status < 300:  # noqa: PLR2004
        return Classification(Kind.STOPPED, status)
    error = parse_error_body(body)
    header = _header(headers or {}, "retry-after")
    retry_after = parse_retry_after(header, now=now)
    if retry_after is None:
        retry_after = error.retry_after_s
    kind = STATUS_TABLE.get(status)
    if kind is None:
        kind = Kind.RETRY if status >= 500 else Kind.PERMANENT  # noqa: PLR2004
    if 400 <= status < 500 and kind is Kind.PERMANENT and _nothing_to_stop(error):  # noqa: PLR2004
        kind = Kind.ALREADY_STOPPED
    if 300 <= status < 400 and error.message is None:  # noqa: PLR2004
        error = ErrorBody(message="unexpected redirect (redirects are not followed)")
    return Classification(
        kind,
        status,
        code=error.code,
        message=error.message,
        retry_after_s=retry_after if kind is Kind.RETRY else None,
    )


def _nothing_to_stop(error: ErrorBody) -> bool:
    if error.code and error.code.upper() in NOTHING_TO_STOP_CODES:
        return True
    return bool(error.message and NOTHING_TO_STOP_RE.search(error.message))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and 0 <= value < 10**7:
        return float(value)
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 7:  # noqa: PLR2004 - below 10**7, as numbers
        return float(int(text))
    return None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."
