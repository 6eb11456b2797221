"""Celery task events that recstop's scripts publish themselves, so Flower sees every stop.

A worker sends a task's own events (received, started, succeeded, failed, retried, rejected).
The moments no worker sees are published by the script that makes them happen, in the same
atomic step: ``task-sent`` when a stop is accepted or published again (with its ETA when it is
delayed), ``task-revoked`` when it is cancelled. Each is the message Celery's own
``EventDispatcher`` would publish (kombu's envelope, JSON, on the ``celeryev`` fanout exchange:
the Redis channel ``/<db>.celeryev/<routing key>``), so Flower, ``celery events`` and any event
consumer read them as they read a worker's. Every envelope is built here; a script only
publishes the text it is given, when what it decides calls for it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from recstop.worker.model.ids import new_id
from recstop.worker.model.vocabulary import TaskEvent
from recstop.worker.state.arguments import Raw, raw
from recstop.worker.state.keys import TASK_NAME

EXCHANGE: Final = "celeryev"
#: The node name events from producers and schedulers carry (a worker's own carry its node name).
HOSTNAME: Final = f"recstop@{socket.gethostname()}"


def channel(broker_url: str, event_type: TaskEvent) -> str:
    """The Redis PUB/SUB channel kombu's fanout exchange uses for ``event_type`` (``task-sent``)."""
    first = broker_url.split(";", 1)[0]
    path = urlsplit(first).path.strip("/") or "0"
    db = path if path.isdigit() else "0"
    return f"/{db}.{EXCHANGE}/{event_type.replace('-', '.')}"


#: The routing key of a group of task events sent as one message (Celery's ``task.multi``).
TASK_GROUP: Final = "task.multi"
#: Where the list of events goes in :func:`group_envelope`'s text.
_EVENTS: Final = "@@EVENTS@@"
#: Where each group's own delivery tag goes in the cached envelope (:func:`_group_template`).
_TAG: Final = "@@DELIVERY_TAG@@"
#: One compact encoder for every event (``json.dumps`` with arguments builds one per call).
_dumps: Final = json.JSONEncoder(separators=(",", ":"), default=str).encode


def group_channel(broker_url: str) -> str:
    """The Redis PUB/SUB channel of a group of task events (``task.multi``): one message, a list body.

    Celery's own dispatcher sends its buffered task events this way; every event receiver (Flower,
    ``celery events``) reads a list body as its events in order.
    """
    return channel(broker_url, TaskEvent.SENT).rsplit("/", 1)[0] + "/" + TASK_GROUP


def event_body(
    event_type: TaskEvent, fields: Mapping[str, Any], *, hostname: str = HOSTNAME
) -> dict[str, Any]:
    """One Celery event's fields, as its receivers read them."""
    return {
        "hostname": hostname,
        "utcoffset": 0.0,
        "pid": os.getpid(),
        "clock": 0,
        **fields,
        "timestamp": time.time(),
        "type": event_type,
    }


def group_envelope(*, hostname: str = HOSTNAME) -> tuple[str, str]:
    """The kombu envelope of a group of task events, as JSON text split where the events go.

    A script joins the events it publishes (each :func:`task_sent_body`) into a JSON list and puts
    that list, as a JSON string, between the two parts: the body is not base64-encoded (kombu
    decodes a body without ``body_encoding`` as it is), so Lua needs no base64. Each call has a
    delivery tag of its own; the rest is built once per host name.
    """
    head, tail = _group_template(hostname)
    return head, tail.replace(_TAG, new_id(), 1)


def group_envelope_arg(*, hostname: str = HOSTNAME) -> Raw:
    """:func:`group_envelope` as a script's ``events`` argument: ``{"head": ..., "tail": ...}``, encoded.

    Encoded once per host name; each call puts in a delivery tag of its own (a UUID: no character
    of it needs escaping in JSON, so the encoded text takes it as it is).
    """
    return Raw(_group_arg_template(hostname).replace(_TAG, new_id(), 1))


@functools.cache
def _group_arg_template(hostname: str) -> str:
    head, tail = _group_template(hostname)
    return str(raw({"head": head, "tail": tail}))


@functools.cache
def _group_template(hostname: str) -> tuple[str, str]:
    """:func:`group_envelope`'s two parts, its delivery tag left as a placeholder."""
    envelope = {
        "body": _EVENTS,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": hostname},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": EXCHANGE, "routing_key": TASK_GROUP},
            "priority": 0,
            "delivery_tag": _TAG,
        },
    }
    head, tail = json.dumps(envelope, separators=(",", ":")).split(json.dumps(_EVENTS))
    return head, tail


def event_message(event_type: TaskEvent, fields: Mapping[str, Any], *, hostname: str = HOSTNAME) -> str:
    """The kombu envelope of one Celery event, as JSON text."""
    body = event_body(event_type, fields, hostname=hostname)
    envelope = {
        "body": base64.b64encode(json.dumps(body, default=str).encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": hostname},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": EXCHANGE, "routing_key": event_type.replace("-", ".")},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": new_id(),
        },
    }
    return json.dumps(envelope, separators=(",", ":"))


def task_sent(
    task_id: str,
    kwargs: Mapping[str, Any],
    *,
    queue: str,
    retries: int = 0,
    eta: float | None = None,
    parent_id: str | None = None,
) -> str:
    """``task-sent``: a stop accepted (or published again), with its ETA when it waits.

    ``parent_id``: the task id of the dead stop a replay replays (Flower links to it).
    """
    return event_message(
        TaskEvent.SENT,
        _sent_fields(task_id, kwargs, queue=queue, retries=retries, eta=eta, parent_id=parent_id),
    )


def task_sent_body(
    task_id: str,
    kwargs: Mapping[str, Any],
    *,
    queue: str,
    eta: float | None = None,
    parent_id: str | None = None,
) -> str:
    """``task-sent`` as one event of a group (:func:`group_envelope`): its fields' JSON text."""
    body = event_body(
        TaskEvent.SENT, _sent_fields(task_id, kwargs, queue=queue, retries=0, eta=eta, parent_id=parent_id)
    )
    return _dumps(body)


def _sent_fields(
    task_id: str,
    kwargs: Mapping[str, Any],
    *,
    queue: str,
    retries: int,
    eta: float | None,
    parent_id: str | None,
) -> dict[str, Any]:
    return {
        "uuid": task_id,
        "name": TASK_NAME,
        "args": "()",
        "kwargs": repr(dict(kwargs)),
        "retries": retries,
        "eta": None if eta is None else datetime.fromtimestamp(eta, UTC).isoformat(),
        "expires": None,
        "queue": queue,
        "exchange": "",
        "routing_key": queue,
        "root_id": task_id,
        "parent_id": parent_id,
    }


def task_retried(task_id: str, exception: str) -> str:
    """``task-retried``: a retry waiting in the schedule, what failed and when (``RetryScheduled``)."""
    return event_message(TaskEvent.RETRIED, {"uuid": task_id, "exception": exception, "traceback": None})


def task_revoked(task_id: str) -> str:
    """``task-revoked``: the run of ``task_id`` cancelled (published by ``cancel.lua`` when it cancels)."""
    return event_message(TaskEvent.REVOKED, {"uuid": task_id, "terminated": False, "expired": False})
