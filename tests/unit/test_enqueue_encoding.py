"""What an enqueue sends, built by the producer's fast paths, is what the plain construction builds."""

from __future__ import annotations

import base64
import json
import uuid
from types import MappingProxyType

from recstop.worker.model.ids import new_id
from recstop.worker.state import envelope, taskevents
from recstop.worker.state.arguments import Raw, encode, raw


def test_new_id_is_a_version_4_uuid_as_uuid_writes_it() -> None:
    """Every id is a canonical RFC 4122 version 4 UUID, and no two are alike."""
    ids = [new_id() for _ in range(5000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)


def test_group_envelope_argument_is_the_envelope_with_a_fresh_tag_each_call() -> None:
    """The pre-encoded ``events`` argument decodes to the group envelope; each call has its own tag."""
    head, tail = taskevents.group_envelope()
    first, second = (json.loads(taskevents.group_envelope_arg()) for _ in range(2))
    assert first["head"] == head
    envelope = json.loads(f'{head}"[]"{tail}')
    decoded = json.loads(f'{first["head"]}"[]"{first["tail"]}')
    tags = {envelope["properties"].pop("delivery_tag"), decoded["properties"].pop("delivery_tag")}
    assert decoded == envelope
    other = json.loads(f'{second["head"]}"[]"{second["tail"]}')["properties"]["delivery_tag"]
    assert len(tags | {other}) == 3
    assert all(uuid.UUID(tag).version == 4 for tag in tags)


def test_encode_leaves_out_none_at_every_depth_and_splices_raw_parts() -> None:
    """None values vanish in dicts, other mappings and lists' dicts; Raw text is spliced unquoted."""
    args = {
        "flag": True,
        "zero": 0,
        "gone": None,
        "text": 'a"b',
        "nested": MappingProxyType({"keep": 1.5, "drop": None, "inner": [{"x": None, "y": "z"}, None]}),
        "events": Raw('{"head":"h"}'),
        "also": raw({"k": None, "v": [1, None]}),
    }
    assert json.loads(encode(args)) == {
        "flag": True,
        "zero": 0,
        "text": 'a"b',
        "nested": {"keep": 1.5, "inner": [{"y": "z"}, None]},
        "events": {"head": "h"},
        "also": {"v": [1, None]},
    }
    assert " " not in encode({"a": [1, 2], "b": {"c": "d"}})


def test_task_sent_body_is_compact_json_of_the_event() -> None:
    """A task-sent event's fields encode compactly, with values JSON cannot hold written as text."""
    text = taskevents.task_sent_body("tid", {"call_uuid": "c", "not_after": None}, queue="recstop", eta=0.0)
    body = json.loads(text)
    assert body["uuid"] == body["root_id"] == "tid"
    assert body["type"] == "task-sent"
    assert body["eta"] == "1970-01-01T00:00:00+00:00"
    assert body["queue"] == body["routing_key"] == "recstop"
    assert text == json.dumps(body, separators=(",", ":"))


def test_stop_message_fills_body_kwargsrepr_and_tag_in_their_own_places() -> None:
    """Body, kwargsrepr and delivery tag are each filled where they belong, whatever the URL holds."""
    url = 'https://h/x?a="é"&b=@@DELIVERY_TAG@@'
    kwargs = {"call_uuid": "c", "url": url, "auth_id": None, "request_id": None, "not_after": None}
    for parent in (None, "dead-task"):
        message = json.loads(envelope.stop_message(kwargs, queue="recstop.urgent", parent_id=parent))
        assert json.loads(base64.b64decode(message["body"])) == [
            [],
            kwargs,
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
        assert message["headers"]["kwargsrepr"] == repr(kwargs)
        assert message["headers"]["parent_id"] == parent
        assert message["headers"]["id"] == envelope.TASK_ID_PLACEHOLDER
        assert uuid.UUID(message["properties"]["delivery_tag"]).version == 4
        assert message["properties"]["delivery_info"]["routing_key"] == "recstop.urgent"
