"""Test helpers: the real-process harness (``harness``), re-exported for the tests."""

from __future__ import annotations

from harness.procs import (
    ROOT,
    RedisServer,
    WorkerProcess,
    free_port,
    publish_raw,
    redis_server_binary,
    wait_for,
)

__all__ = [
    "ROOT",
    "RedisServer",
    "WorkerProcess",
    "free_port",
    "publish_raw",
    "redis_server_binary",
    "wait_for",
]


def lpush_raw_message(
    redis_url: str,
    body: bytes,
    *,
    headers: dict[str, object] | None = None,
    content_type: str | None = "application/json",
    content_encoding: str | None = "utf-8",
    queue: str = "recstop",
) -> str:
    """LPUSH one message envelope exactly as kombu's Redis transport stores it; return its delivery tag.

    Nothing here serializes or checks the body: any content type, any bytes, any headers reach the
    worker as written (the way a buggy or hostile producer would send them).
    """
    import base64  # noqa: PLC0415
    import json  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    import redis  # noqa: PLC0415

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
    client = redis.Redis.from_url(redis_url)
    try:
        client.lpush(queue, json.dumps(envelope))
    finally:
        client.close()
    return tag
