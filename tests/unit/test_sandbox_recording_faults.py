"""Fault rules aim at one endpoint (stop, start, recordings, any), and the Recordings API can answer badly."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import requests

from recstop.sandbox import SandboxClient, SandboxError, SandboxServer

AUTH_ID = "MA_FAULTS01"
TOKEN = "tok-faults-3c4d-secret"
EPOCH_S = 1_778_127_335.79276
START_MS = 1_778_127_335_792
OLD_KEYS = {
    "recording_id",
    "call_id",
    "recording_type",
    "url",
    "download_path",
    "duration",
    "created_at",
    "file_size",
    "format",
}


@pytest.fixture
def server():
    with SandboxServer(accounts={AUTH_ID: TOKEN}, clock=lambda: EPOCH_S, finalize_delay_s=0) as running:
        yield running


@pytest.fixture
def client(server):
    with SandboxClient(server.base_url) as control:
        yield control


@pytest.fixture
def finished(client):
    """A call with one recording that lasted 7.88 s and is finalized: ``(call_uuid, recording_id)``."""
    call_uuid = client.create_call(AUTH_ID)
    recording_id = client.add_recording(call_uuid)["recording_id"]
    client.advance_clock(7.88)
    client.hang_up(call_uuid)
    return call_uuid, recording_id


def api(server, method, path, **kwargs):
    headers = {"X-Auth-ID": AUTH_ID, "X-Auth-Token": TOKEN}
    url = f"{server.base_url}/api/v1/Account/{AUTH_ID}/{path}"
    return requests.request(method, url, headers=headers, timeout=5, **kwargs)


def list_status(server, **params):
    return api(server, "GET", "Recording/", params=params).status_code


# -- which requests a rule hits -----------------------------------------------------------------


def test_a_rule_without_endpoint_hits_the_stop_as_before_and_spares_the_new_endpoints(
    server, client, finished
):
    """Existing rules (no endpoint) still fail DELETEs and unrouted requests, never starts or lists."""
    call_uuid, recording_id = finished
    client.set_faults([{"kind": "status", "status": 503}])
    assert client.faults()["rules"][0]["endpoint"] == "stop"
    assert api(server, "DELETE", f"Call/{call_uuid}/Record/").status_code == 503
    assert api(server, "GET", "Recordingz/").status_code == 503
    assert list_status(server) == 200
    assert api(server, "GET", f"Recording/{recording_id}/").status_code == 200
    live = client.create_call(AUTH_ID)
    assert api(server, "POST", f"Call/{live}/Record/", json={}).status_code == 200


def test_a_recordings_rule_fails_the_list_and_one_recording_but_not_the_stop(server, client, finished):
    """endpoint=recordings hits both Recordings API routes and leaves stops and starts alone."""
    call_uuid, recording_id = finished
    client.set_faults([{"kind": "status", "status": 502, "endpoint": "recordings"}])
    assert list_status(server) == 502
    assert api(server, "GET", f"Recording/{recording_id}/").status_code == 502
    assert api(server, "DELETE", f"Call/{call_uuid}/Record/").status_code == 404  # hung up: not a fault
    live = client.create_call(AUTH_ID)
    assert api(server, "POST", f"Call/{live}/Record/", json={}).status_code == 200
    assert [e["fault"] for e in client.requests()] == ["status", "status", None, None]


def test_start_and_any_rules_hit_what_they_name(server, client, finished):
    """endpoint=start fails only Start Recording; endpoint=any fails every request."""
    call_uuid, _ = finished
    live = client.create_call(AUTH_ID)
    client.set_faults([{"kind": "status", "status": 500, "endpoint": "start", "times": 1}])
    assert api(server, "POST", f"Call/{live}/Record/", json={}).status_code == 500
    assert api(server, "POST", f"Call/{live}/Record/", json={}).status_code == 200
    client.set_faults([{"kind": "status", "status": 504, "endpoint": "any"}])
    assert api(server, "POST", f"Call/{live}/Record/", json={}).status_code == 504
    assert api(server, "DELETE", f"Call/{call_uuid}/Record/").status_code == 504
    assert list_status(server) == 504


def test_one_rule_makes_the_recordings_api_fail_half_its_answers(server, client, finished):
    """One rule, probability 0.5 on recordings, fails about half the lists (seeded); stops are unharmed."""
    call_uuid, _ = finished
    patterns = []
    for _ in range(2):
        client.set_faults(
            [{"kind": "status", "status": 503, "probability": 0.5, "endpoint": "recordings"}], seed=11
        )
        patterns.append([list_status(server) for _ in range(40)])
    assert patterns[0] == patterns[1]
    counts = Counter(patterns[0])
    assert set(counts) == {200, 503}
    assert 10 <= counts[503] <= 30
    assert {api(server, "DELETE", f"Call/{call_uuid}/Record/").status_code for _ in range(5)} == {404}


def test_recordings_resets_and_call_targeting(server, client, finished):
    """A reset rule on recordings drops the connection; call_uuid aims at one call's look-ups only."""
    call_uuid, recording_id = finished
    client.fail_recordings("reset", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        api(server, "GET", "Recording/")
    assert list_status(server) == 200
    client.clear_faults()
    client.fail_recordings(status=500, call_uuid=call_uuid)
    assert list_status(server, call_uuid=call_uuid) == 500
    assert api(server, "GET", f"Recording/{recording_id}/").status_code == 500
    assert list_status(server, call_uuid="another-call") == 200
    assert list_status(server) == 200


def test_added_rules_go_after_the_current_ones(client):
    """POST /_sandbox/faults appends: the first matching rule still wins; latency and seed stay."""
    client.set_faults([{"kind": "status", "status": 503, "times": 2}], latency_ms=5, seed=3)
    client.add_faults([{"kind": "status", "status": 500, "endpoint": "recordings"}])
    config = client.faults()
    assert [(r["status"], r["endpoint"]) for r in config["rules"]] == [(503, "stop"), (500, "recordings")]
    assert (config["latency_ms"], config["seed"]) == (5, 3)


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"kind": "status", "endpoint": "everything"}, "endpoint"),
        ({"kind": "answer"}, "answer"),
        ({"kind": "answer", "answer": "gibberish"}, "answer"),
        ({"kind": "status", "answer": "html"}, "answer"),
        ({"kind": "answer", "answer": "html", "endpoint": "stop"}, "endpoint"),
        ({"kind": "status", "shape": "xml"}, "shape"),
    ],
)
def test_bad_new_rule_fields_are_refused_with_the_field(client, rule, field):
    """endpoint, answer and shape are validated; a refused rule leaves the faults as they were."""
    for send in (client.set_faults, client.add_faults):
        with pytest.raises(SandboxError) as raised:
            send([rule])
        assert raised.value.status == 400
        assert f"rules[0].{field}" in raised.value.reason
    assert client.faults()["rules"] == []


