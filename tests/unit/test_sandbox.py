"""The Vobiz sandbox behaves like the documented Stop Recording API, over real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from recstop.sandbox import SandboxClient, SandboxError, SandboxServer

AUTH_ID = "MA_SANDBOX01"
TOKEN = "tok-8c1f0e2d-secret"
WRONG_TOKEN = "wrong-token-xyz"
NEW_TOKEN = "tok-rotated"


@pytest.fixture
def server():
    with SandboxServer(accounts={AUTH_ID: TOKEN}) as running:
        yield running


@pytest.fixture
def client(server):
    with SandboxClient(server.base_url) as control:
        yield control


@pytest.fixture
def call_uuid(client):
    return client.create_call(AUTH_ID)


def record_path(call_uuid, auth_id=AUTH_ID):
    return f"/api/v1/Account/{auth_id}/Call/{call_uuid}/Record/"


def stop(server, call_uuid, *, url=None, token=TOKEN, auth_id=AUTH_ID, timeout=5.0):
    headers = {"X-Auth-ID": auth_id, "X-Auth-Token": token}
    body = None if url is None else {"URL": url}
    target = server.base_url + record_path(call_uuid, auth_id)
    return requests.delete(target, headers=headers, json=body, timeout=timeout)


def raw_request(server, method, path, body=b"", headers=None):
    """Send ``path`` byte for byte (no client-side normalisation); return (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        all_headers = {"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN, **(headers or {})}
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_v1(response, status, error):
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"api_id", "error"}
    assert body["error"] == error
    assert uuid.UUID(body["api_id"]).version == 4


def assert_v2(response, status, code):
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "error", "requestId"}
    assert body["status"] == "error"
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["details"], dict)
    assert uuid.UUID(body["requestId"]).version == 4
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/account/{a}/Call/{c}/Record/",
        "/api/v1/Account/{a}/call/{c}/record/",
        "/api/v1/Account/{a}/Call/{c}/Record",
        "/api/v1/Account/{a}/Call/{c}/Record/?x=1",
        "//api/v1/Account/{a}/Call/{c}/Record/",
        "/api/v1/Account/{a}/Call/../Call/{c}/Record/",
        "/api/v1/Account/{a}/Call/{c}%2FRecord/",
        "/api/v1/Account/{a}/Call/{c}/Record/%2E",
        "/nothing/here",
    ],
)
def test_only_the_exact_raw_route_matches_anything_else_is_401(server, client, call_uuid, path):
    """Wrong casing, a missing trailing slash, a query, dot segments or escapes answer 401."""
    client.start_recording(call_uuid)
    status, headers, body = raw_request(server, "DELETE", path.format(a=AUTH_ID, c=call_uuid))
    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "UNAUTHORIZED"
    assert len(client.call(call_uuid)["recordings"]) == 1


def test_wrong_token_is_401_v2_and_the_token_is_never_logged(server, client, call_uuid):
    """A bad token gets 401 UNAUTHORIZED; the log records token_ok=false, never a token."""
    assert_v2(stop(server, call_uuid, token=WRONG_TOKEN), 401, "UNAUTHORIZED")
    assert_v2(stop(server, call_uuid, auth_id="MA_OTHER"), 401, "UNAUTHORIZED")
    response = requests.delete(server.base_url + record_path(call_uuid), timeout=5)
    assert_v2(response, 401, "UNAUTHORIZED")
    assert stop(server, call_uuid).status_code == 404  # right token: no recording to stop
    logged = client.requests()
    assert [entry["token_ok"] for entry in logged] == [False, False, False, True]
    dump = json.dumps(logged) + json.dumps(client.faults())
    assert WRONG_TOKEN not in dump
    assert TOKEN not in dump


