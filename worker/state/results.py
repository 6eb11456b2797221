"""Celery results of stops, in Celery's own Redis result-backend format, written by recstop's scripts.

A Celery client whose ``result_backend`` is the broker's Redis URL reads a stop's outcome with
``AsyncResult(task_id).state`` and ``.get()``. The record (``celery-task-meta-<task_id>``) is
written by the same script that records the stop's state, so the two never disagree:

=====================  ==========  =========================================================
recstop state          Celery      ``.get()``
=====================  ==========  =========================================================
scheduled, queued      PENDING     waits (no record yet: Celery's own PENDING)
retrying               RETRY       waits; ``.result`` is a ``Retry`` naming the next attempt
stopped,               SUCCESS     returns ``{state, detail, attempt, http_status}``
already_stopped
dead                   FAILURE     raises ``StopDead`` (``model.errors``; a client without
                                   recstop installed gets an exception class of that name)
                                   whose text is the dead reason and the API's error text
cancelled              REVOKED     raises ``celery.exceptions.TaskRevokedError``
=====================  ==========  =========================================================

A record lives ``Retention.result_s`` (``RECSTOP_RESULT_EXPIRES_S``, one day, Celery's own
``result_expires`` default); 0 writes none. The worker itself never reads results.

The record's shape is written here once (:data:`META_TEMPLATE`): the scripts fill in the task id,
the status, the result and the date (Redis' clock; ``store_result`` in ``lua/common.lua``), and
:func:`meta` fills it the same way (this process's clock) for the copies written after a script.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from redis import Redis

from recstop.worker.model.vocabulary import CeleryState, State
from recstop.worker.state import keys
from recstop.worker.state.arguments import Raw

#: The placeholders of :data:`META_TEMPLATE`, by their name in the Lua prelude (``PLACEHOLDER.*``).
RESULT_PLACEHOLDERS: Final = {
    "META_STATUS": "@@STATUS@@",
    "META_RESULT": '"@@RESULT@@"',  # the quotes go too: the result is any JSON value
    "META_TASK_ID": "@@META_TASK_ID@@",  # inside a JSON string: filled JSON-escaped
    "META_DATE_DONE": "@@DATE_DONE@@",  # filled with Redis' clock (ISO 8601, UTC) by the script
}
_DATE_DONE: Final = RESULT_PLACEHOLDERS["META_DATE_DONE"]
#: Celery's Redis result-backend record (``celery.backends.base``'s meta), with placeholders.
META_TEMPLATE: Final = json.dumps(
    {
        "status": RESULT_PLACEHOLDERS["META_STATUS"],
        "result": RESULT_PLACEHOLDERS["META_RESULT"].strip('"'),
        "traceback": None,
        "children": [],
        "date_done": _DATE_DONE,
        "task_id": RESULT_PLACEHOLDERS["META_TASK_ID"],
    },
    separators=(",", ":"),
)


@functools.cache
def results_args(expires_s: int) -> Raw:
    """The ``results`` argument of the scripts that write results: lifetime and the record to fill.

    Encoded once, as the script gets it (``{"expires_s": ..., "meta": "..."}``): the script fills
    in the date (``date_done``, from Redis' clock) with the rest, so the argument never changes.
    """
    return Raw(f'{{"expires_s":{int(expires_s)},"meta":{json.dumps(META_TEMPLATE)}}}')


def meta(task_id: str, status: str, result: object) -> str:
    """The record Celery's Redis result backend keeps for a task (the scripts fill the same template)."""
    return (
        META_TEMPLATE.replace(_DATE_DONE, _now_iso(), 1)
        .replace(RESULT_PLACEHOLDERS["META_STATUS"], status, 1)
        .replace(RESULT_PLACEHOLDERS["META_RESULT"], json.dumps(result, separators=(",", ":")), 1)
        .replace(RESULT_PLACEHOLDERS["META_TASK_ID"], json.dumps(task_id)[1:-1], 1)
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def store_copies(client: Redis, task_ids: Iterable[str], status: str, result: object, expires_s: int) -> None:
    """Write one result for several task ids: messages that joined a run, or stops a stop-all settled.

    Their keys are known only once the script that decided it has run, so they are written right
    after it (a crash in between leaves them PENDING, never wrong).
    """
    records = result_copies(task_ids, status, result, expires_s)
    if not records:
        return
    with client.pipeline(transaction=False) as pipe:
        for key, record in records:
            pipe.set(key, record, ex=expires_s)
            pipe.publish(key, record)
        pipe.execute()


def result_copies(
    task_ids: Iterable[str], status: str, result: object, expires_s: int
) -> list[tuple[str, str]]:
    """The (key, record) of each result :func:`store_copies` writes (none when results are off)."""
    if expires_s <= 0:
        return []
    return [(keys.result_key(task_id), meta(task_id, status, result)) for task_id in task_ids if task_id]


def settled_result(settled_by: str) -> tuple[CeleryState, dict[str, Any]]:
    """The result of a single-recording stop settled by a stop-all (no DELETE of its own)."""
    return CeleryState.SUCCESS, {
        "state": State.ALREADY_STOPPED.value,
        "detail": f"settled by stop-all {settled_by}",
        "attempt": None,
        "http_status": None,
    }
