"""The stop message as kombu's Redis transport stores it, built without kombu.

The producer hands this text to ``enqueue.lua``, which records the stop and pushes the message in
one atomic step (one round trip instead of three: enqueue, publish, confirm). It is the same
Celery protocol 2 envelope that ``app.send_task`` writes and that docs/other-languages.md documents for
producers in other languages; ``tests/integration/test_stop_flow.py`` runs both through a worker.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
from collections.abc import Mapping
from typing import Any, Final

from recstop.worker.model.ids import new_id
from recstop.worker.state.keys import TASK_NAME

#: Replaced by ``enqueue.lua`` with the task id of the run the message belongs to (a new run's, or
#: the pending run's when an urgent stop joins it).
TASK_ID_PLACEHOLDER: Final = "@@TASK_ID@@"
_ORIGIN: Final = f"{os.getpid()}@{socket.gethostname()}"
_EMBED: Final = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
#: One compact encoder for every message (``json.dumps`` with separators builds one per call).
_dumps: Final = json.JSONEncoder(separators=(",", ":")).encode


def stop_message(
    kwargs: Mapping[str, Any], *, queue: str, retries: int = 0, parent_id: str | None = None
) -> str:
    """The JSON text of one ``recstop.stop_recording`` message, its task id left as a placeholder.

    ``parent_id``: the task id of the dead stop a replay replays (Celery's ``parent_id`` header,
    which the worker's task events carry: Flower links the replay to the stop it replays).
    """
    body = _dumps([[], dict(kwargs), _EMBED]).encode()
    template = _template(queue, retries)
    if parent_id is not None:  # a replay, rare: not worth a template of its own
        envelope = json.loads(template)
        envelope["headers"]["parent_id"] = parent_id
        template = json.dumps(envelope, separators=(",", ":"))
    head, between, tail, end = _split(template)
    return "".join(
        (
            head,
            base64.b64encode(body).decode("ascii"),
            between,
            json.dumps(repr(dict(kwargs)))[1:-1],
            tail,
            new_id(),
            end,
        )
    )


@functools.lru_cache(maxsize=64)
def _split(template: str) -> tuple[str, str, str, str]:
    """A template's text around its body, kwargs repr and delivery tag placeholders, in that order."""
    head, rest = template.split(_BODY, 1)
    between, rest = rest.split(_KWARGSREPR, 1)
    tail, end = rest.split(_TAG, 1)
    return head, between, tail, end


_BODY: Final = "@@BODY@@"
_KWARGSREPR: Final = "@@KWARGSREPR@@"
_TAG: Final = "@@DELIVERY_TAG@@"


@functools.cache
def _template(queue: str, retries: int) -> str:
    """The envelope with placeholders (built once per queue): filling it in is three replaces."""
    tid = TASK_ID_PLACEHOLDER
    envelope = {
        "body": _BODY,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": TASK_NAME,
            "id": tid,
            "shadow": None,
            "group": None,
            "group_index": None,
            "retries": retries,
            "timelimit": [None, None],
            "root_id": tid,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": _KWARGSREPR,
            "origin": _ORIGIN,
            "ignore_result": True,
        },
        "properties": {
            "correlation_id": tid,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": _TAG,
        },
    }
    return json.dumps(envelope, separators=(",", ":"))