def test_inactive_account_is_403_account_inactive(server, client, call_uuid):
    """An account marked inactive authenticates but gets 403 ACCOUNT_INACTIVE."""
    client.start_recording(call_uuid)
    client.update_account(AUTH_ID, active=False)
    assert_v2(stop(server, call_uuid), 403, "ACCOUNT_INACTIVE")
    client.update_account(AUTH_ID, active=True)
    assert stop(server, call_uuid).status_code == 204


def test_changed_token_replaces_the_old_one(server, client, call_uuid):
    """After a token change only the new token authenticates."""
    client.update_account(AUTH_ID, token=NEW_TOKEN)
    assert stop(server, call_uuid).status_code == 401
    assert stop(server, call_uuid, token=NEW_TOKEN).status_code == 404


def test_stop_all_is_204_and_clears_every_recording(server, client, call_uuid):
    """No body stops all active recordings: 204 with an empty body."""
    client.start_recording(call_uuid)
    client.start_recording(call_uuid)
    response = stop(server, call_uuid)
    assert response.status_code == 204
    assert response.content == b""
    assert client.call(call_uuid)["recordings"] == []


def test_stop_one_by_url_removes_only_that_recording(server, client, call_uuid):
    """A ``{"URL"}`` body stops that recording and leaves the others running."""
    first = client.start_recording(call_uuid, "https://media.example.test/a.mp3")
    second = client.start_recording(call_uuid)
    assert stop(server, call_uuid, url=first).status_code == 204
    assert client.call(call_uuid)["recordings"] == [second]


def test_unknown_recording_url_is_404_v1(server, client, call_uuid):
    """A URL that is not an active recording gets 404 v1 "Recording not found"."""
    client.start_recording(call_uuid)
    assert_v1(stop(server, call_uuid, url="https://nope.test/x.mp3"), 404, "Recording not found")
    assert len(client.call(call_uuid)["recordings"]) == 1


def test_unknown_or_hung_up_call_is_404_v1_call_not_found(server, client, call_uuid):
    """Stopping on a call that does not exist (or has ended) gets 404 v1 "Call not found"."""
    assert_v1(stop(server, str(uuid.uuid4())), 404, "Call not found")
    client.hang_up(call_uuid)
    assert client.call(call_uuid) is None
    assert_v1(stop(server, call_uuid), 404, "Call not found")


def test_nothing_to_stop_is_404_by_default_and_204_when_configured(server, client, call_uuid):
    """Stop-all on a call with no active recording follows the nothing_to_stop mode."""
    assert_v1(stop(server, call_uuid), 404, "Recording not found")
    client.configure(nothing_to_stop="204")
    assert stop(server, call_uuid).status_code == 204
    with pytest.raises(SandboxError) as raised:
        client.configure(nothing_to_stop="500")
    assert raised.value.status == 400


def test_malformed_json_is_400_invalid_request(server, client, call_uuid):
    """A body that is not JSON gets 400 v2 INVALID_REQUEST and stops nothing."""
    client.start_recording(call_uuid)
    status, _, body = raw_request(server, "DELETE", record_path(call_uuid), b'{"URL": ')
    assert status == 400
    assert json.loads(body)["error"]["code"] == "INVALID_REQUEST"
    assert len(client.call(call_uuid)["recordings"]) == 1


