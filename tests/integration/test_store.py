"""The Redis state machine on its own: retention bounds, TTLs and admission rules."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from recstop.worker.config.settings import Retention, RetryPolicy, Settings
from recstop.worker.model.validation import validate_stop
from recstop.worker.model.vocabulary import Origin, Outcome
from recstop.worker.state import keys
from recstop.worker.state.attempts import AttemptRecord
from recstop.worker.state.deadletters import DeadLetters
from recstop.worker.state.enqueue import NewStop
from recstop.worker.state.store import StopStore

pytestmark = pytest.mark.integration


def record(client, request):
    """The stop record of ``request`` as the scripts store it."""
    return json.loads(client.get(f"recstop:call:{request.call_uuid}"))[keys.target_of(request.url)]


@pytest.fixture
def client(redis_server):
    """A decoded client on the test's private Redis."""
    return redis_server.client()


#: The attempt log entry of a first attempt.
FIRST = AttemptRecord({"attempt": 1})


def make_store(client, retry=None, retention=None):
    """A store with the default settings but for ``retry`` and ``retention``."""
    defaults = Settings()
    return StopStore(
        client,
        retry or RetryPolicy(),
        retention or Retention(),
        redis_settings=defaults.redis,
        watchdog_s=defaults.watchdog_s,
        audit_max=defaults.audit.stream_max,
    )


def enqueue(store, stop):
    """Enqueue one stop as the Python producer does."""
    return store.enqueues.enqueue(stop, urgent=False, origin=Origin.PYTHON)


def test_dead_letter_store_is_bounded_by_count(client):
    """Adding past dlq_max_entries drops the oldest entries and their hashes."""
    letters = DeadLetters(client, Retention(dlq_max_entries=3))
    ids = [letters.add_malformed(f"t{i}", {"n": i}, "bad") for i in range(5)]
    assert letters.count() == 3
    assert [e.id for e in letters.list()] == ids[:1:-1]
    assert letters.get(ids[0]) is None
    assert sorted(client.hkeys("recstop:dlq:entries")) == sorted(ids[2:])


def test_dead_letters_expire_by_age(client):
    """A dead letter older than dlq_max_age_s is dropped when the next one is added."""
    letters = DeadLetters(client, Retention(dlq_max_age_s=500))
    old = letters.add_malformed("t", {}, "bad")
    client.zadd("recstop:dlq", {old: time.time() - 501})
    new = letters.add_malformed("t", {}, "bad")
    assert [e.id for e in letters.list()] == [new]
    assert client.hkeys("recstop:dlq:entries") == [new]


def test_dead_letter_payload_is_bounded_and_redacted(client):
    """A megabyte payload is truncated; a known secret inside it is masked."""
    from recstop.worker.model.redaction import Redactor  # noqa: PLC0415

    letters = DeadLetters(client, Retention(), Redactor(["s3cr3t-token"]))
    entry = letters.get(letters.add_malformed("t", {"blob": "x" * 1_000_000, "k": "s3cr3t-token"}, "bad"))
    assert entry.payload["truncated"] is True
    small = letters.get(letters.add_malformed("t", {"k": "s3cr3t-token"}, "bad"))
    assert small.payload == {"k": "***"}


def test_status_record_expires_after_retention(client):
    """A finished stop's record lives for the status retention; a pending one longer."""
    store = make_store(client, RetryPolicy(deadline_s=600), Retention(status_s=1000))
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueued = enqueue(store, NewStop(request, "task-1", delay_s=100))
    key = f"recstop:call:{request.call_uuid}"
    assert 1000 + 600 < client.ttl(key) <= 1000 + 700 + 1
    assert store.cancels.cancel(request.call_uuid, None) == ("cancelled", True)
    assert 0 < client.ttl(key) <= 1000
    assert enqueued.state == "scheduled"


def test_admission_skips_early_duplicate_and_finished_messages(client):
    """begin(): early messages skip, foreign ones merge, pull the stop forward, a cancelled run's cancel."""
    store = make_store(client)
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueue(store, NewStop(request, "task-1", delay_s=60))
    assert store.attempts.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=5000).detail == "early"
    assert store.attempts.begin(request, "other", lock_token="other:a", lock_ttl_ms=5000).detail == "merged"
    claimed = store.schedule.claim_due(lease_s=30, limit=10)
    published = store.schedule.publish_due(claimed.leases)
    assert [(p.task_id, p.published) for p in published] == [("task-1", True)]  # due now, not in 60 s
    assert client.llen("recstop") == 1
    store.cancels.cancel(request.call_uuid, None)
    assert (
        store.attempts.begin(request, "task-1", lock_token="task-1:b", lock_ttl_ms=5000).decision
        == "cancelled"
    )


