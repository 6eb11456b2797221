"""One pure, table-driven classification of every Vobiz API response."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from recstop.worker.model.vocabulary import Outcome
from recstop.worker.policy.backoff import parse_retry_after


@dataclass(frozen=True)
class Classification:
    """The verdict on one attempt, with what the API said (``http_status`` None: no response)."""

    outcome: Outcome
    http_status: int | None
    code: str | None = None
    message: str | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        """Stopped now or already stopped: the stop is done either way."""
        return self.outcome.succeeded

    @property
    def error(self) -> str:
        """What went wrong, as the API (or the connection) put it; empty on success."""
        return "" if self.succeeded else self.message or ""


#: Status codes with a fixed meaning. Other 2xx succeed, other 4xx are dead (permanent), other 5xx retry.
STATUS_TABLE: Final[Mapping[int, Outcome]] = {
    404: Outcome.ALREADY_STOPPED,  # call not found / not active: nothing is recording
    408: Outcome.RETRY,
    425: Outcome.RETRY,
    429: Outcome.RETRY,
    500: Outcome.RETRY,
    502: Outcome.RETRY,
    503: Outcome.RETRY,
    504: Outcome.RETRY,
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
        return Classification(Outcome.STOPPED, status)
    error = parse_error_body(body)
    header = _header(headers or {}, "retry-after")
    retry_after = parse_retry_after(header, now=now)
    if retry_after is None:
        retry_after = error.retry_after_s
    outcome = STATUS_TABLE.get(status)
    if outcome is None:
        outcome = Outcome.RETRY if status >= 500 else Outcome.DEAD  # noqa: PLR2004
    if 400 <= status < 500 and outcome is Outcome.DEAD and _nothing_to_stop(error):  # noqa: PLR2004
        outcome = Outcome.ALREADY_STOPPED
    if 300 <= status < 400 and error.message is None:  # noqa: PLR2004
        error = ErrorBody(message="unexpected redirect (redirects are not followed)")
    return Classification(
        outcome,
        status,
        code=error.code,
        message=error.message,
        retry_after_s=retry_after if outcome is Outcome.RETRY else None,
    )


def no_response(code: str, what: str, exc: BaseException) -> Classification:
    """A timeout, reset or refused connection: no answer came, so the attempt is tried again."""
    return Classification(Outcome.RETRY, None, code=code, message=f"{what}: {type(exc).__name__}")


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
