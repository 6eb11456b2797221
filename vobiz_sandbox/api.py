"""The imitated Vobiz route: ``DELETE /api/v1/Account/{auth_id}/Call/{call_uuid}/Record/``."""

from __future__ import annotations

import json
import re
from typing import Final

from recstop.sandbox.bodies import Reply, no_content, v1_error, v2_error
from recstop.sandbox.ratelimit import retry_after_s
from recstop.sandbox.state import Auth, SandboxState, Stop

#: One path segment: auth ids and call uuids never need quoting.
SEGMENT: Final = r"[A-Za-z0-9_-]+"
RECORD_ROUTE: Final = re.compile(rf"/api/v1/Account/({SEGMENT})/Call/({SEGMENT})/Record/")
_SEGMENT_RE: Final = re.compile(SEGMENT)


def valid_id(value: object) -> bool:
    """Whether ``value`` can appear as an auth id or call uuid in the route."""
    return isinstance(value, str) and _SEGMENT_RE.fullmatch(value) is not None


def match(raw_path: str) -> tuple[str, str] | None:
    """``(auth_id, call_uuid)`` when the raw path is exactly the record route, else ``None``."""
    found = RECORD_ROUTE.fullmatch(raw_path)
    return None if found is None else (found[1], found[2])


def unauthorized(message: str = "Invalid authentication credentials.") -> Reply:
    """401 in the v2 shape, as Vobiz answers bad credentials and unknown paths."""
    return v2_error(401, "UNAUTHORIZED", message)


def parse_url(raw_body: bytes) -> str | Reply | None:
    """Return the ``URL`` to stop (``None`` = all), or a 400 reply for a malformed body."""
    if not raw_body.strip():
        return None
    try:
        data = json.loads(raw_body)
    except (ValueError, RecursionError) as error:
        return v2_error(400, "INVALID_REQUEST", "Malformed JSON body.", {"reason": str(error)})
    if not isinstance(data, dict):
        return v2_error(400, "INVALID_REQUEST", "The request body must be a JSON object.")
    url = data.get("URL")
    if url is not None and (not isinstance(url, str) or not url):
        return v2_error(400, "INVALID_REQUEST", "URL must be a non-empty string.", {"field": "URL"})
    return url


def refusal(
    state: SandboxState, method: str, auth_id: str, header_id: str | None, token: str | None
) -> Reply | None:
    """Return the 405/401/403 answer for a request that may not proceed, else ``None``."""
    if method != "DELETE":
        message = f"Method {method} not allowed."
        reply = v2_error(405, "METHOD_NOT_ALLOWED", message, {"allowed": ["DELETE"]})
        return Reply(reply.status, reply.body, (("Allow", "DELETE"),))
    if not header_id or not token:
        return unauthorized("Authentication credentials were not provided.")
    verdict = state.authenticate(header_id, token)
    if header_id != auth_id or verdict is Auth.INVALID:
        return unauthorized()
    if verdict is Auth.INACTIVE:
        return v2_error(403, "ACCOUNT_INACTIVE", "The account is not active.", {"auth_id": auth_id})
    return None


def throttle(state: SandboxState, auth_id: str) -> Reply | None:
    """Count this request against ``auth_id``'s rate limit: the 429 answer if over it, else ``None``."""
    wait = state.rate_limit(auth_id)
    if wait is None:
        return None
    seconds = retry_after_s(wait)
    details, headers = {"retryAfter": seconds}, (("Retry-After", str(seconds)),)
    return v2_error(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded.", details, headers)


def handle(
    state: SandboxState,
    method: str,
    raw_path: str,
    raw_body: bytes,
    *,
    header_id: str | None,
    token: str | None,
) -> Reply:
    """Answer one request to the API as Vobiz would."""
    route = match(raw_path)
    if route is None:
        return unauthorized("Authentication failed for this resource.")
    refused = refusal(state, method, route[0], header_id, token) or throttle(state, route[0])
    if refused is not None:
        return refused
    url = parse_url(raw_body)
    if isinstance(url, Reply):
        return url
    outcome = state.stop(route[0], route[1], url)
    if outcome is Stop.STOPPED:
        return no_content()
    return v1_error(404, "Call not found" if outcome is Stop.NO_CALL else "Recording not found")
