"""Stops published with plain Celery: ``send_task`` to the stack's Redis, no recstop code on the way.

This is how a service that knows only the task's name and arguments publishes a stop (compare
``harness.procs.publish_raw``): no status record, no watchdog, nothing but the message in the lane
until a worker takes it. Each sending thread gets its own app (``PlainCelery.sender``).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Self

from celery import Celery

from recstop.worker.state.keys import QUEUE, TASK_NAME, URGENT_QUEUE


@dataclass(frozen=True)
class Sent:
    """The task id a plain ``send_task`` gave its message."""

    task_id: str


class PlainSender:
    """One Celery app (its own broker connection) that sends ``recstop.stop_recording`` messages."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery("chaos-plain", broker=broker_url, set_as_current=False)
        self.app.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)

    def stop_recording(self, call_uuid: str, *, auth_id: str | None = None, urgent: bool = False) -> Sent:
        """``send_task`` with the call and the account, to the routine (or urgent) lane."""
        kwargs = {"call_uuid": call_uuid, "auth_id": auth_id}
        task_id = str(uuid.uuid4())
        queue = URGENT_QUEUE if urgent else QUEUE
        self.app.send_task(TASK_NAME, kwargs=kwargs, task_id=task_id, queue=queue)
        return Sent(task_id)

    def close(self) -> None:
        """Close the app's connections."""
        self.app.close()


class PlainCelery:
    """Makes plain senders for one broker and closes them all at the end; a context manager."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self._senders: list[PlainSender] = []
        self._lock = threading.Lock()

    def sender(self) -> PlainSender:
        """A new sender (one per sending thread)."""
        sender = PlainSender(self.broker_url)
        with self._lock:
            self._senders.append(sender)
        return sender

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            senders, self._senders = self._senders, []
        for sender in senders:
            sender.close()
