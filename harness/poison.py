"""A catalogue of poison messages, each with the dead-letter reason the worker must give it.

Every message is written straight into the queue's Redis list the way kombu stores it (or, for
the envelope cases, as whatever bytes a broken producer might push), so nothing on the way
serializes or checks it.
"""

from __future__ import annotations

import base64
import json
import pathlib
import uuid
from dataclasses import dataclass, field
from typing import Final

import redis

from recstop.worker.state.keys import QUEUE, TASK_NAME

GOOD: Final = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"
EMBED: Final = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def lpush_raw_message(
    redis_url: str,
    body: bytes,
    *,
    headers: dict[str, object] | None = None,
    content_type: str | None = "application/json",
    content_encoding: str | None = "utf-8",
    queue: str = QUEUE,
) -> str:
    """LPUSH one message envelope exactly as kombu's Redis transport stores it; return its delivery tag.

    Nothing here serializes or checks the body: any content type, any bytes, any headers reach the
    worker as written (the way a buggy or hostile producer would send them).
    """
    tag = str(uuid.uuid4())
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers if headers is not None else {},
        "properties": {
            "delivery_tag": tag,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "body_encoding": "base64",
            "priority": 0,
            "delivery_mode": 2,
        },
    }
    lpush_item(redis_url, json.dumps(envelope).encode(), queue=queue)
    return tag


def lpush_item(redis_url: str, item: bytes, *, queue: str = QUEUE) -> None:
    """LPUSH ``item`` as it is: not even an envelope."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.lpush(queue, item)
    finally:
        client.close()


class Touch:
    """Unpickling this creates ``path``: proof that a pickle body was deserialized."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[pathlib.Path]]:
        """Unpickle as ``Path.touch(path)``."""
        return (pathlib.Path.touch, (self.path,))


@dataclass
class Poisoned:
    """One raw message to publish, and the dead-letter reason it must get."""

    name: str
    reason: str
    body: bytes
    content_type: str | None = "application/json"
    headers: dict[str, object] | None = None
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Set for the cases whose poison is the Redis list item itself (no kombu envelope at all).
    item: bytes | None = None

    def publish(self, redis_url: str) -> None:
        """Push the message into the queue."""
        if self.item is not None:
            lpush_item(redis_url, self.item)
            return
        headers: dict[str, object] = (
            {"task": TASK_NAME, "id": self.task_id} if self.headers is None else self.headers
        )
        lpush_raw_message(redis_url, self.body, headers=headers, content_type=self.content_type)

    def copy(self) -> Poisoned:
        """The same poison under a fresh task id."""
        item = Poisoned(self.name, self.reason, self.body, self.content_type, self.headers, item=self.item)
        if self.headers is not None and "id" in self.headers:
            item.headers = {**self.headers, "id": item.task_id}
        elif self.task_id == "" or self.item is not None:
            item.task_id = ""
        return item


def task_body(kwargs: object, args: object = ()) -> bytes:
    """A Celery protocol 2 body, JSON-encoded without any validation."""
    return json.dumps([list(args) if isinstance(args, tuple) else args, kwargs, EMBED]).encode()


def _envelope_cases() -> list[Poisoned]:
    """Poison in the Redis list item itself: kombu cannot even read an envelope from these."""
    no_properties = json.dumps({"body": "", "headers": {}, "content-type": "application/json"}).encode()
    list_headers = json.dumps(
        {"body": "", "headers": [1], "properties": {"delivery_tag": "t", "delivery_info": {}}}
    ).encode()
    return [
        Poisoned("item not JSON", "undecodable", b"", item=b"stop 3f2b8c1e please"),
        Poisoned("item is JSON but a list", "undecodable", b"", item=b"[1, 2, 3]"),
        Poisoned("item without properties", "undecodable", b"", item=no_properties),
        Poisoned("item with list headers", "undecodable", b"", item=list_headers),
        Poisoned("item of binary junk", "undecodable", b"", item=b"\x80\x03}q\x00."),
    ]