def test_a_status_rule_can_answer_an_html_page(server, client, finished):
    """shape=html answers the status with a gateway's HTML page instead of JSON."""
    call_uuid, _ = finished
    client.set_faults([{"kind": "status", "status": 502, "shape": "html", "retry_after": "3"}])
    response = api(server, "DELETE", f"Call/{call_uuid}/Record/")
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Retry-After"] == "3"
    assert "<h1>502 Bad Gateway</h1>" in response.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


# -- bad answers of the Recordings API ----------------------------------------------------------


def only_object(response):
    assert response.status_code == 200
    (item,) = response.json()["objects"]
    return item


def test_old_shape(server, client, finished):
    """The old_shape answer is {"recordings": [...]} with call_id, url, duration in seconds, created_at."""
    call_uuid, recording_id = finished
    client.bad_recordings_answer("old_shape")
    body = api(server, "GET", "Recording/").json()
    assert set(body) == {"recordings"}
    (item,) = body["recordings"]
    assert set(item) == OLD_KEYS
    assert (item["recording_id"], item["call_id"], item["recording_type"]) == (
        recording_id,
        call_uuid,
        "call",
    )
    assert (item["duration"], item["format"], item["file_size"]) == (8, "mp3", 7880 * 4)
    assert item["created_at"] == "2026-05-07T04:15:35.792760Z"
    one = api(server, "GET", f"Recording/{recording_id}/").json()
    assert one == item


