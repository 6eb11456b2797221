"""The app factory: a Celery app and its collaborators, built from one settings object."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery, bootsteps
from redis import Redis
from redis.exceptions import RedisError

from worker import keys
from worker.config import celery_config
from worker.connection import redis_client
from worker.deadletters import DeadLetters
from worker.execute import Executor
from worker.publish import publish_stop
from worker.ratelimit import RateLimiter, RateLimitSettings
from worker.redaction import Redactor
from worker.scheduler import Scheduler
from worker.settings import Settings
from worker.store import Due, StopStore
from worker.tasks import register_tasks
from worker.vobiz import VobizClient


@dataclass(frozen=True)
class Runtime:
    """The collaborators of a worker process, reachable from the app as ``app.recstop``."""

    settings: Settings
    redis: Redis
    store: StopStore
    deadletters: DeadLetters
    executor: Executor


def lock_ttl_ms(settings: Settings) -> int:
    """A key's lock outlives the longest possible API call by a margin."""
    return int(settings.lock_ttl_s * 1000)


def create_app(settings: Settings, *, redis: Redis | None = None, main: str = "recstop") -> Celery:
    """Build the Celery app for ``settings``; ``redis`` overrides the state-store connection."""
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_config(settings))
    client = redis or redis_client(settings.redis)
    redactor = Redactor(settings.accounts.secrets())
    store = StopStore(client, settings.retry, settings.retention, watchdog_s=settings.watchdog_s)
    deadletters = DeadLetters(client, settings.retention, redactor)
    executor = Executor(
        store=store,
        api=VobizClient(settings.api, pool_size=settings.concurrency),
        accounts=settings.accounts,
        policy=settings.retry,
        redactor=redactor,
        lock_ttl_ms=lock_ttl_ms(settings),
        limiter=RateLimiter(client, RateLimitSettings(rate_rps=settings.rate_limit_rps)),
    )
    register_tasks(app, executor, deadletters)
    runtime = Runtime(settings, client, store, deadletters, executor)
    app.recstop = runtime
    app.steps["worker"].add(_scheduler_step(app, runtime))
    return app


def _scheduler_step(app: Celery, runtime: Runtime) -> type[bootsteps.StartStopStep]:
    def publish(due: Due) -> None:
        queue = keys.URGENT_QUEUE if due.urgent else keys.QUEUE
        publish_stop(app, due.task_id, due.kwargs, retries=due.attempts, queue=queue)

    class SchedulerStep(bootsteps.StartStopStep):  # type: ignore[misc]
        """Runs the scheduler loop and the heartbeat inside every worker process."""

        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:  # noqa: ANN401
            super().__init__(worker, **kwargs)
            self.hostname = getattr(worker, "hostname", None) or socket.gethostname()
            self.scheduler = Scheduler(
                runtime.store, publish, poll_s=runtime.settings.scheduler_poll_s, on_tick=self.heartbeat
            )
            self._last_beat = 0.0

        def heartbeat(self) -> None:
            now = time.time()
            if now - self._last_beat >= 2.0:  # noqa: PLR2004
                runtime.redis.hset(keys.WORKERS, self.hostname, f"{now:.3f}")
                self._last_beat = now

        def start(self, _worker: Any) -> None:  # noqa: ANN401
            self.scheduler.start()

        def stop(self, _worker: Any) -> None:  # noqa: ANN401
            self.scheduler.stop()
            with contextlib.suppress(RedisError):  # best effort: the entry goes stale anyway
                runtime.redis.hdel(keys.WORKERS, self.hostname)

    return SchedulerStep
