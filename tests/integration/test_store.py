"""The Redis state machine on its own: retention bounds, TTLs and admission rules."""

from __future__ import annotations

import uuid

import pytest

from worker.deadletters import DeadLetters
from worker.settings import Retention, RetryPolicy
from worker.store import StopStore
from worker.validation import validate_stop

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server):
    """A decoded client on the test's private Redis."""
    return redis_server.client()


def test_dead_letter_store_is_bounded_by_count(client):
    """Adding past dlq_max_entries drops the oldest entries and their hashes."""
    letters = DeadLetters(client, Retention(dlq_max_entries=3))
    ids = [letters.add_malformed(f"t{i}", {"n": i}, "bad") for i in range(5)]
    assert letters.count() == 3
    assert [e.id for e in letters.list()] == ids[:1:-1]
    assert letters.get(ids[0]) is None
    assert not client.exists(f"recstop:dlq:{ids[0]}")


def test_dead_letters_expire_by_age(client):
    """Each dead letter carries a TTL of dlq_max_age_s."""
    letters = DeadLetters(client, Retention(dlq_max_age_s=500))
    entry = letters.add_malformed("t", {}, "bad")
    assert 0 < client.ttl(f"recstop:dlq:{entry}") <= 500


def test_dead_letter_payload_is_bounded_and_redacted(client):
    """A megabyte payload is truncated; a known secret inside it is masked."""
    from worker.redaction import Redactor  # noqa: PLC0415

    letters = DeadLetters(client, Retention(), Redactor(["s3cr3t-token"]))
    entry = letters.get(letters.add_malformed("t", {"blob": "x" * 1_000_000, "k": "s3cr3t-token"}, "bad"))
    assert entry.payload["truncated"] is True
    small = letters.get(letters.add_malformed("t", {"k": "s3cr3t-token"}, "bad"))
    assert small.payload == {"k": "***"}


def test_status_record_expires_after_retention(client):
    """A finished stop's record lives for the status retention; a pending one longer."""
    store = StopStore(client, RetryPolicy(deadline_s=600), Retention(status_s=1000))
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueued = store.enqueue(request, "task-1", delay_s=100)
    key = f"recstop:status:{request.call_uuid}/all"
    assert 1000 + 600 < client.ttl(key) <= 1000 + 700 + 1
    assert store.cancel(request.call_uuid, None) == ("cancelled", True)
    assert 0 < client.ttl(key) <= 1000
    assert enqueued.state == "scheduled"


def test_admission_skips_early_duplicate_and_finished_messages(client):
    """begin(): early and finished messages skip; a foreign message merges and pulls the stop forward."""
    store = StopStore(client, RetryPolicy(), Retention())
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    store.enqueue(request, "task-1", delay_s=60)
    assert store.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=5000).detail == "early"
    assert store.begin(request, "other", lock_token="other:a", lock_ttl_ms=5000).detail == "merged"
    claimed, _ = store.claim_due(lease_s=30, limit=10)
    assert [due.task_id for due in claimed] == ["task-1"]  # due now, not in 60 s
    store.cancel(request.call_uuid, None)
    assert store.begin(request, "task-1", lock_token="task-1:b", lock_ttl_ms=5000).detail == "duplicate"


def test_two_workers_cannot_hold_one_key(client):
    """While one worker holds a key's lock, a second message for the same run is skipped as busy."""
    store = StopStore(client, RetryPolicy(), Retention())
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    store.enqueue(request, "task-1")
    first = store.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=5000)
    second = store.begin(request, "task-1", lock_token="task-1:b", lock_ttl_ms=5000)
    assert (first.decision, second.decision, second.detail) == ("run", "skip", "busy")
    state, _ = store.finish(
        request, "task-1", lock_token="task-1:a", result="stopped", attempt={"attempt": 1}
    )
    assert state == "stopped"
    assert not client.exists(f"recstop:lock:{request.call_uuid}/all")


def test_stale_lock_of_a_failed_run_is_rechecked_not_lost(client):
    """A redelivered message that meets its own run's lock schedules a re-check at lock expiry."""
    store = StopStore(client, RetryPolicy(), Retention())
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    enqueued = store.enqueue(request, "task-1")
    store.confirm_published(f"{request.call_uuid}/all", enqueued.schedule_score)
    assert store.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=1500).decision == "run"
    # ... the worker dies or loses Redis before finish(); the message comes back:
    assert store.begin(request, "task-1", lock_token="task-1:b", lock_ttl_ms=1500).detail == "busy"
    score = client.zscore("recstop:schedule", f"{request.call_uuid}/all")
    assert score is not None
    assert score - float(client.hget(f"recstop:status:{request.call_uuid}/all", "enqueued_at")) < 3


def test_a_later_success_clears_the_keys_dead_letter(client):
    """A new stop for a key that was dead-lettered removes that dead letter once it succeeds."""
    store = StopStore(client, RetryPolicy(), Retention())
    letters = DeadLetters(client, Retention())
    request = validate_stop(str(uuid.uuid4()), auth_id="MA_TESTACCT01")
    store.enqueue(request, "task-1")
    store.begin(request, "task-1", lock_token="task-1:a", lock_ttl_ms=5000)
    store.finish(
        request, "task-1", lock_token="task-1:a", result="dead", attempt=None, reason="http_403", dlq_id="d1"
    )
    assert letters.count() == 1
    store.enqueue(request, "task-2")
    store.begin(request, "task-2", lock_token="task-2:a", lock_ttl_ms=5000)
    store.finish(request, "task-2", lock_token="task-2:a", result="stopped", attempt={"attempt": 1})
    assert letters.count() == 0
    assert store.status(request.call_uuid).state == "stopped"
