"""Publishing stop messages: the one place that turns a stop into a Celery message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from celery import Celery

from worker.keys import QUEUE, TASK_NAME

#: Bounded publish retries: a producer gets a clear error within seconds, never hangs.
PUBLISH_RETRY_POLICY: Final[Mapping[str, float]] = {
    "max_retries": 2,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.5,
}


def publish_stop(
    app: Celery, task_id: str, kwargs: Mapping[str, Any], *, retries: int = 0, queue: str = QUEUE
) -> None:
    """Send one ``recstop.stop_recording`` message (JSON, keyword arguments only) to ``queue``."""
    app.send_task(
        TASK_NAME,
        kwargs=dict(kwargs),
        task_id=task_id,
        queue=queue,
        routing_key=queue,
        retries=retries,
        retry=True,
        retry_policy=dict(PUBLISH_RETRY_POLICY),
        ignore_result=True,
    )
