"""The response classifier: one table decides stopped, already stopped, retry or permanent."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from recstop.worker.api.classify import classify, parse_error_body
from recstop.worker.model.vocabulary import Outcome

V1_NOT_FOUND = json.dumps({"api_id": "a1", "error": "Recording not found"})
V2_RATE = json.dumps(
    {
        "status": "error",
        "error": {"code": "RATE_LIMIT_EXCEEDED", "message": "slow down", "details": {"retryAfter": 7}},
        "requestId": "r1",
    }
)


@pytest.mark.parametrize("status", [200, 202, 204])
def test_2xx_is_stopped(status):
    """Any 2xx means the recording was stopped."""
    assert classify(status).outcome is Outcome.STOPPED


@pytest.mark.parametrize(
    "body",
    [
        V1_NOT_FOUND,
        json.dumps({"api_id": "x", "error": "Call not found"}),
        json.dumps(
            {
                "status": "error",
                "error": {"code": "NOT_FOUND", "message": "call is not active"},
                "requestId": 1,
            }
        ),
        "",
    ],
)
def test_404_in_either_shape_is_already_stopped(body):
    """404 (call gone or recording not found), in either error shape, is already_stopped."""
    verdict = classify(404, {}, body)
    assert verdict.outcome is Outcome.ALREADY_STOPPED
    assert verdict.succeeded


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"api_id": "x", "error": "No active recording on this call"}),
        json.dumps({"status": "error", "error": {"code": "RECORDING_NOT_FOUND", "message": "x"}}),
        json.dumps({"status": "error", "error": {"code": "BAD", "message": "Call is not being recorded"}}),
        json.dumps({"api_id": "x", "error": "nothing to stop"}),
    ],
)
def test_nothing_to_stop_error_on_4xx_is_already_stopped(body):
    """A 4xx whose error says there is nothing to stop counts as success."""
    assert classify(400, {}, body).outcome is Outcome.ALREADY_STOPPED


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 507, 599])
def test_transient_statuses_retry(status):
    """Rate limits, timeouts and server errors are retried."""
    assert classify(status).outcome is Outcome.RETRY


@pytest.mark.parametrize("status", [400, 401, 403, 405, 409, 410, 422, 499, 301, 302])
def test_other_statuses_are_permanent(status):
    """Bad request, credentials, forbidden, redirects and other 4xx are permanent."""
    verdict = classify(status, {}, json.dumps({"api_id": "x", "error": "Invalid request"}))
    assert verdict.outcome is Outcome.DEAD
    assert verdict.message == "Invalid request"


def test_v2_shape_gives_code_and_message():
    """The v2 shape's code and message are extracted."""
    body = json.dumps(
        {
            "status": "error",
            "error": {"code": "ACCOUNT_INACTIVE", "message": "inactive", "details": {}},
            "requestId": "r",
        }
    )
    verdict = classify(403, {}, body)
    assert (verdict.outcome, verdict.code, verdict.message) == (Outcome.DEAD, "ACCOUNT_INACTIVE", "inactive")


def test_retry_after_header_seconds():
    """Retry-After in delta-seconds is honoured."""
    assert classify(429, {"Retry-After": "2"}, "").retry_after_s == 2.0


def test_retry_after_header_http_date():
    """Retry-After as an HTTP-date is converted to seconds from now."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    verdict = classify(503, {"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, "", now=now)
    assert verdict.retry_after_s == 30.0


def test_retry_after_from_body_when_header_missing():
    """Without the header, the body's details.retryAfter is used."""
    assert classify(429, {}, V2_RATE).retry_after_s == 7.0


def test_header_wins_over_body():
    """The Retry-After header takes precedence over the body."""
    assert classify(429, {"Retry-After": "3"}, V2_RATE).retry_after_s == 3.0


@pytest.mark.parametrize("value", ["soon", "-5", "", "1.5e99"])
def test_unparseable_retry_after_is_ignored(value):
    """A malformed Retry-After is ignored, not trusted."""
    assert classify(429, {"Retry-After": value}, "").retry_after_s is None


@pytest.mark.parametrize(
    "body", ["not json", b"\xff\xfe", "[]", "null", json.dumps({"error": 5}), "{" * 5000]
)
def test_garbage_bodies_never_raise(body):
    """Unparseable bodies are tolerated."""
    parse_error_body(body)
    assert classify(500, {}, body).outcome is Outcome.RETRY
