"""The imitated Vobiz routes, matched on the raw path exactly as sent (casing, trailing slash).

- ``DELETE /api/v1/Account/{auth_id}/Call/{call_uuid}/Record/``: Stop Recording (204, or 404 v1);
- ``POST`` on the same path: Start Recording (200 ``{api_id, message, recording_id, url}``);
- ``GET /api/v1/Account/{auth_id}/Recording/`` (a query string allowed): the Recordings API's list;
- ``GET /api/v1/Account/{auth_id}/Recording/{recording_id}/``: one recording, or 404 v1.

Any other path answers 401, as Vobiz does; another method on a route answers 405.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from recstop.sandbox.bodies import Reply, no_content, v1_error, v2_error
from recstop.sandbox.faults import Endpoint
from recstop.sandbox.listing import Answer, QueryError, list_reply, one_reply, parse_query
from recstop.sandbox.ratelimit import retry_after_s
from recstop.sandbox.start import DEFAULT_TIME_LIMIT_S, SpecError, parse_fields, read_spec
from recstop.sandbox.state import Auth, SandboxState, Stop

#: One path segment: auth ids, call uuids and recording ids never need quoting.
SEGMENT: Final = r"[A-Za-z0-9_-]+"
RECORD_ROUTE: Final = re.compile(rf"/api/v1/Account/({SEGMENT})/Call/({SEGMENT})/Record/")
RECORDINGS_ROUTE: Final = re.compile(rf"/api/v1/Account/({SEGMENT})/Recording/(?:\?([^#]*))?")
RECORDING_ROUTE: Final = re.compile(rf"/api/v1/Account/({SEGMENT})/Recording/({SEGMENT})/")
_SEGMENT_RE: Final = re.compile(SEGMENT)
#: Start Recording's ``message``.
STARTED_MESSAGE: Final = "async api spawned"

Resource = Literal["record", "recordings", "recording"]
#: The methods each resource answers, and the endpoint each one is.
METHODS: Final[dict[Resource, dict[str, Endpoint]]] = {
    "record": {"DELETE": "stop", "POST": "start"},
    "recordings": {"GET": "recordings"},
    "recording": {"GET": "recordings"},
}


def valid_id(value: object) -> bool:
    """Whether ``value`` can appear as an auth id or call uuid in the route."""
    return isinstance(value, str) and _SEGMENT_RE.fullmatch(value) is not None


def match(raw_path: str) -> tuple[str, str] | None:
    """``(auth_id, call_uuid)`` when the raw path is exactly the record route, else ``None``."""
    found = RECORD_ROUTE.fullmatch(raw_path)
    return None if found is None else (found[1], found[2])


@dataclass(frozen=True, slots=True)
class Route:
    """What a request aims at: its resource and ids (``resource`` ``None``: no route matches it).

    ``endpoint`` is ``None`` too when the method is not one the resource answers. ``call_uuid`` is the
    call in the path, the list's ``call_uuid`` filter, or the call of the recording asked for.
    """

    resource: Resource | None = None
    endpoint: Endpoint | None = None
    auth_id: str = ""
    call_uuid: str | None = None
    recording_id: str | None = None
    query: str = ""


def route(state: SandboxState, method: str, raw_path: str) -> Route:
    """Match the raw path against the routes."""
    if found := RECORD_ROUTE.fullmatch(raw_path):
        return Route("record", METHODS["record"].get(method), found[1], call_uuid=found[2])
    if found := RECORDING_ROUTE.fullmatch(raw_path):
        endpoint = METHODS["recording"].get(method)
        call_uuid = state.recording_call(found[2])
        return Route("recording", endpoint, found[1], call_uuid=call_uuid, recording_id=found[2])
    if found := RECORDINGS_ROUTE.fullmatch(raw_path):
        query = found[2] or ""
        try:
            call_uuid = parse_query(query).call_uuid
        except QueryError:
            call_uuid = None
        return Route(
            "recordings", METHODS["recordings"].get(method), found[1], call_uuid=call_uuid, query=query
        )
    return Route()


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
    state: SandboxState, method: str, target: Route, header_id: str | None, token: str | None
) -> Reply | None:
    """Return the 405/401/403 answer for a request that may not proceed, else ``None``."""
    if target.endpoint is None:
        allowed = list(METHODS[target.resource or "record"])
        message = f"Method {method} not allowed."
        reply = v2_error(405, "METHOD_NOT_ALLOWED", message, {"allowed": allowed})
        return Reply(reply.status, reply.body, (("Allow", ", ".join(allowed)),))
    if not header_id or not token:
        return unauthorized("Authentication credentials were not provided.")
    verdict = state.authenticate(header_id, token)
    if header_id != target.auth_id or verdict is Auth.INVALID:
        return unauthorized()
    if verdict is Auth.INACTIVE:
        return v2_error(403, "ACCOUNT_INACTIVE", "The account is not active.", {"auth_id": target.auth_id})
    return None


def throttle(state: SandboxState, auth_id: str) -> Reply | None:
    """Count this request against ``auth_id``'s rate limit: the 429 answer if over it, else ``None``."""
    wait = state.rate_limit(auth_id)
    if wait is None:
        return None
    seconds = retry_after_s(wait)
    details, headers = {"retryAfter": seconds}, (("Retry-After", str(seconds)),)
    return v2_error(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded.", details, headers)


def _stop(state: SandboxState, target: Route, raw_body: bytes) -> Reply:
    url = parse_url(raw_body)
    if isinstance(url, Reply):
        return url
    assert target.call_uuid is not None
    outcome = state.stop(target.auth_id, target.call_uuid, url)
    if outcome is Stop.STOPPED:
        return no_content()
    return v1_error(404, "Call not found" if outcome is Stop.NO_CALL else "Recording not found")


def _start(state: SandboxState, target: Route, raw_body: bytes, content_type: str | None) -> Reply:
    try:
        spec = read_spec(parse_fields(raw_body, content_type), default_time_limit_s=DEFAULT_TIME_LIMIT_S)
    except SpecError as error:
        details = {} if error.field is None else {"field": error.field}
        return v2_error(400, "INVALID_REQUEST", error.reason, details)
    assert target.call_uuid is not None
    try:
        rec = state.start_recording(target.call_uuid, spec, auth_id=target.auth_id)
    except KeyError:
        return v1_error(404, "Call not found")
    body = {
        "api_id": str(uuid.uuid4()),
        "message": STARTED_MESSAGE,
        "recording_id": rec.recording_id,
        "url": rec.url,
    }
    return Reply(200, body)


def _list(state: SandboxState, target: Route, answer: Answer | None) -> Reply:
    try:
        query = parse_query(target.query)
    except QueryError as error:
        return v1_error(400, str(error))
    page, total_count = state.recordings_page(target.auth_id, query)
    return list_reply(target.auth_id, query, page, total_count, answer)


def _one(state: SandboxState, target: Route, answer: Answer | None) -> Reply:
    assert target.recording_id is not None
    shown = state.recording(target.auth_id, target.recording_id)
    if shown is None:
        return v1_error(404, "Recording not found")
    return one_reply(shown, answer)


def handle(
    state: SandboxState,
    method: str,
    target: Route,
    raw_body: bytes,
    *,
    header_id: str | None,
    token: str | None,
    content_type: str | None = None,
    answer: Answer | None = None,
) -> Reply:
    """Answer one request to the API as Vobiz would; ``answer`` makes a 200 of the Recordings API bad."""
    if target.resource is None:
        return unauthorized("Authentication failed for this resource.")
    refused = refusal(state, method, target, header_id, token) or throttle(state, target.auth_id)
    if refused is not None:
        return refused
    if target.endpoint == "stop":
        return _stop(state, target, raw_body)
    if target.endpoint == "start":
        return _start(state, target, raw_body, content_type)
    if target.resource == "recordings":
        return _list(state, target, answer)
    return _one(state, target, answer)
