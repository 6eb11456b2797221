"""A queue item as the worker receives it: kombu's envelope, or the raw item wrapped as poison.

A list item that is not a kombu envelope (not JSON, headers that are not an object, no
properties...) makes kombu raise inside the worker's event loop: the worker exits and the item is
gone. Here such an item is wrapped in an envelope of content type ``BAD_ENVELOPE``, keeping its raw
bytes, so the consumer dead-letters it like any other poison message.

A message handed back after it was delivered is marked as kombu marks it (:func:`redelivered`).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from typing import Any, Final

from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

#: Content type of an envelope made for a list item that was not a kombu message.
BAD_ENVELOPE: Final = "application/x-recstop-bad-envelope"


def envelope(item: bytes | str, routing_key: str) -> dict[str, Any]:
    """Decode a list item into kombu's envelope, or wrap it as a ``BAD_ENVELOPE`` one."""
    try:
        payload = loads(bytes_to_str(item))
    except Exception:  # noqa: BLE001 - any decoding failure means "not an envelope"
        payload = None
    if _is_envelope(payload):
        return payload  # type: ignore[no-any-return]
    raw = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": "binary",
        "content-type": BAD_ENVELOPE,
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "priority": 0,
        },
    }


def redelivered(item: bytes) -> bytes:
    """The item as kombu requeues a delivered message: ``redelivered`` in its headers and delivery info.

    An item that is not a kombu envelope (poison), or has no headers object, goes back unchanged.
    """
    try:
        payload = loads(bytes_to_str(item))
    except Exception:  # noqa: BLE001 - any decoding failure means "not an envelope"
        return item
    if not _is_envelope(payload) or not isinstance(payload.get("headers"), dict):
        return item
    payload["headers"]["redelivered"] = True
    payload["properties"]["delivery_info"]["redelivered"] = True
    text: str = dumps(payload)
    return text.encode("utf-8")


def _is_envelope(payload: object) -> bool:
    """Whether ``payload`` has the shape kombu's virtual transport reads without failing."""
    if not isinstance(payload, Mapping):
        return False
    properties = payload.get("properties")
    headers = payload.get("headers", {})
    if not isinstance(properties, Mapping) or not isinstance(headers, Mapping | None):
        return False
    info = properties.get("delivery_info")
    return (
        isinstance(info, Mapping)
        and isinstance(properties.get("delivery_tag"), str | int)
        and isinstance(payload.get("body", ""), str | bytes)
        and isinstance(payload.get("content-type", ""), str | None)
        and isinstance(payload.get("content-encoding", ""), str | None)
        and isinstance(properties.get("body_encoding", "base64"), str)
        and isinstance(properties.get("priority", 0), int | None)
    )
