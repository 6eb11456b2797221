"""A worker's collaborators, built from one settings object and one Redis client, passed explicitly.

``worker.app.create_app`` wires them into Celery (the task, the consumer, the scheduler step);
the in-process test harness drives the same objects without a Celery process.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from recstop.worker.api.client import VobizClient
from recstop.worker.config.settings import Settings
from recstop.worker.model.redaction import Redactor
from recstop.worker.policy.ratelimit import RateLimiter
from recstop.worker.run.confirmer import Confirmer, Looker
from recstop.worker.run.executor import Executor
from recstop.worker.run.scheduler import Scheduler
from recstop.worker.state.confirmations import Confirmations
from recstop.worker.state.deadletters import DeadLetters
from recstop.worker.state.redisclient import redis_client
from recstop.worker.state.store import StopStore


@dataclass(frozen=True)
class Runtime:
    """Everything a worker process runs a stop with."""

    settings: Settings
    redis: Redis
    redactor: Redactor
    store: StopStore
    deadletters: DeadLetters
    executor: Executor

    def scheduler(self) -> Scheduler:
        """A scheduler loop over this runtime's store (not started)."""
        return Scheduler(self.store.schedule, poll_s=self.settings.scheduler_poll_s)

    def confirmer(self) -> Confirmer | None:
        """The loop that confirms stopped recordings ended (not started); None when confirmation is off."""
        confirm = self.settings.confirm
        if not confirm.enabled:
            return None
        confirmations = Confirmations(self.store.ctx, confirm)
        looker = Looker(
            confirmations,
            self.executor.api,
            self.settings.accounts,
            self.executor.limiter,
            self.redactor,
            confirm,
        )
        return Confirmer(confirmations, looker, concurrency=confirm.concurrency, redis=self.settings.redis)

    def close(self) -> None:
        """Release the API connection pool and the Redis connections."""
        self.executor.api.close()
        self.redis.close()


def build_runtime(settings: Settings, redis: Redis | None = None) -> Runtime:
    """The collaborators for ``settings``; ``redis`` overrides the state-store connection."""
    client = redis or redis_client(settings.redis)
    redactor = Redactor(settings.secrets())
    store = StopStore.for_settings(client, settings)
    executor = Executor(
        attempts=store.attempts,
        api=VobizClient(settings.api, concurrency=settings.concurrency),
        accounts=settings.accounts,
        policy=settings.retry,
        redactor=redactor,
        lock_ttl_ms=int(settings.lock_ttl_s * 1000),
        limiter=RateLimiter(client, settings.rate_limit),
        rate_wait_s=settings.rate_limit.max_wait_s,
    )
    return Runtime(
        settings, client, redactor, store, DeadLetters(client, settings.retention, redactor), executor
    )