def poison_set(marker_dir: pathlib.Path) -> list[Poisoned]:
    """Every kind of poison message, each with the reason it must be dead-lettered with."""
    pickle_marker = marker_dir / "unpickled"
    yaml_marker = marker_dir / "yaml-applied"
    one_mb = "x" * 1_000_000
    tid = str(uuid.uuid4())
    import pickle  # noqa: PLC0415 - only to build the gadget; nothing here unpickles

    return _with_headers(
        [
            Poisoned("text body", "content_type_refused", b"please stop " + GOOD.encode(), "text/plain"),
            Poisoned("raw bytes", "content_type_refused", b"\x00\xff\xfe", "application/data"),
            Poisoned("no content type", "content_type_refused", b"abc", None),
            Poisoned(
                "msgpack", "content_type_refused", b"\x93\x90\x81\xa1a\x01\xc0", "application/x-msgpack"
            ),
            Poisoned(
                "pickle gadget",
                "content_type_refused",
                pickle.dumps(Touch(pickle_marker)),
                "application/x-python-serialize",
            ),
            Poisoned(
                "yaml gadget",
                "content_type_refused",
                f"!!python/object/apply:os.system ['touch {yaml_marker}']".encode(),
                "application/x-yaml",
            ),
            Poisoned("1 MB of text", "content_type_refused", one_mb.encode(), "text/plain"),
            Poisoned("truncated JSON", "undecodable", b'[[], {"call_uuid": '),
            Poisoned("invalid UTF-8", "undecodable", b'[[], {"call_uuid": "\xff\xfe"}, {}]'),
            Poisoned(
                "unknown kombu type tag",
                "undecodable",
                task_body({"x": {"__type__": "nope", "__value__": 1}}),
            ),
            Poisoned("unknown task", "unknown_task", task_body({"call_uuid": GOOD})),
            Poisoned("celery built-in", "unknown_task", task_body({})),
            Poisoned(
                "no id header", "invalid_message", task_body({"call_uuid": GOOD}), headers={"task": TASK_NAME}
            ),
            Poisoned(
                "protocol 1 body",
                "invalid_message",
                json.dumps({"task": TASK_NAME, "id": tid}).encode(),
                headers={},
            ),
            Poisoned("body of two", "invalid_message", b"[[], {}]"),
            Poisoned("body is an object", "invalid_message", b'{"args": [], "kwargs": {}}'),
            Poisoned("args not a list", "invalid_message", json.dumps([5, {}, EMBED]).encode()),
            Poisoned("kwargs not an object", "invalid_message", json.dumps([[], [GOOD], EMBED]).encode()),
            Poisoned("garbage timelimit", "invalid_message", task_body({"call_uuid": GOOD})),
            Poisoned("eta not a time", "invalid_message", task_body({"call_uuid": GOOD})),
            Poisoned("1 MB header", "invalid_message", task_body({"call_uuid": GOOD})),
            Poisoned("wrong types", "malformed", task_body({"call_uuid": 42, "url": [1], "auth_id": {}})),
            Poisoned("missing kwargs", "malformed", task_body({})),
            Poisoned("missing call_uuid", "malformed", task_body({"url": "https://h/r.mp3"})),
            Poisoned("extra kwargs", "malformed", task_body({"call_uuid": GOOD, "surprise": 1})),
            Poisoned("kwarg named self", "invalid_message", task_body({"call_uuid": GOOD, "self": 1})),
            Poisoned("positional args", "malformed", task_body({}, (GOOD,))),
            Poisoned("1 MB call_uuid", "malformed", task_body({"call_uuid": one_mb})),
            *_envelope_cases(),
        ]
    )


def _with_headers(items: list[Poisoned]) -> list[Poisoned]:
    """Fill in the headers of the cases whose poison is in the headers."""
    special: dict[str, dict[str, object]] = {
        "unknown task": {"task": "recstop.stop_recordings"},
        "celery built-in": {"task": "celery.backend_cleanup"},
        "garbage timelimit": {"task": TASK_NAME, "timelimit": "abc"},
        "eta not a time": {"task": TASK_NAME, "eta": "next tuesday"},
        "1 MB header": {"task": TASK_NAME, "kwargsrepr": "k" * 1_000_000},
    }
    for item in items:
        if item.name in special:
            item.headers = {**special[item.name], "id": item.task_id}
        elif item.name in {"no id header", "protocol 1 body"} or item.item is not None:
            item.task_id = ""
    return items
