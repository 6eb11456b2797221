"""The app factory: a Celery app wired to a worker's collaborators, built from one settings object."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from celery import Celery, bootsteps
from redis.exceptions import RedisError

from recstop.worker.broker.transport import AMQP
from recstop.worker.celeryapp.announce import announce
from recstop.worker.celeryapp.celeryconf import celery_config
from recstop.worker.celeryapp.consumer import consumer_class
from recstop.worker.celeryapp.tasks import register_tasks
from recstop.worker.config.settings import WORKER_HEARTBEAT_S, Settings
from recstop.worker.run.runtime import Runtime, build_runtime
from recstop.worker.state import keys


def create_app(settings: Settings, *, runtime: Runtime | None = None, main: str = "recstop") -> Celery:
    """Build the Celery app for ``settings``; ``runtime`` overrides the collaborators built from them."""
    runtime = runtime or build_runtime(settings)
    app = Celery(main, amqp=AMQP, set_as_current=False)  # AMQP: keeps recstop's transport on failover
    app.conf.update(celery_config(settings))
    # The consumer (poison messages are dead-lettered) gets its collaborators as class attributes.
    app.conf.worker_consumer = consumer_class(
        runtime.deadletters,
        runtime.redactor,
        runtime.store,
        default_auth_id=runtime.settings.accounts.default_auth_id,
    )
    register_tasks(app, runtime.executor, runtime.deadletters)
    app.steps["worker"].add(scheduler_step(runtime))
    return app


def scheduler_step(runtime: Runtime) -> type[bootsteps.StartStopStep]:
    """A worker bootstep running the scheduler, the confirmer and the heartbeat inside the worker process."""

    class SchedulerStep(bootsteps.StartStopStep):  # type: ignore[misc]
        """Runs the scheduler loop, the confirmer and the heartbeat inside every worker process."""

        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:  # noqa: ANN401
            super().__init__(worker, **kwargs)
            self.hostname = getattr(worker, "hostname", None) or socket.gethostname()
            self.scheduler = runtime.scheduler()
            self.scheduler.on_tick = self.heartbeat
            self.confirmer = runtime.confirmer()
            self._last_beat = 0.0

        def heartbeat(self) -> None:
            now = time.time()
            if now - self._last_beat >= WORKER_HEARTBEAT_S:
                runtime.redis.hset(keys.WORKERS, self.hostname, f"{now:.3f}")
                self._last_beat = now

        def start(self, _worker: Any) -> None:  # noqa: ANN401
            # A monitor that was there before this worker lists the stops waiting in Redis.
            announce(runtime.store)
            self.scheduler.start()
            if self.confirmer is not None:
                self.confirmer.start()

        def stop(self, _worker: Any) -> None:  # noqa: ANN401
            if self.confirmer is not None:
                self.confirmer.stop()
            self.scheduler.stop()
            with contextlib.suppress(RedisError):  # best effort: the entry goes stale anyway
                runtime.redis.hdel(keys.WORKERS, self.hostname)

    return SchedulerStep
