"""A recording's life in the sandbox: Start Recording, its end, finalization, Recordings API, callbacks.

Time is the sandbox's own: these servers run on a frozen clock that only ``advance_clock`` moves, so a
time limit passes or a recording finalizes exactly when a test says so, without sleeping.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import recstop.sandbox.__main__ as sandbox_main
from recstop.sandbox import SandboxClient, SandboxError, SandboxServer

AUTH_ID = "MA_RECORDS01"
TOKEN = "tok-records-5e6f-secret"
OTHER_ID = "MA_OTHERS02"
OTHER_TOKEN = "tok-others-7a8b-secret"
#: The frozen clock: 2026-05-07 09:45:35.79276 in India, Vobiz's sample ``add_time``.
EPOCH_S = 1_778_127_335.79276
START_MS = 1_778_127_335_792
ADD_TIME = "2026-05-07 09:45:35.79276+05:30"
DELAY_S = 0.5  # the default finalization delay
OBJECT_KEYS = {
    "recording_id",
    "recording_url",
    "call_uuid",
    "conference_name",
    "recording_type",
    "recording_format",
    "add_time",
    "recording_start_ms",
    "recording_end_ms",
    "recording_duration_ms",
    "rounded_recording_duration",
    "from_number",
    "to_number",
    "resource_uri",
    "recording_storage_duration",
    "recording_storage_rate",
    "monthly_recording_storage_amount",
}


@pytest.fixture
def server():
    accounts = {AUTH_ID: TOKEN, OTHER_ID: OTHER_TOKEN}
    with SandboxServer(accounts=accounts, clock=lambda: EPOCH_S) as running:
        yield running


@pytest.fixture
def client(server):
    with SandboxClient(server.base_url) as control:
        yield control


@pytest.fixture
def call_uuid(client):
    return client.create_call(AUTH_ID)


def api(server, method, path, *, auth=(AUTH_ID, TOKEN), **kwargs):
    """One request to the imitated API, ``path`` after ``/api/v1/Account/{auth_id}/``."""
    headers = {"X-Auth-ID": auth[0], "X-Auth-Token": auth[1]}
    url = f"{server.base_url}/api/v1/Account/{auth[0]}/{path}"
    return requests.request(method, url, headers=headers, timeout=5, **kwargs)


def start(server, call_uuid, **fields):
    response = api(server, "POST", f"Call/{call_uuid}/Record/", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def stop(server, call_uuid, url=None):
    return api(server, "DELETE", f"Call/{call_uuid}/Record/", json=None if url is None else {"URL": url})


def shown(server, recording_id):
    response = api(server, "GET", f"Recording/{recording_id}/")
    assert response.status_code == 200, response.text
    return response.json()


def listed(server, **params):
    response = api(server, "GET", "Recording/", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def raw_get(server, path):
    """GET ``path`` byte for byte, with the right credentials; return the status."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path, headers={"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN})
        return connection.getresponse().status
    finally:
        connection.close()


