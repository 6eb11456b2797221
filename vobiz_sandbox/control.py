"""The control API under ``/_sandbox/``: set up accounts, calls, recordings, faults; read the logs.

Routes (JSON bodies and replies; an error is ``{"error": "<reason>"}`` with a 4xx status):

- ``GET health``: ``{"ok": true}``.
- ``POST accounts`` ``{auth_id, token, active?}``; ``PATCH accounts/<auth_id>`` ``{active?, token?}``.
- ``POST calls`` ``{auth_id, call_uuid?, recordings?, from_number?, to_number?}``: a live call (a new uuid
  unless given) with ``recordings`` active recordings (default 0, at most 100, no time limit); answers 201
  ``{"call_uuid": ..., "recordings": [<url>, ...]}``. ``recstop sandbox call`` sends it.
- ``GET calls/<call_uuid>``: ``{call_uuid, auth_id, recordings}``, the URLs of the recordings still active
  (``recstop sandbox show``); ``DELETE calls/<call_uuid>`` hangs up: its recordings end, later stops and
  starts get 404 "Call not found", the Recordings API keeps listing its recordings.
- ``POST calls/<call_uuid>/recordings`` ``{url?, time_limit?, file_format?, callback_url?,
  callback_method?}``: one more active recording (no time limit unless given; the other fields as Start
  Recording reads them); answers 201 ``{"url": ..., "recording_id": ...}``.
- ``GET recordings?call_uuid=``: every recording (of one call) with what the API does not show yet:
  ``{"recordings": [{recording_id, url, call_uuid, auth_id, file_format, time_limit_s, callback_url,
  callback_method, start_ms, end_ms, active, finalized_ms, finalized}]}``.
- ``GET clock``, ``POST clock`` ``{advance_s}``: the sandbox time ``{"now_ms", "offset_s"}``, moved forward.
- ``GET requests?call_uuid=&since_seq=&endpoint=``: the API requests received (``token_ok``, never the
  token), ``endpoint`` one of ``stop``, ``start``, ``recordings``; ``DELETE requests`` empties the log.
- ``GET callbacks?since_seq=``: the recording callbacks sent ``{"callbacks": [...]}``; ``DELETE callbacks``.
- ``GET|PUT|DELETE faults``: the fault rules (:mod:`recstop.sandbox.faults`); ``POST faults`` ``{rules}``
  appends rules after the current ones.
- ``GET|PUT config``: see below.

``PUT /_sandbox/config`` takes any of ``auto_calls``, ``nothing_to_stop``, ``rate_limit_rps`` (a number
>= 0 per account, 0 = off), ``rate_limit_burst`` (an integer >= 1, ``null`` = 50 ms worth, see
:mod:`recstop.sandbox.ratelimit`) and ``finalize_delay_s`` (0 to 3600: how long after a recording ends the
Recordings API shows its end, for recordings ending from then on); absent fields keep their value, a rate
limit change starts every bucket full. ``GET /_sandbox/config`` returns them all plus ``rate_limited``: how
many requests the rate limiter has answered with 429 since the sandbox started (fault-injected 429s are
not counted).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from recstop.sandbox.api import SEGMENT, valid_id
from recstop.sandbox.bodies import Reply
from recstop.sandbox.faults import FaultConfig, FaultConfigError, parse_rules
from recstop.sandbox.start import RecordingSpec, SpecError, read_spec
from recstop.sandbox.state import KEEP, Keep, SandboxState

#: Most recordings ``POST calls`` starts with a new call.
MAX_NEW_RECORDINGS = 100

Body = Mapping[str, object]
Query = Mapping[str, list[str]]
Action = Callable[[SandboxState, tuple[str, ...], Body, Query], Reply]


class ControlError(Exception):
    """A control request that cannot be served: status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _flag(body: Body, key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise ControlError(400, f"{key} must be a boolean")
    return value


def _text(body: Body, key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ControlError(400, f"{key} must be a non-empty string")
    return value


def _number(body: Body, key: str) -> float | None:
    """An optional finite number."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ControlError(400, f"{key} must be a number, not {value!r}")
    return float(value)


def _since(query: Query) -> int | None:
    since = query.get("since_seq", [None])[-1]
    if since is not None and not (since.isascii() and since.isdigit()):
        raise ControlError(400, "since_seq must be a non-negative integer")
    return None if since is None else int(since)


def _rate(body: Body) -> float | None:
    """``rate_limit_rps`` (``null`` = 0 = off), or ``None`` when absent."""
    if "rate_limit_rps" not in body:
        return None
    value = body["rate_limit_rps"]
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ControlError(400, f"rate_limit_rps must be a number >= 0 (0 = off), not {value!r}")
    return float(value)


def _burst(body: Body) -> int | Keep | None:
    """``rate_limit_burst`` (``null`` = the default), or ``KEEP`` when absent."""
    if "rate_limit_burst" not in body:
        return KEEP
    value = body["rate_limit_burst"]
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ControlError(400, f"rate_limit_burst must be an integer >= 1 or null (default), not {value!r}")


def _add_account(state: SandboxState, _: tuple[str, ...], body: Body, __: Query) -> Reply:
    auth_id, token = _text(body, "auth_id", required=True), _text(body, "token", required=True)
    if not valid_id(auth_id):
        raise ControlError(400, f"auth_id must match {SEGMENT}")
    assert auth_id is not None
    assert token is not None
    active = _flag(body, "active")
    state.add_account(auth_id, token, active=active is not False)
    return Reply(201, {"auth_id": auth_id, "active": active is not False})


def _update_account(state: SandboxState, ids: tuple[str, ...], body: Body, _: Query) -> Reply:
    active, token = _flag(body, "active"), _text(body, "token")
    try:
        account = state.update_account(ids[0], active=active, token=token)
    except KeyError:
        raise ControlError(404, f"no account {ids[0]}") from None
    return Reply(200, {"auth_id": ids[0], "active": account.active})


def _count(body: Body, key: str, most: int) -> int:
    """An optional integer in [0, most] (absent: 0)."""
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise ControlError(400, f"{key} must be an integer from 0 to {most}, not {value!r}")
    return value


def _spec(body: Body) -> RecordingSpec:
    try:
        return read_spec(body, default_time_limit_s=None)
    except SpecError as error:
        raise ControlError(400, error.reason) from None


def _create_call(state: SandboxState, _: tuple[str, ...], body: Body, __: Query) -> Reply:
    auth_id = _text(body, "auth_id", required=True)
    call_uuid = _text(body, "call_uuid") or str(uuid.uuid4())
    if not valid_id(call_uuid):
        raise ControlError(400, f"call_uuid must match {SEGMENT}")
    count = _count(body, "recordings", MAX_NEW_RECORDINGS)
    numbers = {"from_number": _text(body, "from_number"), "to_number": _text(body, "to_number")}
    assert auth_id is not None
    try:
        state.create_call(auth_id, call_uuid, **numbers)
    except KeyError:
        raise ControlError(400, f"no account {auth_id}") from None
    except ValueError as error:
        raise ControlError(409, str(error)) from None
    recordings = [state.start_recording(call_uuid, RecordingSpec()).url for _ in range(count)]
    return Reply(201, {"call_uuid": call_uuid, "recordings": recordings})


def _get_call(state: SandboxState, ids: tuple[str, ...], _: Body, __: Query) -> Reply:
    call = state.call(ids[0])
    if call is None:
        raise ControlError(404, f"no call {ids[0]}")
    body = {"call_uuid": ids[0], "auth_id": call.auth_id, "recordings": call.active_recordings}
    return Reply(200, body)


def _hang_up(state: SandboxState, ids: tuple[str, ...], _: Body, __: Query) -> Reply:
    if not state.hang_up(ids[0]):
        raise ControlError(404, f"no call {ids[0]}")
    return Reply(204)


def _start_recording(state: SandboxState, ids: tuple[str, ...], body: Body, _: Query) -> Reply:
    url, spec = _text(body, "url"), _spec(body)
    try:
        rec = state.start_recording(ids[0], spec, url=url)
    except KeyError:
        raise ControlError(404, f"no call {ids[0]}") from None
    except ValueError as error:
        raise ControlError(409, str(error)) from None
    return Reply(201, {"url": rec.url, "recording_id": rec.recording_id})


def _recordings(state: SandboxState, _: tuple[str, ...], __: Body, query: Query) -> Reply:
    return Reply(200, {"recordings": state.recordings(query.get("call_uuid", [None])[-1])})


def _advance_clock(state: SandboxState, _: tuple[str, ...], body: Body, __: Query) -> Reply:
    seconds = _number(body, "advance_s")
    if seconds is None:
        raise ControlError(400, "advance_s is required")
    try:
        state.advance_clock(seconds)
    except ValueError as error:
        raise ControlError(400, str(error)) from None
    return Reply(200, state.clock())


def _callbacks(state: SandboxState, _: tuple[str, ...], __: Body, query: Query) -> Reply:
    return Reply(200, {"callbacks": state.callbacks(since_seq=_since(query))})


def _clear_callbacks(state: SandboxState, _: tuple[str, ...], __: Body, ___: Query) -> Reply:
    state.clear_callbacks()
    return Reply(204)


def _requests(state: SandboxState, _: tuple[str, ...], __: Body, query: Query) -> Reply:
    call_uuid = query.get("call_uuid", [None])[-1]
    endpoint = query.get("endpoint", [None])[-1]
    found = state.requests(call_uuid=call_uuid, since_seq=_since(query), endpoint=endpoint)
    return Reply(200, {"requests": found})


def _clear_requests(state: SandboxState, _: tuple[str, ...], __: Body, ___: Query) -> Reply:
    state.clear_requests()
    return Reply(204)


def _set_faults(state: SandboxState, _: tuple[str, ...], body: Body, __: Query) -> Reply:
    try:
        state.set_faults(FaultConfig.from_json(body))
    except FaultConfigError as error:
        raise ControlError(400, str(error)) from None
    return Reply(200, state.faults())


def _add_faults(state: SandboxState, _: tuple[str, ...], body: Body, __: Query) -> Reply:
    try:
        state.add_faults(parse_rules(body.get("rules")))
    except FaultConfigError as error:
        raise ControlError(400, str(error)) from None
    return Reply(200, state.faults())


def _clear_faults(state: SandboxState, _: tuple[str, ...], __: Body, ___: Query) -> Reply:
    state.set_faults(FaultConfig())
    return Reply(204)


def _configure(state: SandboxState, _: tuple[str, ...], body: Body, __: Query) -> Reply:
    try:
        state.configure(
            auto_calls=_flag(body, "auto_calls"),
            nothing_to_stop=_text(body, "nothing_to_stop"),
            rate_limit_rps=_rate(body),
            rate_limit_burst=_burst(body),
            finalize_delay_s=_number(body, "finalize_delay_s"),
        )
    except ValueError as error:
        raise ControlError(400, str(error)) from None
    return Reply(200, state.config())


_ID = f"({SEGMENT})"
ROUTES: tuple[tuple[str, re.Pattern[str], Action], ...] = tuple(
    (method, re.compile(f"/_sandbox/{pattern}"), action)
    for method, pattern, action in (
        ("GET", "health", lambda *_: Reply(200, {"ok": True})),
        ("POST", "accounts", _add_account),
        ("PATCH", f"accounts/{_ID}", _update_account),
        ("POST", "calls", _create_call),
        ("GET", f"calls/{_ID}", _get_call),
        ("DELETE", f"calls/{_ID}", _hang_up),
        ("POST", f"calls/{_ID}/recordings", _start_recording),
        ("GET", "recordings", _recordings),
        ("GET", "clock", lambda state, *_: Reply(200, state.clock())),
        ("POST", "clock", _advance_clock),
        ("GET", "requests", _requests),
        ("DELETE", "requests", _clear_requests),
        ("GET", "callbacks", _callbacks),
        ("DELETE", "callbacks", _clear_callbacks),
        ("GET", "faults", lambda state, *_: Reply(200, state.faults())),
        ("PUT", "faults", _set_faults),
        ("POST", "faults", _add_faults),
        ("DELETE", "faults", _clear_faults),
        ("GET", "config", lambda state, *_: Reply(200, state.config())),
        ("PUT", "config", _configure),
    )
)


def handle(state: SandboxState, method: str, raw_path: str, raw_body: bytes) -> Reply:
    """Serve one control request; errors are ``{"error": "<reason>"}``."""
    parts = urlsplit(raw_path)
    allowed = [m for m, pattern, _ in ROUTES if pattern.fullmatch(parts.path)]
    for route_method, pattern, action in ROUTES:
        found = pattern.fullmatch(parts.path)
        if found is None or route_method != method:
            continue
        try:
            return action(state, found.groups(), _parse_body(raw_body), parse_qs(parts.query))
        except ControlError as error:
            return Reply(error.status, {"error": error.reason})
    if allowed:
        body = {"error": f"method {method} not allowed", "allowed": allowed}
        return Reply(405, body, (("Allow", ", ".join(allowed)),))
    return Reply(404, {"error": f"no control route {parts.path}"})


def _parse_body(raw_body: bytes) -> Body:
    if not raw_body.strip():
        return {}
    try:
        data = json.loads(raw_body)
    except (ValueError, RecursionError) as error:
        raise ControlError(400, f"malformed JSON body: {error}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "the body must be a JSON object")
    return data
