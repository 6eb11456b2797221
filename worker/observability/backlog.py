"""How long the oldest message of a lane has waited: the backlog's age, read at scrape time.

A lane is taken from its right end, so the item there is the next to run and the oldest waiting.
Celery messages carry no time, so the age comes from the stop's own record: how long ago it became
due (``due_at``, or ``enqueued_at``). A message with no record yet (another producer's, not yet
admitted by a worker) or one that cannot be decoded counts as just arrived.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from redis import Redis

from recstop.worker.state import keys


def oldest_age_s(client: Redis, lane: str, now: float) -> float:
    """Seconds the next message of ``lane`` has been due (0 when the lane is empty or unknown)."""
    item = client.lindex(lane, -1)
    if item is None:
        return 0.0
    kwargs = _kwargs(item)
    call_uuid, url = kwargs.get("call_uuid"), kwargs.get("url")
    if not isinstance(call_uuid, str) or not (url is None or isinstance(url, str)):
        return 0.0
    raw = client.get(keys.call_key(call_uuid))
    try:
        record = json.loads(raw).get(keys.target_of(url), {}) if raw else {}
        since = float(record.get("due_at") or record.get("enqueued_at") or now)
    except (ValueError, TypeError, AttributeError, UnicodeEncodeError):
        return 0.0
    return max(0.0, now - since)


def _kwargs(item: Any) -> dict[str, Any]:  # noqa: ANN401 - a lane item, bytes or str
    """The task keyword arguments of a queued Celery message, or ``{}``."""
    try:
        envelope = json.loads(item)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
        kwargs = decoded[1] if isinstance(decoded, list) and len(decoded) > 1 else {}
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return {}
    return kwargs if isinstance(kwargs, dict) else {}