def wait_for(predicate, timeout_s=5.0, what="the condition"):
    """Poll ``predicate`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)  # polling: the condition, not the sleep, decides
    return found


class Receiver:
    """A callback endpoint on loopback: records each request; answers ``status`` once ``release`` is set."""

    def __init__(self, status=200):
        self.status = status
        self.received = queue.Queue()
        self.release = threading.Event()
        self.release.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                outer.received.put((self.command, self.path, self.headers.get("Content-Type"), body))
                outer.release.wait(10)
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _any  # noqa: N815

            def log_message(self, *_):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/recording-done?src=sandbox"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def next(self, timeout_s=5.0):
        return self.received.get(timeout=timeout_s)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


# -- Start Recording ----------------------------------------------------------------------------


def test_start_recording_answers_its_ids_and_the_recording_runs(server, client, call_uuid):
    """POST .../Record/ answers 200 {api_id, message, recording_id, url}; the call records that URL."""
    started = start(server, call_uuid)
    assert set(started) == {"api_id", "message", "recording_id", "url"}
    assert uuid.UUID(started["api_id"]).version == 4
    assert started["url"].endswith(f"/{started['recording_id']}.mp3")
    assert client.call(call_uuid)["recordings"] == [started["url"]]
    (truth,) = client.recordings(call_uuid)
    assert (truth["time_limit_s"], truth["file_format"], truth["callback_method"]) == (60, "mp3", "POST")
    assert (truth["start_ms"], truth["active"], truth["end_ms"]) == (START_MS, True, None)


def test_start_recording_reads_a_form_body(server, client, call_uuid, receiver):
    """A form-encoded body is read like JSON: time_limit, file_format, callback_url, callback_method."""
    form = {"time_limit": "30", "file_format": "wav", "callback_url": receiver.url, "callback_method": "GET"}
    response = api(server, "POST", f"Call/{call_uuid}/Record/", data=form)
    assert response.status_code == 200, response.text
    assert response.json()["url"].endswith(".wav")
    (truth,) = client.recordings(call_uuid)
    assert (truth["time_limit_s"], truth["file_format"]) == (30, "wav")
    assert (truth["callback_url"], truth["callback_method"]) == (receiver.url, "GET")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_limit": 0}, "time_limit"),
        ({"time_limit": 28_801}, "time_limit"),
        ({"time_limit": 1.5}, "time_limit"),
        ({"time_limit": True}, "time_limit"),
        ({"time_limit": "ten"}, "time_limit"),
        ({"file_format": "ogg"}, "file_format"),
        ({"callback_url": "ftp://files.example.test/x"}, "callback_url"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"callback_method": "PUT"}, "callback_method"),
        (b'{"time_limit": ', None),
        (b"[1, 2]", None),
    ],
)
def test_start_recording_refuses_bad_parameters_and_starts_nothing(server, client, call_uuid, body, field):
    """A bad parameter or body is a 400 INVALID_REQUEST naming the field; no recording starts."""
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    response = api(server, "POST", f"Call/{call_uuid}/Record/", **kwargs)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"] == ({} if field is None else {"field": field})
    assert client.recordings(call_uuid) == []


def test_start_recording_on_a_call_that_is_not_live_is_404(server, client, call_uuid):
    """Unknown calls, hung-up calls and another account's calls answer 404 v1 "Call not found"."""
    theirs = client.create_call(OTHER_ID)
    client.hang_up(call_uuid)
    for target in (str(uuid.uuid4()), call_uuid, theirs):
        response = api(server, "POST", f"Call/{target}/Record/", json={})
        assert response.status_code == 404
        assert set(response.json()) == {"api_id", "error"}
        assert response.json()["error"] == "Call not found"
    assert client.recordings() == []