def test_two_workers_cannot_hold_one_key(client):
    """While one worker holds a key's lock, a second message for the same run is skipped as busy."""
    store = make_store(client)
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueue(store, NewStop(request, "task-1"))
    first = store.attempts.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=5000)
    second = store.attempts.begin(request, "task-1", lock_token="task-1:b", lock_ttl_ms=5000)
    assert (first.decision, second.decision, second.detail) == ("run", "skip", "busy")
    assert record(client, request)["lock"] == "task-1:a"
    finished = store.attempts.finish(
        request,
        "task-1",
        lock_token="task-1:a",
        outcome=Outcome.STOPPED,
        record=AttemptRecord({"attempt": 1}),
    )
    assert finished.state == "stopped"
    assert "lock" not in record(client, request)


def test_stale_lock_of_a_failed_run_is_rechecked_not_lost(client):
    """A redelivered message that meets its own run's lock schedules a re-check at lock expiry."""
    store = make_store(client)
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueue(store, NewStop(request, "task-1"))
    assert store.attempts.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=1500).decision == "run"
    # ... the worker dies or loses Redis before finish(); the message comes back:
    assert store.attempts.begin(request, "task-1", lock_token="task-1:b", lock_ttl_ms=1500).detail == "busy"
    score = client.zscore("recstop:schedule", f"{request.call_uuid}/all")
    assert score is not None
    assert score - record(client, request)["enqueued_at"] < 3


def test_a_later_success_clears_the_keys_dead_letter(client):
    """A new stop for a key that was dead-lettered removes that dead letter once it succeeds."""
    store = make_store(client)
    letters = DeadLetters(client, Retention())
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueue(store, NewStop(request, "task-1"))
    store.attempts.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=5000)
    store.attempts.finish(
        request,
        "task-1",
        lock_token="task-1:a",
        outcome=Outcome.DEAD,
        record=AttemptRecord(reason="http_403", dlq_id="d1"),
    )
    assert letters.count() == 1
    enqueue(store, NewStop(request, "task-2"))
    store.attempts.begin(request, "task-2", lock_token="task-2:a", lock_ttl_ms=5000)
    store.attempts.finish(
        request,
        "task-2",
        lock_token="task-2:a",
        outcome=Outcome.STOPPED,
        record=AttemptRecord({"attempt": 1}),
    )
    assert letters.count() == 0
    assert store.status(request.call_uuid).state == "stopped"


def test_finish_counts_an_attempt_in_the_latency_bucket_the_exporter_reads(client):
    """An attempt of 0.2 s is counted under le=0.25 of its status, the label the exporter sums."""
    store = make_store(client)
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueue(store, NewStop(request, "task-1"))
    store.attempts.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=5000)
    attempt = {"attempt": 1, "outcome": Outcome.STOPPED, "http_status": 204, "duration_ms": 200.0}
    store.attempts.finish(
        request, "task-1", lock_token="task-1:a", outcome=Outcome.STOPPED, record=AttemptRecord(attempt, 204)
    )
    counted = {k: v for k, v in client.hgetall(keys.METRICS).items() if k.startswith("latency_bucket:")}
    assert counted == {keys.counter(keys.Counter.LATENCY_BUCKET, "204", keys.bucket_label(0.25)): "1"}


def test_a_script_redis_forgot_is_loaded_again_and_a_call_is_one_evalsha(client):
    """After SCRIPT FLUSH (a restart) the next call loads its script; a known script costs one EVALSHA."""
    store = make_store(client)
    first = validate_stop(str(uuid.uuid4()), None, None, None, None)
    enqueue(store, NewStop(first, "task-1"))
    client.script_flush()
    again = validate_stop(str(uuid.uuid4()), None, None, None, None)
    assert not enqueue(store, NewStop(again, "task-2")).deduplicated
    client.config_resetstat()
    enqueue(store, NewStop(validate_stop(str(uuid.uuid4()), None, None, None, None), "task-3"))
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert not {"cmdstat_script|exists", "cmdstat_script|load", "cmdstat_eval"} & stats.keys()