def test_other_methods_on_the_route_are_405(server, call_uuid):
    """GET/PUT/PATCH on the record route answer 405 METHOD_NOT_ALLOWED; Allow names DELETE and POST."""
    target = server.base_url + record_path(call_uuid)
    auth = {"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN}
    for method in ("GET", "PUT", "PATCH"):
        response = requests.request(method, target, headers=auth, timeout=5)
        assert_v2(response, 405, "METHOD_NOT_ALLOWED")
        assert response.headers["Allow"] == "DELETE, POST"


def test_status_fault_fires_times_then_the_api_answers_normally(server, client, call_uuid):
    """A 503 rule with times=3 answers 503 three times, then requests are served normally."""
    client.start_recording(call_uuid)
    client.set_faults([{"kind": "status", "status": 503, "times": 3}])
    for _ in range(3):
        assert_v2(stop(server, call_uuid), 503, "SERVICE_UNAVAILABLE")
    assert client.faults()["rules"][0]["times"] == 0
    assert stop(server, call_uuid).status_code == 204
    assert [e["fault"] for e in client.requests()] == ["status"] * 3 + [None]


def test_faults_fire_before_auth_and_can_target_one_call(server, client, call_uuid):
    """A rule with call_uuid only hits that call; faults fire even for bad credentials."""
    other = client.create_call(AUTH_ID)
    client.start_recording(other)
    client.set_faults([{"kind": "status", "status": 500, "call_uuid": call_uuid}])
    assert_v2(stop(server, call_uuid, token=WRONG_TOKEN), 500, "INTERNAL_ERROR")
    assert stop(server, other).status_code == 204


def test_rate_limit_with_retry_after_header(server, client, call_uuid):
    """A 429 rule with retry_after sends the Retry-After header and details.retryAfter."""
    rule = {"kind": "status", "status": 429, "retry_after": "2", "retry_after_body": 2}
    client.set_faults([rule])
    response = stop(server, call_uuid)
    error = assert_v2(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["Retry-After"] == "2"
    assert error["details"] == {"retryAfter": 2}


def test_rate_limit_with_only_body_retry_after(server, client, call_uuid):
    """Without retry_after there is no Retry-After header, only details.retryAfter."""
    client.set_faults([{"kind": "status", "status": 429, "retry_after_body": 5}])
    response = stop(server, call_uuid)
    error = assert_v2(response, 429, "RATE_LIMIT_EXCEEDED")
    assert "Retry-After" not in response.headers
    assert error["details"] == {"retryAfter": 5}


def test_status_fault_can_use_the_v1_shape(server, client, call_uuid):
    """A 404 rule answers in the v1 shape with "Recording not found" by default."""
    client.set_faults([{"kind": "status", "status": 404, "shape": "v1", "times": 1}])
    assert_v1(stop(server, call_uuid), 404, "Recording not found")


def test_hang_fault_times_out_the_client_and_stop_is_still_prompt():
    """A hang never answers (client read timeout) and stop() does not wait for it."""
    sandbox = SandboxServer(accounts={AUTH_ID: TOKEN}).start()
    try:
        with SandboxClient(sandbox.base_url) as control:
            control.set_faults([{"kind": "hang", "hang_s": 5}])
            with pytest.raises(requests.exceptions.ReadTimeout):
                stop(sandbox, str(uuid.uuid4()), timeout=0.5)
            assert control.requests()[0]["fault"] == "hang"
            assert control.requests()[0]["status"] is None
    finally:
        started = time.monotonic()
        sandbox.stop()
        assert time.monotonic() - started < 1.0


def test_reset_fault_is_a_connection_error(server, client, call_uuid):
    """A reset closes the socket with RST: the client sees a ConnectionError."""
    client.set_faults([{"kind": "reset", "times": 1}])
    with pytest.raises(requests.exceptions.ConnectionError):
        stop(server, call_uuid)
    assert_v1(stop(server, call_uuid), 404, "Recording not found")
    assert [e["status"] for e in client.requests()] == [None, 404]


def test_global_and_rule_latency_delay_answers(server, client, call_uuid):
    """Global latency_ms delays every API request; a latency rule adds its own delay."""
    client.set_faults([], latency_ms=150)
    started = time.monotonic()
    assert stop(server, call_uuid).status_code == 404
    assert time.monotonic() - started >= 0.15
    client.set_faults([{"kind": "latency", "latency_ms": 200, "times": 1}])
    started = time.monotonic()
    assert stop(server, call_uuid).status_code == 404
    assert time.monotonic() - started >= 0.2
    assert client.requests()[-1]["duration_ms"] >= 200


def test_probability_rolls_are_reproducible_with_a_seed(server, client, call_uuid):
    """The same seed gives the same sequence of fired and skipped faults."""
    patterns = []
    for _ in range(2):
        client.set_faults([{"kind": "status", "status": 502, "probability": 0.5}], seed=7)
        patterns.append([stop(server, call_uuid).status_code for _ in range(16)])
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {502, 404}


def test_auto_calls_create_unknown_calls_with_one_recording(server, client):
    """With auto_calls an unknown call of a valid account is created with one recording."""
    client.configure(auto_calls=True)
    new_call = str(uuid.uuid4())
    assert stop(server, new_call).status_code == 204
    assert client.call(new_call) == {"call_uuid": new_call, "auth_id": AUTH_ID, "recordings": []}
    assert_v1(stop(server, new_call), 404, "Recording not found")
    assert stop(server, str(uuid.uuid4()), token=WRONG_TOKEN).status_code == 401


def test_request_log_fields_and_since_seq(server, client, call_uuid):
    """Each API request is logged with its fields; since_seq and call_uuid filter the log."""
    url = client.start_recording(call_uuid)
    before = time.time()
    stop(server, call_uuid, url=url)
    stop(server, "other-call")
    raw_request(server, "DELETE", record_path(call_uuid), b"not json")
    first, second, third = client.requests()
    assert first["seq"] == 1
    assert before <= first["time"] <= time.time()
    assert first["method"] == "DELETE"
    assert first["path"] == record_path(call_uuid)
    assert first["auth_id_header"] == AUTH_ID
    assert first["token_ok"] is True
    assert first["body"] == {"URL": url}
    assert first["call_uuid"] == call_uuid
    assert first["status"] == 204
    assert first["fault"] is None
    assert first["duration_ms"] >= 0
    assert second["body"] is None
    assert second["call_uuid"] == "other-call"
    assert third["body"] == "not json"
    assert [e["seq"] for e in client.requests(since_seq=1)] == [2, 3]
    assert [e["seq"] for e in client.requests(call_uuid=call_uuid)] == [1, 3]
    client.clear_requests()
    stop(server, call_uuid)
    assert [e["seq"] for e in client.requests()] == [4]


def test_invalid_fault_rules_are_rejected_with_a_reason(client):
    """Bad fault rules get 400 naming the bad field, and the old rules stay."""
    client.set_faults([{"kind": "status", "status": 503, "times": 2}])
    bad = [
        [{"kind": "explode"}],
        [{"kind": "status", "status": 200}],
        [{"kind": "status", "times": -1}],
        [{"kind": "status", "probability": 1.5}],
        [{"kind": "hang", "hang_s": "long"}],
        [{"kind": "status", "retry_after": "1\r\nX-Evil: 1"}],
        [{"kind": "status", "colour": "red"}],
    ]
    for rules in bad:
        with pytest.raises(SandboxError) as raised:
            client.set_faults(rules)
        assert raised.value.status == 400
        assert "rules[0]" in raised.value.reason
    assert client.faults()["rules"][0]["times"] == 2
    client.clear_faults()
    assert client.faults()["rules"] == []


def test_control_api_errors_are_typed(client, call_uuid):
    """Control requests that cannot be served raise SandboxError with the status."""
    assert client.health() is True
    for action, status in [
        (lambda: client.create_call("MA_UNKNOWN"), 400),
        (lambda: client.create_call(AUTH_ID, call_uuid), 409),
        (lambda: client.start_recording("no-such-call"), 404),
        (lambda: client.update_account("MA_UNKNOWN", active=False), 404),
        (lambda: client.hang_up("no-such-call"), 404),
    ]:
        with pytest.raises(SandboxError) as raised:
            action()
        assert raised.value.status == status


def test_unparseable_requests_get_a_json_error_and_the_server_keeps_serving(server, client):
    """A garbage request line gets a v2 JSON 400 on a closed connection; others are unaffected."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(b"NOT A VALID HTTP REQUEST LINE\r\n\r\n")
        answer = connection.makefile("rb").read()
    assert b"400 Bad Request" in answer
    assert b'"code": "INVALID_REQUEST"' in answer
    assert client.health() is True


def test_keep_alive_serves_many_requests_on_one_connection(server, client, call_uuid):
    """HTTP/1.1 keep-alive: several requests and answers share one connection."""
    client.start_recording(call_uuid)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    headers = {"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN}
    statuses = []
    for _ in range(3):
        connection.request("DELETE", record_path(call_uuid), headers=headers)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    assert statuses == [204, 404, 404]


def test_command_line_serves_until_sigterm():
    """``python -m recstop.sandbox`` prints its ready line and exits cleanly on SIGTERM."""
    command = [sys.executable, "-m", "recstop.sandbox", "--port", "0", "--account", "MA_X:tok"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline()
            assert line.startswith("vobiz sandbox listening on http://127.0.0.1:")
            base_url = line.split()[4]
            assert line.strip().endswith(f"(api base {base_url}/api/v1)")
            assert SandboxClient(base_url).health() is True
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0


def test_a_call_is_created_with_its_recordings_in_one_request(server, client):
    """POST /_sandbox/calls with recordings=N answers the call_uuid and N URLs; each stops with 204 once."""
    created = client.new_call(AUTH_ID, recordings=2)
    first, second = created["recordings"]
    assert first != second
    assert client.call(created["call_uuid"])["recordings"] == [first, second]
    assert stop(server, created["call_uuid"], url=first).status_code == 204
    assert client.call(created["call_uuid"])["recordings"] == [second]
    assert stop(server, created["call_uuid"], url=first).status_code == 404
    assert client.new_call(AUTH_ID, recordings=0)["recordings"] == []


@pytest.mark.parametrize("recordings", [-1, 101, 1.5, True, "2"])
def test_a_bad_recordings_count_is_refused_and_creates_no_call(client, recordings):
    """Recordings must be an integer from 0 to 100: anything else is a 400, and no call is left behind."""
    with pytest.raises(SandboxError) as raised:
        client.new_call(AUTH_ID, recordings=recordings, call_uuid="c-refused")
    assert raised.value.status == 400
    assert "recordings must be an integer from 0 to 100" in raised.value.reason
    assert client.call("c-refused") is None


def test_recstop_sandbox_serves_and_its_call_and_show_commands_drive_it():
    """`recstop sandbox` serves; `sandbox call` prints a call and its URLs, `sandbox show` what records."""
    recstop = str(Path(sys.executable).parent / "recstop")
    serve = [recstop, "sandbox", "--port", "0", "--auth-id", "MA_CLI00001", "--auth-token", "tok-cli"]
    with subprocess.Popen(serve, stdout=subprocess.PIPE, text=True) as process:
        try:
            base_url = process.stdout.readline().split()[4]

            def run(*args):
                return subprocess.run(  # noqa: PLW1510 - the exit code is asserted
                    [recstop, "sandbox", *args, "--base", base_url],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )

            created = run("call", "--recordings", "2", "--auth-id", "MA_CLI00001")
            assert created.returncode == 0, created.stderr
            (uuid_line, *url_lines) = created.stdout.splitlines()
            call_uuid = uuid_line.split()[1]
            urls = [line.split()[1] for line in url_lines]
            assert [line.split()[0] for line in url_lines] == ["recording", "recording"]
            assert SandboxClient(base_url).call(call_uuid)["recordings"] == urls
            shown = run("show", call_uuid, "--json")
            assert json.loads(shown.stdout) == {"call_uuid": call_uuid, "recordings": urls}
            unknown = run("call", "--auth-id", "MA_NOBODY01")
            assert (unknown.returncode, unknown.stderr) == (
                2,
                f"recstop: the sandbox at {base_url} refused: no account MA_NOBODY01\n",
            )
            assert run("show", "no-such-call").returncode == 1
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0