def test_start_recording_keeps_the_routes_auth_rules(server, client, call_uuid):
    """Wrong casing or slash is 401, a wrong token 401, an inactive account 403; nothing starts."""
    headers = {"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN}
    for path in (f"Call/{call_uuid}/record/", f"call/{call_uuid}/Record/", f"Call/{call_uuid}/Record"):
        url = f"{server.base_url}/api/v1/Account/{AUTH_ID}/{path}"
        assert requests.post(url, headers=headers, json={}, timeout=5).status_code == 401
    assert (
        api(server, "POST", f"Call/{call_uuid}/Record/", auth=(AUTH_ID, "nope"), json={}).status_code == 401
    )
    client.update_account(AUTH_ID, active=False)
    assert api(server, "POST", f"Call/{call_uuid}/Record/", json={}).status_code == 403
    assert client.recordings() == []


def test_auto_calls_start_recording_on_an_unknown_call(server, client):
    """With auto_calls, Start Recording on an unknown call makes it live with just that recording."""
    client.configure(auto_calls=True)
    new_call = str(uuid.uuid4())
    started = start(server, new_call)
    assert client.call(new_call)["recordings"] == [started["url"]]


def test_client_starts_recordings_through_the_api_and_the_control_api(client, call_uuid):
    """``api_start_recording`` (JSON or form) and ``start_recording`` (control) share one model."""
    by_api = client.api_start_recording(AUTH_ID, TOKEN, call_uuid, time_limit_s=5, file_format="wav")
    by_form = client.api_start_recording(AUTH_ID, TOKEN, call_uuid, time_limit_s=7, form=True)
    by_control = client.start_recording(call_uuid, time_limit_s=9)
    truths = {r["url"]: r["time_limit_s"] for r in client.recordings(call_uuid)}
    assert truths == {by_api["url"]: 5, by_form["url"]: 7, by_control: 9}
    with pytest.raises(SandboxError) as raised:
        client.api_start_recording(AUTH_ID, TOKEN, call_uuid, time_limit_s=0)
    assert raised.value.status == 400
    assert TOKEN not in raised.value.reason


# -- how recordings end and finalize ------------------------------------------------------------


def test_a_stopped_recording_shows_its_end_only_after_the_finalization_delay(server, client, call_uuid):
    """After a stop, recording_end_ms and the durations stay null until the delay has passed."""
    kept, ended = start(server, call_uuid), start(server, call_uuid)
    client.advance_clock(7.88)
    assert stop(server, call_uuid, ended["url"]).status_code == 204
    assert client.call(call_uuid)["recordings"] == [kept["url"]]
    assert shown(server, ended["recording_id"])["recording_end_ms"] is None
    client.advance_clock(DELAY_S - 0.001)
    assert shown(server, ended["recording_id"])["recording_end_ms"] is None
    client.advance_clock(0.001)
    finished = shown(server, ended["recording_id"])
    assert finished["recording_start_ms"] == START_MS
    assert finished["recording_end_ms"] == START_MS + 7880
    assert finished["recording_duration_ms"] == "7880.00000"
    assert finished["rounded_recording_duration"] == 8
    assert shown(server, kept["recording_id"])["recording_end_ms"] is None


def test_stop_all_ends_every_active_recording(server, client, call_uuid):
    """A stop without a body ends all of the call's recordings at the same instant."""
    first, second = start(server, call_uuid), start(server, call_uuid)
    client.advance_clock(3)
    assert stop(server, call_uuid).status_code == 204
    client.advance_clock(DELAY_S)
    ends = {shown(server, r["recording_id"])["recording_end_ms"] for r in (first, second)}
    assert ends == {START_MS + 3000}


def test_a_recording_ends_at_its_time_limit(server, client, call_uuid):
    """At time_limit seconds after its start a recording stops by itself; a stop then finds nothing."""
    limited = start(server, call_uuid, time_limit=30)
    client.advance_clock(29.999)
    assert client.call(call_uuid)["recordings"] == [limited["url"]]
    client.advance_clock(0.001)
    assert client.call(call_uuid)["recordings"] == []
    assert stop(server, call_uuid, limited["url"]).status_code == 404
    assert shown(server, limited["recording_id"])["recording_end_ms"] is None
    client.advance_clock(DELAY_S)
    assert shown(server, limited["recording_id"])["recording_end_ms"] == START_MS + 30_000


def test_hanging_up_ends_the_recordings_and_they_stay_listed(server, client, call_uuid):
    """A hang-up ends every recording; later stops and starts get 404, the list still shows them."""
    first, second = start(server, call_uuid), start(server, call_uuid, time_limit=2)
    client.advance_clock(5)
    client.hang_up(call_uuid)
    assert stop(server, call_uuid).status_code == 404
    assert api(server, "POST", f"Call/{call_uuid}/Record/", json={}).status_code == 404
    client.advance_clock(DELAY_S)
    page = listed(server, call_uuid=call_uuid)
    ends = {o["recording_id"]: o["recording_end_ms"] for o in page["objects"]}
    assert ends == {first["recording_id"]: START_MS + 5000, second["recording_id"]: START_MS + 2000}


def test_the_finalization_delay_is_a_setting_for_recordings_ending_after_it(server, client, call_uuid):
    """finalize_delay_s set at run time applies from then on: 0 is at once, a longer one waits."""
    client.set_finalize_delay(0)
    assert client.config()["finalize_delay_s"] == 0
    at_once = start(server, call_uuid)
    stop(server, call_uuid, at_once["url"])
    assert shown(server, at_once["recording_id"])["recording_end_ms"] == START_MS
    client.set_finalize_delay(10)
    later = start(server, call_uuid)
    stop(server, call_uuid, later["url"])
    assert shown(server, at_once["recording_id"])["recording_end_ms"] == START_MS  # not taken back
    client.advance_clock(9.999)
    assert shown(server, later["recording_id"])["recording_end_ms"] is None
    client.advance_clock(0.001)
    assert shown(server, later["recording_id"])["recording_end_ms"] is not None
    for bad in (-1, 3601, "soon"):
        with pytest.raises(SandboxError) as raised:
            client.set_finalize_delay(bad)
        assert raised.value.status == 400
    assert client.config()["finalize_delay_s"] == 10


def test_the_finalization_delay_is_a_server_argument_and_a_command_line_flag(monkeypatch):
    """``SandboxServer(finalize_delay_s=0)`` finalizes at once; ``--finalize-delay`` reaches ``serve``."""
    with (
        SandboxServer(accounts={AUTH_ID: TOKEN}, finalize_delay_s=0) as running,
        SandboxClient(running.base_url) as control,
    ):
        call = control.create_call(AUTH_ID)
        started = start(running, call)
        stop(running, call)
        assert shown(running, started["recording_id"])["recording_end_ms"] is not None
    seen = []
    monkeypatch.setattr(sandbox_main, "serve", lambda *_, **kwargs: seen.append(kwargs["finalize_delay_s"]))
    sandbox_main.main(["--finalize-delay", "2.5"])
    sandbox_main.main([])
    assert seen == [2.5, DELAY_S]
    with pytest.raises(SystemExit):
        sandbox_main.main(["--finalize-delay", "-1"])


def test_the_sandbox_clock_only_moves_forward(client):
    """advance_clock adds up; zero, negative or non-numeric advances are refused."""
    assert client.clock() == {"now_ms": START_MS, "offset_s": 0.0}
    assert client.advance_clock(1.5) == START_MS + 1500
    assert client.advance_clock(0.25) == START_MS + 1750
    for bad in (0, -1, "1"):
        with pytest.raises(SandboxError) as raised:
            client.advance_clock(bad)
        assert raised.value.status == 400
    assert client.clock() == {"now_ms": START_MS + 1750, "offset_s": 1.75}


# -- the Recordings API -------------------------------------------------------------------------


def test_a_listed_recording_has_the_current_shape(server, client):
    """Each object has the documented fields: add_time with a space and +05:30, ms, a decimal string."""
    body = {"auth_id": AUTH_ID, "from_number": "14155550100", "to_number": "919900000001"}
    call = requests.post(f"{server.base_url}/_sandbox/calls", json=body, timeout=5).json()["call_uuid"]
    started = start(server, call, file_format="wav")
    client.advance_clock(2.5)
    stop(server, call)
    client.advance_clock(DELAY_S)
    page = listed(server)
    assert set(page) == {"api_id", "meta", "objects"}
    (item,) = page["objects"]
    assert set(item) == OBJECT_KEYS
    assert item == item | {
        "recording_id": started["recording_id"],
        "recording_url": started["url"],
        "call_uuid": call,
        "conference_name": None,
        "recording_type": "call",
        "recording_format": "wav",
        "add_time": ADD_TIME,
        "recording_start_ms": START_MS,
        "recording_end_ms": START_MS + 2500,
        "recording_duration_ms": "2500.00000",
        "rounded_recording_duration": 3,
        "from_number": "14155550100",
        "to_number": "919900000001",
        "resource_uri": f"/v1/Account/{AUTH_ID}/Recording/{started['recording_id']}/",
    }
    one = shown(server, started["recording_id"])
    assert one == {"api_id": one["api_id"], **item}


def test_the_list_pages_oldest_first_with_ready_paths_that_keep_the_filter(server, client):
    """limit/offset pages in start order; meta.next/previous are /v1/... paths keeping call_uuid."""
    mine, other = client.create_call(AUTH_ID), client.create_call(AUTH_ID)
    ids = []
    for _ in range(5):
        ids.append(start(server, mine)["recording_id"])
        start(server, other)
        client.advance_clock(0.001)
    first = listed(server, call_uuid=mine, limit=2)
    assert first["meta"] == {
        "limit": 2,
        "offset": 0,
        "next": f"/v1/Account/{AUTH_ID}/Recording/?limit=2&offset=2&call_uuid={mine}",
        "previous": None,
        "total_count": 5,
    }
    seen, page = [], first
    while True:
        seen += [o["recording_id"] for o in page["objects"]]
        if page["meta"]["next"] is None:
            break
        page = requests.get(
            f"{server.base_url}/api{page['meta']['next']}",
            headers={"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN},
            timeout=5,
        ).json()
    assert seen == ids
    assert page["meta"]["previous"] == f"/v1/Account/{AUTH_ID}/Recording/?limit=2&offset=2&call_uuid={mine}"
    assert listed(server)["meta"]["total_count"] == 10


def test_the_list_limit_defaults_to_20_and_above_100_is_a_400(server, client):
    """No limit gives 20; 100 is allowed; 101, 0, -1, a word or a negative offset answer 400 v1."""
    client.new_call(AUTH_ID, recordings=21)
    default = listed(server)
    assert (len(default["objects"]), default["meta"]["limit"]) == (20, 20)
    assert default["meta"]["next"] == f"/v1/Account/{AUTH_ID}/Recording/?limit=20&offset=20"
    assert len(listed(server, limit=100)["objects"]) == 21
    for params in ({"limit": 101}, {"limit": 0}, {"limit": -1}, {"limit": "ten"}, {"offset": -1}):
        response = api(server, "GET", "Recording/", params=params)
        assert response.status_code == 400
        assert set(response.json()) == {"api_id", "error"}
        assert next(iter(params)) in response.json()["error"]
    beyond = listed(server, offset=40)
    assert beyond["objects"] == []
    assert beyond["meta"]["next"] is None
    assert beyond["meta"]["previous"] == f"/v1/Account/{AUTH_ID}/Recording/?limit=20&offset=20"


def test_the_list_filters_by_recording_type(server, client):
    """recording_type=call lists the call recordings, conference none; an unknown type is a 400."""
    client.new_call(AUTH_ID, recordings=2)
    assert listed(server, recording_type="call")["meta"]["total_count"] == 2
    assert listed(server, recording_type="conference")["meta"]["total_count"] == 0
    assert api(server, "GET", "Recording/", params={"recording_type": "voicemail"}).status_code == 400


def test_an_account_sees_only_its_own_recordings(server, client):
    """Another account's recordings are neither listed nor found (404 v1)."""
    theirs = client.new_call(OTHER_ID, recordings=1)["call_uuid"]
    (truth,) = client.recordings(theirs)
    assert listed(server)["objects"] == []
    assert listed(server, call_uuid=theirs)["meta"]["total_count"] == 0
    response = api(server, "GET", f"Recording/{truth['recording_id']}/")
    assert response.status_code == 404
    assert response.json()["error"] == "Recording not found"
    assert api(server, "GET", f"Recording/{truth['recording_id']}/", auth=(OTHER_ID, OTHER_TOKEN)).ok


def test_the_recordings_api_keeps_the_exact_routes_and_credentials(server, client):
    """Wrong casing, no slash, a query on one recording: 401; bad token 401; inactive 403; POST 405."""
    client.new_call(AUTH_ID, recordings=1)
    (truth,) = client.recordings()
    base = f"/api/v1/Account/{AUTH_ID}"
    for path in (
        f"{base}/recording/",
        f"{base}/Recording",
        f"{base}/Recordings/",
        f"/api/v1/account/{AUTH_ID}/Recording/",
        f"{base}/Recording/{truth['recording_id']}",
        f"{base}/Recording/{truth['recording_id']}/?x=1",
        f"/v1/Account/{AUTH_ID}/Recording/",
    ):
        assert raw_get(server, path) == 401, path
    assert raw_get(server, f"{base}/Recording/?limit=1&offset=0") == 200
    assert api(server, "GET", "Recording/", auth=(AUTH_ID, OTHER_TOKEN)).status_code == 401
    wrong_account = requests.get(
        f"{server.base_url}/api/v1/Account/{OTHER_ID}/Recording/",
        headers={"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN},
        timeout=5,
    )
    assert wrong_account.status_code == 401
    refused = api(server, "POST", "Recording/")
    assert (refused.status_code, refused.headers["Allow"]) == (405, "GET")
    client.update_account(AUTH_ID, active=False)
    assert api(server, "GET", "Recording/").status_code == 403


def test_the_recordings_api_counts_against_the_rate_limit(server, client):
    """List requests take tokens from the account's bucket like stops do."""
    client.configure(rate_limit_rps=0.01, rate_limit_burst=1)
    assert api(server, "GET", "Recording/").status_code == 200
    refused = api(server, "GET", "Recording/")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "100"


def test_the_request_log_tells_recordings_requests_from_stops_and_never_holds_a_token(
    server, client, call_uuid
):
    """Each entry names its endpoint and call; the log filters by endpoint; no token appears."""
    started = start(server, call_uuid)
    stop(server, call_uuid)
    listed(server, call_uuid=call_uuid)
    shown(server, started["recording_id"])
    api(server, "GET", "Recording/", auth=(AUTH_ID, OTHER_TOKEN))
    logged = client.requests()
    assert [(e["method"], e["endpoint"], e["call_uuid"]) for e in logged] == [
        ("POST", "start", call_uuid),
        ("DELETE", "stop", call_uuid),
        ("GET", "recordings", call_uuid),
        ("GET", "recordings", call_uuid),
        ("GET", "recordings", None),
    ]
    assert [e["token_ok"] for e in logged] == [True, True, True, True, False]
    assert [e["seq"] for e in client.requests(endpoint="recordings")] == [3, 4, 5]
    assert [e["method"] for e in client.requests(endpoint="stop")] == ["DELETE"]
    dump = json.dumps(logged) + json.dumps(client.callbacks()) + json.dumps(client.recordings())
    assert TOKEN not in dump
    assert OTHER_TOKEN not in dump


# -- recording callbacks ------------------------------------------------------------------------


def test_the_callback_is_posted_form_encoded_once_the_recording_is_finalized(
    server, client, call_uuid, receiver
):
    """At finalization the callback_url gets a form POST with the recording's details; it is logged."""
    started = start(server, call_uuid, callback_url=receiver.url)
    client.advance_clock(4.2)
    stop(server, call_uuid)
    assert receiver.received.empty()
    client.advance_clock(DELAY_S)
    method, path, content_type, body = receiver.next()
    assert (method, path, content_type) == (
        "POST",
        "/recording-done?src=sandbox",
        "application/x-www-form-urlencoded",
    )
    fields = {k: v[-1] for k, v in parse_qs(body, strict_parsing=True).items()}
    assert fields == fields | {
        "record_url": started["url"],
        "recording_id": started["recording_id"],
        "call_uuid": call_uuid,
        "recording_start_ms": str(START_MS),
        "recording_end_ms": str(START_MS + 4200),
        "recording_duration_ms": "4200.00000",
        "recording_duration": "5",
    }
    (logged,) = wait_for(client.callbacks, what="the callback log")
    assert (logged["status"], logged["error"], logged["params"]) == (200, None, fields)


def test_a_get_callback_carries_the_details_in_the_query_string(server, client, call_uuid, receiver):
    """callback_method GET sends the same fields as query parameters after the URL's own."""
    started = start(server, call_uuid, callback_url=receiver.url, callback_method="GET", time_limit=3)
    client.advance_clock(3 + DELAY_S)
    method, path, _, body = receiver.next()
    query = parse_qs(urlsplit(path).query)
    assert (method, body) == ("GET", "")
    assert query["src"] == ["sandbox"]
    assert query["recording_id"] == [started["recording_id"]]
    assert query["recording_end_ms"] == [str(START_MS + 3000)]


def test_a_hang_up_sends_the_callback_of_each_recording(server, client, call_uuid, receiver):
    """Every recording a hang-up ends calls back; a recording without callback_url sends nothing."""
    ids = {start(server, call_uuid, callback_url=receiver.url)["recording_id"] for _ in range(2)}
    silent = start(server, call_uuid)
    client.hang_up(call_uuid)
    client.advance_clock(DELAY_S)
    got = {parse_qs(receiver.next()[3])["recording_id"][0] for _ in ids}
    assert got == ids
    logged = wait_for(lambda: len(client.callbacks()) == 2 and client.callbacks(), what="two callbacks")
    assert silent["recording_id"] not in {entry["recording_id"] for entry in logged}


def test_failing_callbacks_are_logged_and_the_server_keeps_serving(server, client, call_uuid):
    """A refused connection or a 500 is logged with its error; the API and control API go on."""
    failing = Receiver(status=500)
    try:
        closed = Receiver()
        closed.close()  # nothing listens there any more
        start(server, call_uuid, callback_url=closed.url)
        start(server, call_uuid, callback_url=failing.url)
        stop(server, call_uuid)
        client.advance_clock(DELAY_S)
        logged = wait_for(lambda: len(client.callbacks()) == 2 and client.callbacks(), what="both attempts")
    finally:
        failing.close()
    outcomes = {entry["url"]: (entry["status"], entry["error"]) for entry in logged}
    assert outcomes[failing.url] == (500, "HTTP 500")
    assert outcomes[closed.url][0] is None
    assert "ConnectionRefusedError" in outcomes[closed.url][1]
    assert client.health() is True
    assert listed(server)["meta"]["total_count"] == 2
    client.clear_callbacks()
    assert client.callbacks() == []


def test_a_slow_callback_never_holds_up_the_api(server, client, call_uuid, receiver):
    """While a callback waits for its answer, stops, starts and lists are answered at once."""
    receiver.release.clear()
    start(server, call_uuid, callback_url=receiver.url)
    stop(server, call_uuid)
    client.advance_clock(DELAY_S)
    receiver.next()  # the callback has arrived and is left unanswered
    again = start(server, call_uuid, callback_url=receiver.url)
    assert stop(server, call_uuid, again["url"]).status_code == 204
    assert listed(server)["meta"]["total_count"] == 2
    assert client.callbacks() == []
    receiver.release.set()
    assert wait_for(client.callbacks, what="the callback's answer")[0]["status"] == 200


def test_callbacks_follow_the_real_clock_without_any_advance(receiver):
    """On the real clock a recording's callback arrives by itself once the delay has passed."""
    with (
        SandboxServer(accounts={AUTH_ID: TOKEN}, finalize_delay_s=0.05) as running,
        SandboxClient(running.base_url) as control,
    ):
        call = control.create_call(AUTH_ID)
        started = control.api_start_recording(AUTH_ID, TOKEN, call, callback_url=receiver.url)
        assert control.api_stop_recording(AUTH_ID, TOKEN, call) == 204
        _, _, _, body = receiver.next()
        assert parse_qs(body)["recording_id"] == [started["recording_id"]]
        found = control.api_recording(AUTH_ID, TOKEN, started["recording_id"])
        assert found["recording_end_ms"] >= found["recording_start_ms"]
        assert control.api_recording(AUTH_ID, TOKEN, str(uuid.uuid4())) is None
