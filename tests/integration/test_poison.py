"""Poison messages: dead-lettered with their reason, never unpickled, and the worker keeps serving."""

from __future__ import annotations

import base64
import io
import json
import pickle
from collections import Counter

import pytest
import redis
from conftest import TOKEN
from kombu.message import Message
from support import as_role, deletes, final, free_port, in_flight, wait_for

from harness.poison import Poisoned, Touch, poison_set
from recstop.producers import cli
from recstop.worker.celeryapp.poison import Poison, PoisonHandler
from recstop.worker.config.settings import Retention
from recstop.worker.model.redaction import Redactor
from recstop.worker.state.acl import Role
from recstop.worker.state.deadletters import MAX_PAYLOAD_CHARS, DeadLetters
from recstop.worker.state.keys import QUEUE, TASK_NAME

pytestmark = pytest.mark.integration


def dead_letters(producer, count, timeout_s=30.0):
    """Wait until ``count`` dead letters are stored; return them."""
    try:
        wait_for(lambda: producer.dead_letters.count() >= count, timeout_s=timeout_s)
    except AssertionError:
        have = Counter(e.reason for e in producer.dead_letters.list(limit=count + 10))
        raise AssertionError(f"expected {count} dead letters, have {dict(have)}") from None
    return producer.dead_letters.list(limit=count + 10)


def test_poison_messages_are_dead_lettered_and_the_worker_keeps_serving(
    producer, start_worker, redis_server, sandbox_client, call, tmp_path
):
    """Each poison message gets its reason; pickle/yaml never run; stops before and after succeed."""
    worker = start_worker()
    before = call()
    producer.stop_recording(before)
    items = poison_set(tmp_path)
    for item in items:
        item.publish(redis_server.role_url(Role.PRODUCER))
    after = call()
    producer.stop_recording(after)

    entries = dead_letters(producer, len(items))
    assert Counter(e.reason for e in entries) == Counter(i.reason for i in items)
    counted = redis_server.client().hgetall("recstop:metrics")
    rejected = {f.removeprefix("rejected:"): int(n) for f, n in counted.items() if f.startswith("rejected:")}
    assert rejected == dict(Counter(i.reason for i in items))
    by_id = {i.task_id: i.reason for i in items if i.task_id}
    assert {e.task_id: e.reason for e in entries if e.task_id} == by_id
    assert not (tmp_path / "unpickled").exists()
    assert not (tmp_path / "yaml-applied").exists()
    assert worker.alive
    for call_uuid in (before, after):
        assert final(producer, call_uuid).state == "stopped"
        assert len(deletes(sandbox_client, call_uuid)) == 1
    client = redis_server.client()
    assert client.llen(QUEUE) == 0
    wait_for(lambda: in_flight(client) == 0, what="every message acked")
    events = Counter(r.get("event") for r in worker.log_records())
    assert events["message_dead_lettered"] == sum(i.reason != "malformed" for i in items)
    assert events["message_malformed"] == sum(i.reason == "malformed" for i in items)
    assert not [r for r in worker.log_records() if r.get("level") == "critical"]
    assert max(map(len, worker.log_text().splitlines())) < 20_000  # no 1 MB log lines


def test_pickle_gadget_is_real_and_is_stored_as_raw_bytes(
    producer, start_worker, redis_server, tmp_path, env, monkeypatch
):
    """The gadget does create its marker when unpickled; the worker stores its bytes; the CLI shows them."""
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Touch(control)))  # noqa: S301 - proves the gadget works, on purpose
    assert control.exists()
    start_worker()
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Touch(marker))
    item = Poisoned("pickle", "content_type_refused", payload, "application/x-python-serialize")
    item.publish(redis_server.role_url(Role.PRODUCER))
    [entry] = dead_letters(producer, 1)
    assert entry.reason == "content_type_refused"
    assert "application/x-python-serialize" in entry.error
    assert entry.payload["raw"] is True
    assert entry.payload["headers"] == {"task": TASK_NAME, "id": item.task_id}
    assert entry.payload["content_type"] == "application/x-python-serialize"
    assert base64.b64decode(entry.payload["body_base64"]) == payload
    assert not marker.exists()
    [result] = producer.replay([entry.id])
    assert result.task_id is None
    assert "malformed" in result.error
    assert "content_type_refused" in result.error
    assert producer.dead_letters.count() == 1

    for name, value in as_role(env, Role.PRODUCER).items():
        monkeypatch.setenv(name, value)
    listing, shown, replayed = io.StringIO(), io.StringIO(), io.StringIO()
    assert cli.run(["dlq", "list"], out=listing) == 0
    assert f"{entry.id}  " in listing.getvalue()
    assert "content_type_refused" in listing.getvalue()
    assert cli.run(["dlq", "show", entry.id], out=shown) == 0
    assert json.loads(shown.getvalue())["payload"]["body_base64"] == entry.payload["body_base64"]
    assert cli.run(["dlq", "replay", entry.id], out=replayed, err=io.StringIO()) == 1
    assert "malformed" in replayed.getvalue()


