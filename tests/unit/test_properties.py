"""Property tests: no input makes validation, the consumer's check or the classifier raise an untyped error.

Profiles: ``ci`` (default, a few seconds) and ``chaos`` (5,000 examples per property), chosen with
``HYPOTHESIS_PROFILE=chaos``. The strategies below are module-level so longer runs can reuse them.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import redis
from celery import Celery
from celery.worker.request import Request
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kombu.message import Message
from kombu.utils.json import dumps as kombu_dumps
from kombu.utils.json import loads as kombu_loads
from support import free_port

from recstop.producers import Producer
from recstop.worker.api.classify import MAX_MESSAGE, Classification, classify, parse_error_body
from recstop.worker.celeryapp.poison import (
    ACCEPTED_CONTENT_TYPE,
    CONTENT_TYPE_REFUSED,
    RAW_REASONS,
    inspect_message,
)
from recstop.worker.celeryapp.timing import TimingError, read_timing, strip
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import BrokerUnavailableError, InvalidStopRequest
from recstop.worker.model.validation import (
    StopRequest,
    decode_task_message,
    parse_instant,
    validate_auth_id,
    validate_call_uuid,
    validate_request_id,
    validate_stop,
    validate_url,
)
from recstop.worker.model.vocabulary import Outcome
from recstop.worker.policy.backoff import parse_retry_after, retry_delay
from recstop.worker.state.keys import TASK_NAME

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=200, **_COMMON)
settings.register_profile("chaos", max_examples=5_000, **_COMMON)
#: Applied per test, so loading it does not change other modules' hypothesis settings.
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

GOOD = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"
AUTH_ID = "MA_TESTACCT01"

# --- strategies -------------------------------------------------------------------------------------

#: Any character JSON can carry, lone surrogates included ("\ud800" is valid JSON).
any_char = st.characters(exclude_categories=())
any_text = st.text(any_char, max_size=40)
#: Long strings cheaply: one character repeated up to 100,000 times.
huge_text = st.builds(lambda ch, n: ch * n, any_char, st.integers(0, 100_000))
offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-(24 * 60 - 1), 24 * 60 - 1)
)
#: Values kombu's JSON decoder can produce: plain JSON plus its tagged datetime/decimal/uuid/bytes.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**400), 10**400)
    | st.floats()
    | any_text
    | huge_text
)
kombu_scalars = (
    st.datetimes(timezones=st.none() | offsets) | st.decimals() | st.uuids() | st.binary(max_size=20)
)
json_values = st.recursive(
    json_scalars | kombu_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def _mutate(text: str, position: int, insert: str) -> str:
    position %= len(text) + 1
    return text[:position] + insert + text[position:]


call_uuids = (
    st.uuids().map(str)
    | st.uuids().map(lambda u: str(u).upper())
    | st.builds(
        _mutate,
        st.just(GOOD),
        st.integers(0, 40),
        st.sampled_from(["/", "..", "?x", "#", "\r\n", "\x00", "é"]),
    )
    | any_text
    | json_values
)
hosts = st.sampled_from(
    ["h", "api.example.com", "[::1]", "[::1", "[v1.x]", "a\uff03b", "例え.jp", "h:99999", "", "user@h", "h h"]
)
urls = (
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https", "HTTP", "ftp", "javascript", "", "file"]),
        hosts,
        any_text,
    )
    | st.builds(lambda n: "https://h/" + "a" * n, st.integers(2000, 2100))
    | any_text
    | json_values
)
iso_offsets = st.sampled_from(["Z", "+00:00", "+05:30", "-23:59", "+14:00", "", "+24:00", "z", "UTC"])
instants = (
    st.builds(
        lambda moment, offset: moment.isoformat() + offset,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),  # noqa: DTZ001
        iso_offsets,
    )
    | st.datetimes(timezones=st.none() | offsets)
    | any_text
    | json_values
)
auth_ids = st.from_regex(r"(?:MA|SA)_[A-Za-z0-9]{0,45}", fullmatch=True) | any_text | json_values
request_ids = st.from_regex(r"[A-Za-z0-9._:@/+=-]{0,130}", fullmatch=True) | any_text | json_values
task_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "call_uuid": call_uuids,
        "url": st.none() | urls,
        "auth_id": st.none() | auth_ids,
        "request_id": st.none() | request_ids,
        "not_after": st.none() | instants,
        "surprise": json_values,
    },
)
valid_requests = st.builds(
    StopRequest,
    call_uuid=st.uuids().map(str),
    url=st.none() | st.from_regex(r"https?://[a-z]{1,12}\.example/[A-Za-z0-9_./-]{0,40}", fullmatch=True),
    auth_id=st.none() | st.from_regex(r"(?:MA|SA)_[A-Za-z0-9]{4,40}", fullmatch=True),
    request_id=st.none() | st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,128}", fullmatch=True),
    not_after=st.none() | st.datetimes(timezones=st.just(UTC)),
)

# --- validation -------------------------------------------------------------------------------------


def _typed(call, *args, **kwargs):
    """Call and return the result, or None when it raised InvalidStopRequest (the only error allowed)."""
    try:
        return call(*args, **kwargs)
    except InvalidStopRequest as exc:
        error = exc
    assert error.field
    assert str(error).startswith(error.field)
    return None


@PROFILE
@given(call_uuid=call_uuids, url=urls, auth_id=auth_ids, request_id=request_ids, not_after=instants)
def test_validators_raise_only_invalid_stop_request(call_uuid, url, auth_id, request_id, not_after):
    """Every validator either returns a value of its contract or raises InvalidStopRequest."""
    checked = _typed(validate_call_uuid, call_uuid)
    assert checked is None or (isinstance(checked, str) and len(checked) == 36)
    checked_url = _typed(validate_url, url)
    assert checked_url is None or (isinstance(checked_url, str) and len(checked_url) <= 2048)
    assert _typed(validate_auth_id, auth_id) in (None, auth_id)
    assert _typed(validate_request_id, request_id) in (None, request_id)
    moment = _typed(parse_instant, "not_after", not_after)
    assert moment is None or moment.tzinfo is UTC


@PROFILE
@given(kwargs=task_kwargs, args=st.sampled_from([(), [], None]) | json_values)
def test_decode_task_message_raises_only_invalid_stop_request(kwargs, args):
    """Whatever arrives as args/kwargs, decoding yields a StopRequest or InvalidStopRequest, nothing else."""
    request = _typed(decode_task_message, args, kwargs)
    if request is not None:
        assert set(kwargs) <= {"call_uuid", "url", "auth_id", "request_id", "not_after"}
        assert request.call_uuid == kwargs["call_uuid"]
        assert decode_task_message([], request.to_kwargs()) == request


@PROFILE
@given(args=json_values, kwargs=json_values)
def test_decode_task_message_on_any_json(args, kwargs):
    """Arbitrary JSON-like args and kwargs never escape as another exception type."""
    _typed(decode_task_message, args, kwargs)


@PROFILE
@given(request=valid_requests)
def test_valid_requests_round_trip_through_the_message(request):
    """decode(kombu JSON(encode(request))) == request: the wire format loses nothing."""
    wire = kombu_loads(kombu_dumps([[], request.to_kwargs(), {}]))
    assert decode_task_message(wire[0], wire[1]) == request
    assert validate_stop(**request.to_kwargs()) == request


def _offline_producer() -> Producer:
    env = {
        "RECSTOP_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "VOBIZ_AUTH_ID": AUTH_ID,
        "VOBIZ_AUTH_TOKEN": "tok-property",
    }
    client = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2, retry=None
    )
    return Producer(Settings.from_env(env), client)


OFFLINE = _offline_producer()
delays = (
    st.none()
    | st.floats()
    | st.integers(-(10**20), 10**20)
    | st.timedeltas()
    | st.booleans()
    | any_text
    | st.decimals(allow_nan=False, allow_infinity=False)
)


@PROFILE
@given(
    call_uuid=call_uuids,
    url=st.none() | urls,
    auth_id=st.none() | auth_ids,
    request_id=st.none() | request_ids,
    not_after=st.none() | instants,
    delay=delays,
    at=st.none() | instants,
)
def test_producer_checks_arguments_with_typed_errors(
    call_uuid, url, auth_id, request_id, not_after, delay, at
):
    """stop_recording raises InvalidStopRequest for bad input; a valid stop reaches the (dead) broker."""
    try:
        OFFLINE.stop_recording(
            call_uuid, url, auth_id=auth_id, delay=delay, at=at, request_id=request_id, not_after=not_after
        )
    except InvalidStopRequest:
        return
    except BrokerUnavailableError:
        # Only a stop that passed every check is sent to Redis: this one must be valid.
        request = validate_stop(call_uuid, url, auth_id, request_id, not_after)
        assert request.call_uuid == call_uuid
        return
    raise AssertionError("an unreachable broker must not report success")


@PROFILE
@given(
    request=valid_requests,
    delay=st.none() | st.floats(0, 30 * 86400) | st.timedeltas(timedelta(0), timedelta(days=30)),
    # A valid deadline lies after the stop is due (a delay is at most 30 days).
    not_after=st.none() | st.datetimes(min_value=datetime(2100, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
)
def test_valid_stops_reach_the_broker(request, delay, not_after):
    """A valid stop passes every check and fails only on the unreachable broker, with a typed error."""
    assume(request.auth_id in (None, AUTH_ID))
    try:
        OFFLINE.stop_recording(
            request.call_uuid,
            request.url,
            auth_id=request.auth_id,
            delay=delay,
            request_id=request.request_id,
            not_after=not_after,
        )
    except BrokerUnavailableError as exc:
        error = exc
    else:
        raise AssertionError("an unreachable broker must not report success")
    assert "could not store" in str(error)


# --- the consumer's check of raw broker messages ----------------------------------------------------

celery_app = Celery("properties", set_as_current=False)
celery_app.conf.update(accept_content=["json"], task_serializer="json")


@celery_app.task(name=TASK_NAME, bind=True, shared=False)
def _stop(_task, *_args, **_kwargs):
    return None


ACCEPTED = frozenset({TASK_NAME})
content_types = (
    st.sampled_from(
        [
            ACCEPTED_CONTENT_TYPE,
            ACCEPTED_CONTENT_TYPE,
            "application/x-python-serialize",
            "application/x-yaml",
            "application/x-msgpack",
            "application/data",
            "application/text",
            "text/plain",
            "Application/JSON",
            None,
        ]
    )
    | any_text
)
iso_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(  # noqa: DTZ001
    datetime.isoformat
) | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
header_values = json_values | st.sampled_from([TASK_NAME, "celery.map", "x"]) | st.uuids().map(str)
headers = st.fixed_dictionaries(
    {},
    optional={
        "task": st.just(TASK_NAME) | header_values,
        "id": st.uuids().map(str) | header_values,
        "timelimit": st.none() | st.just([None, None]) | st.lists(json_scalars, max_size=3) | json_values,
        "eta": st.none() | json_values | iso_times,
        "expires": st.none() | json_values | iso_times,
        "countdown": st.none() | json_values,
        "retries": json_values,
        "argsrepr": any_text | huge_text,
        "root_id": json_values,
    },
)
bodies = (
    st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v, default=str).encode("utf-8", "surrogatepass"))
    | st.builds(
        lambda args, kwargs, embed: json.dumps([args, kwargs, embed], default=str).encode(
            "utf-8", "surrogatepass"
        ),
        st.lists(json_scalars, max_size=2) | json_values,
        task_kwargs | st.dictionaries(any_text, json_scalars, max_size=3) | st.just({"self": 1}),
        st.none() | st.just({"callbacks": None}) | json_values,
    )
)


def _message(body: bytes, content_type: object, message_headers: object) -> Message:
    message = Message(
        body=body,
        delivery_tag="t",
        content_type=content_type,
        content_encoding="utf-8",
        headers=message_headers,
        properties={"delivery_info": {}},
    )
    message.accept = {ACCEPTED_CONTENT_TYPE}
    return message


@PROFILE
@given(body=bodies, content_type=content_types, message_headers=headers)
def test_inspect_message_refuses_or_lets_celery_run_it(body, content_type, message_headers):
    """A message is refused with a known reason, or its timing is read and Celery builds its request."""
    message = _message(body, content_type, message_headers)
    poison = inspect_message(message, ACCEPTED)
    if poison is not None:
        assert poison.reason in RAW_REASONS
        assert poison.detail
        if content_type != ACCEPTED_CONTENT_TYPE:
            assert poison.reason == CONTENT_TYPE_REFUSED
            assert message._decoded_cache is None  # refused without being decoded at all
        return
    try:
        timing = read_timing(message.headers)
    except TimingError:
        return  # the consumer dead-letters it: invalid_message, with the error's text
    strip(message.headers, timing)  # what the consumer hands Celery when the stop runs now
    request = Request(message, app=celery_app, task=_stop, hostname="h")
    hard, soft = request.time_limits  # what execute_using_pool unpacks
    assert hard is None or hard >= 0
    assert soft is None or soft >= 0
    assert request.id == message_headers["id"]
    assert isinstance(request.args, list)
    assert isinstance(request.kwargs, dict)
    assert "self" not in request.kwargs
    assert request.eta is None
    assert request.expires is None


@PROFILE
@given(kwargs=task_kwargs)
def test_well_formed_messages_are_never_refused(kwargs):
    """A protocol 2 JSON message of the stop task passes, whatever its kwargs (the task judges them)."""
    assume("self" not in kwargs)
    body = kombu_dumps([[], kwargs, {"callbacks": None}]).encode()
    message = _message(body, ACCEPTED_CONTENT_TYPE, {"task": TASK_NAME, "id": str(uuid.uuid4())})
    assert inspect_message(message, ACCEPTED) is None


# --- the response classifier ------------------------------------------------------------------------

retry_after_values = (
    st.integers(-5, 10**6).map(str)
    | st.from_regex(r"[0-9]{1,30}", fullmatch=True)
    | st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=8)
    | st.integers(0, 5000).map(lambda n: "9" * n)
    | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(  # noqa: DTZ001
        lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")
    )
    | any_text
)
response_headers = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "RETRY-AFTER", "Content-Type"]) | any_text,
    retry_after_values,
    max_size=3,
)
error_shapes = st.one_of(
    st.builds(lambda text: {"api_id": "x", "error": text}, any_text | json_values),
    st.builds(
        lambda code, message, details: {
            "status": "error",
            "error": {"code": code, "message": message, "details": details},
        },
        st.sampled_from(["RECORDING_NOT_FOUND", "RATE_LIMITED", "recording_not_found"]) | json_values,
        st.sampled_from(["No active recording", "Recording not found", "Forbidden"]) | json_values,
        st.fixed_dictionaries({}, optional={"retryAfter": json_values | retry_after_values}) | json_values,
    ),
    st.builds(lambda message: {"message": message}, json_values),
)
response_bodies = (
    st.none()
    | st.binary(max_size=200)
    | any_text
    | json_values.map(lambda v: json.dumps(v, default=str))
    | error_shapes.map(lambda v: json.dumps(v, default=str))
    | error_shapes.map(lambda v: json.dumps(v, default=str).encode("utf-8", "surrogatepass"))
    | st.integers(1, 100_000).map(lambda n: "[" * n)
)
statuses = st.integers(100, 599) | st.integers(-(10**6), 10**6)
NOW = datetime(2026, 11, 24, tzinfo=UTC)


@PROFILE
@given(status=statuses, response_headers=response_headers, body=response_bodies)
def test_classify_is_total_and_bounded(status, response_headers, body):
    """Every response gets exactly one verdict; texts are bounded; Retry-After is finite and >= 0."""
    verdict = classify(status, response_headers, body, now=NOW)
    assert isinstance(verdict, Classification)
    assert verdict.outcome in set(Outcome)
    assert verdict.succeeded == (verdict.outcome in {Outcome.STOPPED, Outcome.ALREADY_STOPPED})
    if 200 <= status < 300:
        assert verdict.outcome is Outcome.STOPPED
    elif status >= 500 or status in {408, 425, 429}:
        assert verdict.outcome is Outcome.RETRY
    elif status == 404:
        assert verdict.outcome is Outcome.ALREADY_STOPPED
    else:
        assert verdict.outcome in {Outcome.DEAD, Outcome.ALREADY_STOPPED}
    for text in (verdict.message, verdict.code):
        assert text is None or len(text) <= MAX_MESSAGE + 3
    if verdict.retry_after_s is not None:
        assert verdict.outcome is Outcome.RETRY
        assert math.isfinite(verdict.retry_after_s)
        assert verdict.retry_after_s >= 0
        delay = retry_delay(
            1, base_s=1, cap_s=30, jitter="full", retry_after_s=verdict.retry_after_s, retry_after_cap_s=600
        )
        assert 0 <= delay <= 600


@PROFILE
@given(value=retry_after_values)
def test_retry_after_is_none_or_finite_and_capped(value):
    """parse_retry_after never raises; what it returns is finite, >= 0 and at most its cap."""
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= 10**7)


@PROFILE
@given(body=response_bodies)
def test_parse_error_body_never_raises(body):
    """Any body parses into an ErrorBody with bounded text and a sane retryAfter."""
    error = parse_error_body(body)
    assert error.message is None or len(error.message) <= MAX_MESSAGE + 3
    assert error.retry_after_s is None or (math.isfinite(error.retry_after_s) and error.retry_after_s >= 0)


@PROFILE
@given(
    status=st.integers(400, 499).filter(lambda s: s not in {404, 408, 425, 429}),
    shape=st.sampled_from(["v1", "v2-code", "v2-message"]),
    decoration=any_text,
)
def test_nothing_to_stop_in_either_shape_is_already_stopped(status, shape, decoration):
    """A 4xx that says "no active recording" (either body shape) means the stop is already done."""
    body = {
        "v1": {"api_id": "x", "error": f"No active recording {decoration}"},
        "v2-code": {"status": "error", "error": {"code": "NO_ACTIVE_RECORDING", "message": decoration}},
        "v2-message": {"status": "error", "error": {"message": f"recording not found {decoration}"}},
    }[shape]
    assert classify(status, {}, json.dumps(body), now=NOW).outcome is Outcome.ALREADY_STOPPED


@PROFILE
@given(seconds=st.integers(0, 10**6), name=st.sampled_from(["Retry-After", "retry-after", "RETRY-AFTER"]))
def test_retry_after_header_is_honoured_in_any_case(seconds, name):
    """A 429's Retry-After of N seconds, under any header-name case, is N."""
    assert classify(429, {name: str(seconds)}, None, now=NOW).retry_after_s == float(seconds)


def test_kombu_json_types_reach_the_validator_as_objects():
    """Kombu's tagged JSON yields UUID/Decimal objects; the validator refuses them with a typed error."""
    wire = kombu_loads(
        kombu_dumps(
            {
                "call_uuid": uuid.UUID(GOOD),
                "not_after": datetime(2030, 1, 1, tzinfo=UTC),
                "request_id": Decimal("NaN"),
            }
        )
    )
    assert isinstance(wire["call_uuid"], uuid.UUID)
    assert _typed(decode_task_message, [], wire) is None
