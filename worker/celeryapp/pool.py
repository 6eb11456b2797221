"""Celery's thread pool, which at shutdown hands back the messages whose task has not started.

On a warm shutdown Celery's pool cancels the tasks still waiting for a thread and waits for the
running ones, and only then closes the broker connection, which is when a transport hands back
what was not acknowledged: a stop waiting behind a long API call would wait that long. Here each
cancelled task's message goes back to the head of its lane at the moment it is cancelled
(``worker.transport.Channel.hand_back``), so another worker takes it at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import structlog
from celery.concurrency import thread
from redis.exceptions import RedisError

log = structlog.get_logger("recstop.pool")


class ThreadPool(thread.TaskPool):  # type: ignore[misc]
    """``worker_pool``: threads, and unstarted tasks handed back at shutdown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._waiting: dict[Future[Any], Any] = {}

    def on_apply(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - Celery's signature
        """Run the task on a thread; remember its request until the thread has it."""
        result = super().on_apply(*args, **kwargs)
        request = getattr(kwargs.get("callback"), "__self__", None)
        if request is not None:
            with self._lock:
                self._waiting[result.f] = request
            result.f.add_done_callback(self._done)
        return result

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            request = self._waiting.pop(future, None)
        if request is not None and future.cancelled():
            _hand_back(request)


def _hand_back(request: Any) -> None:  # noqa: ANN401 - a celery.worker.request.Request
    message = request.message
    hand_back = getattr(message.channel, "hand_back", None)
    if hand_back is None or message.acknowledged:
        return
    try:
        hand_back(message.delivery_tag)
    except RedisError as exc:
        # The message stays in the consumer's in-flight list: the channel hands it back when it
        # closes, or a live worker does once this one's heartbeat stops.
        log.warning("hand_back_failed", task_id=request.id, error=type(exc).__name__)
        return
    log.info("message_handed_back", task_id=request.id)