def test_huge_raw_body_is_capped_and_tokens_are_masked(producer, start_worker, redis_server):
    """A 1 MB refused body is stored capped at 16 KiB, with its size, and the token masked."""
    start_worker()
    body = (TOKEN + " " + "y" * 1_000_000).encode()
    Poisoned("big", "content_type_refused", body, "text/plain").publish(redis_server.role_url(Role.PRODUCER))
    [entry] = dead_letters(producer, 1)
    assert entry.payload["body_bytes"] == len(body)
    assert entry.payload["body_truncated"] is True
    assert len(entry.payload["body_text"]) == MAX_PAYLOAD_CHARS
    assert entry.payload["body_text"].startswith("*** yyy")
    stored = redis_server.client().hget("recstop:dlq:entries", entry.id)
    assert stored
    assert TOKEN not in stored


def test_hundreds_of_mixed_poison_messages_while_serving_stops(
    producer, start_worker, redis_server, sandbox_client, call, tmp_path
):
    """240 mixed poison messages are all dead-lettered within the deadline; good stops keep succeeding."""
    worker = start_worker()
    kinds = poison_set(tmp_path)
    good: list[str] = []
    sent: list[Poisoned] = []
    for n in range(240):
        item = kinds[n % len(kinds)].copy()
        item.publish(redis_server.role_url(Role.PRODUCER))
        sent.append(item)
        if n % 24 == 0:
            good.append(call())
            producer.stop_recording(good[-1])

    entries = dead_letters(producer, len(sent), timeout_s=90)
    assert len(entries) == len(sent)
    assert Counter(e.reason for e in entries) == Counter(i.reason for i in sent)
    for call_uuid in good:
        assert final(producer, call_uuid).state == "stopped"
        assert len(deletes(sandbox_client, call_uuid)) == 1
    assert not (tmp_path / "unpickled").exists()
    assert not (tmp_path / "yaml-applied").exists()
    assert worker.alive


class RecordingChannel:
    """The part of a kombu channel that ``Message.ack`` uses; records every ack."""

    no_ack_consumers = None

    def __init__(self) -> None:
        self.acked: list[str] = []

    def basic_ack(self, delivery_tag, **_):
        self.acked.append(delivery_tag)


def raw_message(channel: RecordingChannel) -> Message:
    return Message(
        body=b"\x80\x04K\x01.",
        delivery_tag="tag-1",
        content_type="application/x-python-serialize",
        headers={"task": TASK_NAME, "id": "t-1"},
        channel=channel,
    )


def test_redis_down_leaves_the_poison_message_unacked_for_redelivery(redis_server):
    """When the dead letter cannot be stored, the message is not acked; once Redis answers, it is."""
    retention = Retention()
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=None)
    channel = RecordingChannel()
    message = raw_message(channel)
    poison = Poison("content_type_refused", "pickle")
    assert PoisonHandler(DeadLetters(dead, retention))(message, poison) is None
    assert channel.acked == []
    assert not message.acknowledged

    live = DeadLetters(redis_server.client(), retention, Redactor(()))
    entry_id = PoisonHandler(live)(message, poison)
    assert entry_id is not None
    assert channel.acked == ["tag-1"]
    entry = live.get(entry_id)
    assert (entry.reason, entry.task_id) == ("content_type_refused", "t-1")
