"""The stop store: every state transition of a stop, each one an atomic script on the call's key.

One object per process holds the parts, split by transition, over one :class:`StoreContext`:

- ``enqueues`` (``state.enqueue``): a new run recorded and its message pushed (producers, replays,
  received ETA messages);
- ``attempts`` (``state.attempts``): a message admitted and its attempt's outcome recorded;
- ``schedule`` (``state.schedule``): due entries leased and published (the scheduler loop);
- ``cancels`` (``state.cancels``): a stop cancelled, or the run of a task id revoked;

and :meth:`StopStore.status` reads a stop's record.
"""

from __future__ import annotations

from redis import Redis

from recstop.worker.config.confirm import ConfirmSettings
from recstop.worker.config.producer import ProducerSettings
from recstop.worker.config.redis import RedisSettings
from recstop.worker.config.settings import Retention, RetryPolicy, Settings
from recstop.worker.model.status import StatusRecord
from recstop.worker.state.attempts import Attempts
from recstop.worker.state.cancels import Cancels
from recstop.worker.state.context import StoreContext, read_status
from recstop.worker.state.enqueue import Enqueues
from recstop.worker.state.schedule import Schedule


class StopStore:
    """Status records, the schedule and per-stop locks; the connection and settings are passed in."""

    def __init__(
        self,
        client: Redis,
        retry: RetryPolicy,
        retention: Retention,
        *,
        redis_settings: RedisSettings,
        watchdog_s: float,
        audit_max: int,
        confirm: ConfirmSettings | None = None,
    ) -> None:
        """``confirm``: how a successful stop's recordings are confirmed (None: not at all, a producer)."""
        self.ctx = StoreContext(
            client=client,
            retry=retry,
            retention=retention,
            redis=redis_settings,
            watchdog_s=watchdog_s,
            audit_max=audit_max,
        )
        self.client = client
        self.cancels = Cancels(self.ctx)
        self.enqueues = Enqueues(self.ctx, self.cancels)
        self.attempts = Attempts(self.ctx, confirm)
        self.schedule = Schedule(self.ctx)

    @classmethod
    def for_settings(cls, client: Redis, settings: Settings | ProducerSettings) -> StopStore:
        """The store for one process's settings (a worker's, or a producer's)."""
        return cls(
            client,
            settings.retry,
            settings.retention,
            redis_settings=settings.redis,
            watchdog_s=settings.watchdog_s,
            audit_max=settings.audit.stream_max,
            confirm=settings.confirm if isinstance(settings, Settings) else None,
        )

    def status(self, call_uuid: str, url: str | None = None) -> StatusRecord | None:
        """The status record of a stop, or None when there is none (or it expired)."""
        return read_status(self.client, call_uuid, url)
