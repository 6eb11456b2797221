"""Replies, the two Vobiz error body shapes (v1 and v2) and the HTML page a gateway answers with."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

#: Default v2 error codes by HTTP status.
V2_CODES: Final[dict[int, str]] = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


JSON_TYPE: Final = "application/json"
HTML_TYPE: Final = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: status, JSON body (``None`` for no body), extra headers.

    ``raw`` replaces the JSON body with bytes sent as they are, typed ``content_type``: how the sandbox
    answers HTML or a truncated JSON document.
    """

    status: int
    body: object = None
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None
    content_type: str = JSON_TYPE

    def payload(self) -> bytes | None:
        """The bytes of the body, or ``None`` when there is none."""
        if self.raw is not None:
            return self.raw
        return None if self.body is None else json.dumps(self.body).encode()


def default_code(status: int) -> str:
    """Return the v2 error code used for ``status`` when none is given."""
    fallback = "INTERNAL_ERROR" if status >= 500 else "CLIENT_ERROR"  # noqa: PLR2004
    return V2_CODES.get(status, fallback)


def phrase(status: int) -> str:
    """Return the reason phrase of ``status`` (``"Error"`` when unknown)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def no_content() -> Reply:
    """Build ``204 No Content``: the Vobiz success answer."""
    return Reply(204)


def v1_error(status: int, message: str) -> Reply:
    """Build a v1 error: ``{"api_id": "<uuid4>", "error": "<message>"}``."""
    return Reply(status, {"api_id": str(uuid.uuid4()), "error": message})


def v2_error(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, object] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """Build a v2 error: ``{"status": "error", "error": {code, message, details}, "requestId"}``."""
    error = {"code": code, "message": message, "details": dict(details or {})}
    body = {"status": "error", "error": error, "requestId": str(uuid.uuid4())}
    return Reply(status, body, headers)


def html_page(status: int, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """Build the HTML page a gateway in front of the API answers with, instead of JSON."""
    title = f"{status} {phrase(status)}"
    page = (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
        f"<body><center><h1>{title}</h1></center><hr><center>nginx</center></body></html>\n"
    )
    return Reply(status, None, headers, raw=page.encode(), content_type=HTML_TYPE)
