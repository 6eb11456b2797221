"""The confirmer: looks up the recordings of stopped stops until Vobiz reports that each one ended.

Every worker process runs one, beside its scheduler: a loop that leases the stops whose lookup is
due (``state.confirmations``) and hands each to a small thread pool of its own
(``RECSTOP_CONFIRM_CONCURRENCY``), so a lookup never takes a thread from a stop. Stops come first:
while messages wait in the lanes (every worker is busy with stops) no lookup starts, so a backlog
drains at full speed and its confirmations follow; a lookup takes a rate-limit slot only when one is
free at once (DELETEs reserve theirs ahead), and yields to an urgent stop in the process. One lookup
reads every page of the call's list (``api.client.VobizClient.call_recordings``); its verdict
(``api.confirmation.judge``) is recorded by one script: look again after a backoff, or settled.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import structlog
from redis.exceptions import RedisError

from recstop.worker.api.client import LookupFailed, VobizClient
from recstop.worker.api.confirmation import judge, next_lookup_s
from recstop.worker.config.confirm import ConfirmSettings
from recstop.worker.config.credentials import Accounts
from recstop.worker.config.redis import RedisSettings
from recstop.worker.model.redaction import Redactor
from recstop.worker.model.vocabulary import Confirmation, DeadReason, State, http_reason
from recstop.worker.policy.priority import URGENT_FIRST, UrgentFirst
from recstop.worker.policy.ratelimit import RateLimiter
from recstop.worker.state.confirmations import Confirmations, Job
from recstop.worker.state.problems import redis_unavailable

log = structlog.get_logger("recstop.confirm")

#: A lookup that found no free rate-limit slot waits at least this long before it asks again.
NO_SLOT_WAIT_S: Final = 0.25
#: Longest pause of the loop while nothing is due (it also wakes when a lookup finishes).
IDLE_S: Final = 0.5
#: The reason of a lookup the API refused for its rate: the account's limit then slows down.
TOO_MANY: Final = http_reason(429)
#: Longest pause after a Redis error (the pause doubles from ``IDLE_S`` up to this).
MAX_BACKOFF_S: Final = 8.0


@dataclass(frozen=True)
class Looker:
    """One lookup of one stop and its verdict recorded: plain code, called on a pool thread."""

    confirmations: Confirmations
    api: VobizClient
    accounts: Accounts
    limiter: RateLimiter
    redactor: Redactor
    settings: ConfirmSettings
    priority: UrgentFirst = URGENT_FIRST

    def __call__(self, job: Job, *, now: float) -> Confirmation | None:
        """Look the stop's recordings up once and record it; the confirmation if it settled."""
        auth_id = job.auth_id or self.accounts.default_auth_id
        token = self.accounts.token_for(auth_id) if auth_id else None
        if auth_id is None or token is None:  # cannot happen for a stop that was stopped: say why
            error = f"no credentials configured for account {auth_id!r}"
            reply = self.confirmations.record(
                job,
                looked_up=False,
                next_s=0.0,
                confirmation=Confirmation.UNCONFIRMED,
                reason=DeadReason.UNKNOWN_ACCOUNT,
                error=error,
            )
            return Confirmation.UNCONFIRMED if reply.settled else None
        self.priority.yield_to_urgent()
        if self.limiter.enabled:
            grant = self.limiter.spare_slot(auth_id)
            if not grant.reserved:
                self.confirmations.record(job, looked_up=False, next_s=max(grant.wait_s, NO_SLOT_WAIT_S))
                return None
        lookup = self.api.call_recordings(auth_id=auth_id, token=token, call_uuid=job.call_uuid)
        verdict = judge(
            lookup,
            url=job.url,
            already_stopped=job.state is State.ALREADY_STOPPED,
            deadline_passed=now >= job.confirm_until,
        )
        if isinstance(lookup, LookupFailed) and lookup.reason == TOO_MANY and self.limiter.enabled:
            self.limiter.penalize(auth_id)
        reply = self.confirmations.record(
            job,
            looked_up=True,
            next_s=next_lookup_s(job.lookups + 1, self.settings),
            confirmation=verdict.confirmation,
            reason=verdict.reason,
            error=self.redactor.text(verdict.error),
            recordings=verdict.recordings,
        )
        if reply.settled and verdict.confirmation is not None:
            emit = log.warning if verdict.confirmation is Confirmation.UNCONFIRMED else log.info
            emit(
                "recordings_confirmation",
                task_id=job.task_id,
                call_uuid=job.call_uuid,
                confirmation=str(verdict.confirmation),
                reason=verdict.reason or None,
                recordings=len(verdict.recordings),
            )
            return verdict.confirmation
        return None


class Confirmer:
    """The loop: lease due stops, look each up on the pool, never more in flight than the pool holds."""

    def __init__(
        self, confirmations: Confirmations, looker: Looker, *, concurrency: int, redis: RedisSettings
    ) -> None:
        self.confirmations = confirmations
        self.looker = looker
        self.concurrency = concurrency
        self.redis = redis
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def run_once(self) -> float | None:
        """Lease what is due (as many as the pool has room for) and start their lookups.

        Returns seconds until the next stop is due (None: none is waiting).
        """
        with self._lock:
            room = self.concurrency - self._in_flight
        if room <= 0 or self.confirmations.backlog() > 0:
            return IDLE_S
        claimed = self.confirmations.claim_due(room)
        jobs = self.confirmations.jobs(claimed.leases)
        now = time.time()  # deadlines are Redis time: hosts' clocks agree within seconds
        for job in jobs:
            with self._lock:
                self._in_flight += 1
            assert self._pool is not None
            self._pool.submit(self._look, job, now)
        return 0.0 if len(claimed.leases) >= room else claimed.wait_s

    def _look(self, job: Job, now: float) -> None:
        try:
            self.looker(job, now=now)
        except RedisError as exc:  # the lease expires and the stop is looked up again
            log.warning("confirm_lookup_unrecorded", task_id=job.task_id, error=type(exc).__name__)
        except Exception:
            log.exception("confirm_lookup_failed", task_id=job.task_id)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake.set()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                wait_s = self.run_once()
            except RedisError as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:  # bounded: the first, then every tenth
                    error = redis_unavailable(self.redis, exc)
                    log.warning("confirmer_redis_error", error=error, failures=failures)
                self._stop.wait(min(MAX_BACKOFF_S, IDLE_S * 2**failures))
                continue
            if failures:
                log.info("confirmer_redis_back", failures=failures)
                failures = 0
            pause = IDLE_S if wait_s is None else min(IDLE_S, max(wait_s, 0.0))
            if pause > 0:
                self._wake.wait(pause)
            self._wake.clear()

    def start(self) -> None:
        """Run the loop and the pool (daemon threads)."""
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="recstop-confirm")
        self._thread = threading.Thread(target=self._loop, name="recstop-confirmer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop leasing; lookups in flight finish (their leases cover them if they do not)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