@pytest.mark.usefixtures("finished")
def test_html_instead_of_json(server, client):
    """The html answer is a 200 with an HTML page that no JSON parser reads."""
    client.bad_recordings_answer("html")
    response = api(server, "GET", "Recording/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<!DOCTYPE html>")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_json(server, client, finished):
    """The truncated answer is a 200 JSON cut in half: a complete HTTP answer whose body does not parse."""
    _, recording_id = finished
    client.bad_recordings_answer("truncated")
    for path in ("Recording/", f"Recording/{recording_id}/"):
        response = api(server, "GET", path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert int(response.headers["Content-Length"]) == len(response.content) > 0
        assert response.text.startswith('{"api_id": "')
        with pytest.raises(json.JSONDecodeError):
            response.json()


@pytest.mark.usefixtures("finished")
def test_objects_without_recording_end_ms(server, client):
    """The no_end_ms answer drops the recording_end_ms key and keeps the rest."""
    client.bad_recordings_answer("no_end_ms")
    item = only_object(api(server, "GET", "Recording/"))
    assert "recording_end_ms" not in item
    assert item["recording_duration_ms"] == "7880.00000"


@pytest.mark.usefixtures("finished")
def test_an_end_before_the_start(server, client):
    """The end_before_start answer shows recording_end_ms a second before recording_start_ms."""
    client.bad_recordings_answer("end_before_start")
    item = only_object(api(server, "GET", "Recording/"))
    assert item["recording_end_ms"] == item["recording_start_ms"] - 1000 == START_MS - 1000


@pytest.mark.usefixtures("finished")
def test_numbers_as_strings_and_strings_as_numbers(server, client):
    """The strings answer makes every number a decimal string; numbers makes recording_duration_ms one."""
    client.bad_recordings_answer("strings", times=1)
    client.bad_recordings_answer("numbers", times=1)
    as_strings = only_object(api(server, "GET", "Recording/"))
    assert as_strings["recording_start_ms"] == f"{START_MS}.00000"
    assert as_strings["recording_end_ms"] == f"{START_MS + 7880}.00000"
    assert as_strings["recording_duration_ms"] == "7880.00000"
    assert as_strings["rounded_recording_duration"] == "8"
    as_numbers = only_object(api(server, "GET", "Recording/"))
    assert as_numbers["recording_duration_ms"] == 7880.0
    assert isinstance(as_numbers["recording_duration_ms"], float)
    normal = only_object(api(server, "GET", "Recording/"))
    assert (normal["recording_start_ms"], normal["recording_duration_ms"]) == (START_MS, "7880.00000")


def test_a_recording_that_never_finalizes(server, client, finished):
    """The never_finalized answer keeps the end and durations null whatever the clock; the truth moves on."""
    call_uuid, recording_id = finished
    client.bad_recordings_answer("never_finalized", call_uuid=call_uuid)
    client.advance_clock(3600)
    item = only_object(api(server, "GET", "Recording/", params={"call_uuid": call_uuid}))
    assert (item["recording_end_ms"], item["recording_duration_ms"], item["rounded_recording_duration"]) == (
        None,
        None,
        None,
    )
    assert api(server, "GET", f"Recording/{recording_id}/").json()["recording_end_ms"] is None
    assert client.recordings(call_uuid)[0]["finalized"] is True


@pytest.mark.usefixtures("finished")
def test_answer_faults_use_their_times_and_are_logged(server, client):
    """An answer rule with times=1 spoils one answer; the log names the fault and the answer."""
    client.bad_recordings_answer("html", times=1)
    assert api(server, "GET", "Recording/").headers["Content-Type"].startswith("text/html")
    assert api(server, "GET", "Recording/").headers["Content-Type"] == "application/json"
    logged = client.requests(endpoint="recordings")
    assert [(e["fault"], e["answer"]) for e in logged] == [("answer", "html"), (None, None)]


@pytest.mark.usefixtures("finished")
def test_answer_faults_leave_error_answers_alone(server, client):
    """A bad-answer rule only changes a 200: a missing recording still gets its 404 JSON."""
    client.bad_recordings_answer("html")
    response = api(server, "GET", "Recording/no-such-recording/")
    assert response.status_code == 404
    assert response.json()["error"] == "Recording not found"
