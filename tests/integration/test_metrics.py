"""`recstop metrics` as a real process: counters summed over two workers, gauges read live."""

from __future__ import annotations

import subprocess
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, in_flight, metrics_process, terminate, wait_for

from recstop.worker.state.acl import Role
from recstop.worker.state.keys import LATENCY_BUCKETS

pytestmark = pytest.mark.integration


def samples(text):
    """Every sample of a scrape as {(name, sorted label items): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape, name, **labels):
    """One sample's value (KeyError when the exporter did not produce it)."""
    return scrape[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def exporter(redis_server):
    """``recstop metrics`` on a free port, as a real subprocess; returns its /metrics URL."""
    port = free_port()
    proc = metrics_process(redis_server.role_url(Role.MONITOR), port, output=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/metrics"

    def serving():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            return requests.get(url, timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_for(serving, timeout_s=20, what="the metrics exporter to serve")
    assert proc.stdout is not None
    first = proc.stdout.readline().decode()  # it says where it listens as it starts
    banner = f"serving Prometheus metrics on {url} (reading redis://monitor:***@127.0.0.1:"
    assert first.startswith(banner), first
    yield proc, url
    terminate(proc)


def scrape(url):
    """GET /metrics and parse it."""
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def assert_latency(m, counts):
    """The latency histogram has one series per status seen, with exactly ``counts`` observations."""
    for status, n in counts.items():
        assert value(m, "recstop_api_request_duration_seconds_count", status=status) == n
        assert value(m, "recstop_api_request_duration_seconds_bucket", status=status, le="+Inf") == n
        assert 0 < value(m, "recstop_api_request_duration_seconds_sum", status=status) < 5 * n
        buckets = [
            value(m, "recstop_api_request_duration_seconds_bucket", status=status, le=str(b))
            for b in LATENCY_BUCKETS
        ]
        assert buckets == sorted(buckets)
        assert buckets[-1] == n  # every local sandbox call takes less than 15 s
    assert {
        dict(k[1]).get("status") for k in m if k[0] == "recstop_api_request_duration_seconds_count"
    } == set(counts)


def test_counters_sum_over_two_workers_and_gauges_are_live(
    producer, start_worker_process, sandbox_client, call, exporter, redis_server
):
    """204, 404, 503→204, 429→204 and 403 over two worker processes: exact counters, histogram, gauges."""
    proc, url = exporter
    workers = [start_worker_process(), start_worker_process()]
    ok, gone, flaky, limited, denied = (call() for _ in range(5))
    sandbox_client.set_faults(
        [
            {"kind": "status", "status": 404, "call_uuid": gone},
            {"kind": "status", "status": 503, "times": 1, "call_uuid": flaky},
            {"kind": "status", "status": 429, "times": 1, "retry_after": "1", "call_uuid": limited},
            {"kind": "status", "status": 403, "call_uuid": denied},
        ]
    )
    for call_uuid in (ok, gone, flaky, limited, denied):
        producer.stop_recording(call_uuid)
    producer.stop_recording(call(), delay=600)  # stays in the schedule, in the future

    def settled():
        states = [producer.status(c).state for c in (ok, gone, flaky, limited, denied)]
        return all(not s.pending for s in states) and in_flight(redis_server.client()) == 0

    wait_for(settled, timeout_s=30, what="every stop to finish and be acknowledged")
    m = scrape(url)

    assert value(m, "recstop_redis_up") == 1
    assert value(m, "recstop_stops_total", outcome="stopped", reason="") == 3
    assert value(m, "recstop_stops_total", outcome="already_stopped", reason="") == 1
    assert value(m, "recstop_stops_total", outcome="retried", reason="") == 2
    assert value(m, "recstop_stops_total", outcome="dead", reason="http_403") == 1
    assert value(m, "recstop_stops_total", outcome="cancelled", reason="") == 0
    assert value(m, "recstop_attempts_total") == 7
    assert value(m, "recstop_rate_limited_total") == 1
    assert value(m, "recstop_retry_after_waits_total") == 1
    assert value(m, "recstop_retry_after_wait_seconds_total") == 1.0
    assert_latency(m, {"204": 3, "404": 1, "503": 1, "429": 1, "403": 1})
    assert value(m, "recstop_dead_letters") == 1
    assert value(m, "recstop_queue_messages", queue="recstop") == 0
    assert value(m, "recstop_queue_messages", queue="recstop.urgent") == 0
    assert value(m, "recstop_inflight_messages") == 0
    assert value(m, "recstop_schedule_entries", when="future") == 1
    assert value(m, "recstop_schedule_entries", when="due") == 0
    assert value(m, "recstop_schedule_oldest_due_age_seconds") == 0
    assert value(m, "recstop_workers", state="live") == 2
    assert value(m, "recstop_workers", state="stale") == 0
    # The attempts the two worker processes logged add up to the counter in Redis.
    attempts_by_worker = [sum(1 for r in w.log_records() if r.get("event") == "attempt") for w in workers]
    assert sum(attempts_by_worker) == 7

    for w in workers:
        w.stop()
    producer.stop_recording(call())
    producer.stop_recording(call())
    redis_server.client().hset("recstop:workers", "ghost@host", "1000.0")
    m = scrape(url)
    assert value(m, "recstop_queue_messages", queue="recstop") == 2
    assert value(m, "recstop_workers", state="live") == 0
    assert value(m, "recstop_workers", state="stale") == 1
    assert value(m, "recstop_attempts_total") == 7  # counters persist in Redis, not in a process
    assert value(m, "recstop_schedule_entries", when="future") == 3  # two publish guards + the delayed stop

    terminate(proc)
    assert proc.returncode == 0  # SIGTERM is a clean shutdown


def test_exporter_reports_redis_down_instead_of_failing(exporter, redis_server):
    """With Redis gone a scrape still answers 200, with recstop_redis_up 0 and nothing else."""
    _, url = exporter
    assert value(scrape(url), "recstop_redis_up") == 1
    redis_server.stop()
    m = scrape(url)
    assert value(m, "recstop_redis_up") == 0
    assert {k[0] for k in m} == {"recstop_redis_up"}


def test_stop_all_settling_is_counted(producer, start_worker, sandbox_client, call, exporter):
    """A stop-all that settles a delayed URL stop of the same call counts it as settled_by_stop_all."""
    _, url = exporter
    start_worker()
    call_uuid = call(recordings=0)
    recording = sandbox_client.start_recording(call_uuid)
    producer.stop_recording(call_uuid, recording, delay=600)
    producer.stop_recording(call_uuid)
    wait_for(
        lambda: producer.status(call_uuid, recording).state == "already_stopped", what="the URL stop settled"
    )
    m = scrape(url)
    assert value(m, "recstop_stops_total", outcome="settled_by_stop_all", reason="") == 1
    assert value(m, "recstop_stops_total", outcome="stopped", reason="") == 1
    assert value(m, "recstop_attempts_total") == 1
    assert value(m, "recstop_schedule_entries", when="future") == 0


def test_backlog_age_every_lane_and_producer_cancels(producer, exporter):
    """Both lanes are gauged with the age of their next message; a producer's cancel is counted once."""
    _, url = exporter
    routine, urgent, dropped = (str(uuid.uuid4()) for _ in range(3))
    producer.stop_recording(routine)
    producer.stop_recording(urgent, urgent=True)
    producer.stop_recording(dropped, delay=600)
    assert producer.cancel(dropped).cancelled
    assert not producer.cancel(dropped).cancelled  # already cancelled: not counted again

    m = wait_for(
        lambda: (
            (found := scrape(url))
            and value(found, "recstop_queue_oldest_age_seconds", queue="recstop") > 0.2
            and found
        ),
        what="the routine backlog to age",
    )
    assert value(m, "recstop_queue_messages", queue="recstop") == 1
    assert value(m, "recstop_queue_messages", queue="recstop.urgent") == 1
    assert value(m, "recstop_queue_oldest_age_seconds", queue="recstop.urgent") > 0
    assert value(m, "recstop_stops_total", outcome="cancelled", reason="") == 1
