"""Validation of stop requests: the same rules at the producer and in the worker."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from recstop.worker.model.errors import InvalidStopRequest

UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
AUTH_ID_RE: Final = re.compile(r"(?:MA|SA)_[A-Za-z0-9]{4,40}")
REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
MAX_URL_LENGTH: Final = 2048
TASK_KWARGS: Final = frozenset({"call_uuid", "url", "auth_id", "request_id", "not_after"})


@dataclass(frozen=True)
class StopRequest:
    """A validated stop: which call, which recording (None = all), for which account."""

    call_uuid: str
    url: str | None = None
    auth_id: str | None = None
    request_id: str | None = None
    not_after: datetime | None = None

    def to_kwargs(self) -> dict[str, str | None]:
        """The Celery task keyword arguments (JSON-safe)."""
        return {
            "call_uuid": self.call_uuid,
            "url": self.url,
            "auth_id": self.auth_id,
            "request_id": self.request_id,
            "not_after": self.not_after.isoformat() if self.not_after else None,
        }


def validate_call_uuid(value: object) -> str:
    """Return a UUID-shaped call id; anything else (paths, queries, CR/LF ...) is rejected."""
    if not isinstance(value, str):
        raise InvalidStopRequest("call_uuid", f"must be a string, got {type(value).__name__}")
    if not UUID_RE.fullmatch(value):
        raise InvalidStopRequest("call_uuid", f"must be a UUID, got {_preview(value)}")
    return value


def validate_url(value: object) -> str | None:
    """Return an http(s) recording URL, or None for "stop all"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidStopRequest("url", f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidStopRequest("url", f"longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):  # noqa: PLR2004
        raise InvalidStopRequest("url", "contains whitespace or control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no byte string (and no API request) holds it
        raise InvalidStopRequest("url", "is not valid Unicode text (lone surrogate)") from None
    try:
        parts = urlsplit(value)
    except ValueError:  # "Invalid IPv6 URL", netloc characters that NFKC-normalise to "/?#@:"
        raise InvalidStopRequest("url", f"is not a valid URL: {_preview(value)}") from None
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise InvalidStopRequest("url", f"must be an absolute http(s) URL, got {_preview(value)}")
    return value


def validate_auth_id(value: object) -> str:
    """Return an account id shaped like ``MA_...`` or ``SA_...``."""
    if not isinstance(value, str):
        raise InvalidStopRequest("auth_id", f"must be a string, got {type(value).__name__}")
    if not AUTH_ID_RE.fullmatch(value):
        raise InvalidStopRequest(
            "auth_id", f"must look like MA_XXXXXXXX or SA_XXXXXXXX, got {_preview(value)}"
        )
    return value


def validate_request_id(value: object) -> str | None:
    """Return a printable correlation id of at most 128 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not REQUEST_ID_RE.fullmatch(value):
        raise InvalidStopRequest("request_id", "must be 1-128 characters of [A-Za-z0-9._:@/+=-]")
    return value


def parse_instant(field: str, value: object) -> datetime | None:
    """Parse an ISO-8601 instant with a timezone (or a datetime) into an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and len(value) <= 64:  # noqa: PLR2004
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidStopRequest(field, f"not an ISO-8601 time: {_preview(value)}") from None
    else:
        raise InvalidStopRequest(field, "must be an ISO-8601 string with a timezone")
    if moment.tzinfo is None:
        raise InvalidStopRequest(field, "must carry a timezone (e.g. 2026-01-01T12:00:00Z)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 or 9999-12-31T23:59-05:00 leave the datetime range
        raise InvalidStopRequest(field, "is out of the representable range") from None


def validate_stop(
    call_uuid: object,
    url: object = None,
    auth_id: object = None,
    request_id: object = None,
    not_after: object = None,
) -> StopRequest:
    """Validate every field of a stop request."""
    return StopRequest(
        call_uuid=validate_call_uuid(call_uuid),
        url=validate_url(url),
        auth_id=None if auth_id is None else validate_auth_id(auth_id),
        request_id=validate_request_id(request_id),
        not_after=parse_instant("not_after", not_after),
    )


def decode_task_message(args: object, kwargs: object) -> StopRequest:
    """Validate a task message from any producer: keyword arguments only, known names only."""
    if args not in ((), [], None):
        raise InvalidStopRequest("args", "positional arguments are not accepted; use kwargs")
    if not isinstance(kwargs, dict):
        raise InvalidStopRequest("kwargs", "must be a JSON object")
    unknown = sorted(set(kwargs) - TASK_KWARGS, key=str)
    if unknown:
        raise InvalidStopRequest("kwargs", f"unknown arguments {unknown[:5]!r}")
    if "call_uuid" not in kwargs:
        raise InvalidStopRequest("call_uuid", "is required")
    fields: dict[str, Any] = kwargs
    return validate_stop(**fields)


def _preview(value: str, limit: int = 60) -> str:
    shown = value if len(value) <= limit else value[:limit] + "..."
    return repr(shown) + (f" ({len(value)} chars)" if len(value) > limit else "")
