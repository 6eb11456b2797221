"""One attempt at one stop, in plain code (no Celery): admit, call the API, record the outcome."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from worker.backoff import retry_delay
from worker.deadletters import encode_payload, new_entry_id
from worker.errors import ApiError, PermanentApiError, RetryableApiError
from worker.keys import TASK_NAME
from worker.ratelimit import RateLimiter
from worker.redaction import Redactor
from worker.settings import Accounts, RetryPolicy, Secret
from worker.store import StopStore
from worker.validation import StopRequest
from worker.vobiz import VobizClient

log = structlog.get_logger("recstop.execute")


@dataclass(frozen=True)
class Outcome:
    """What happened to the stop in this task run."""

    state: str  # stopped | already_stopped | retrying | dead | cancelled | skipped | superseded
    detail: str = ""
    attempt: int | None = None
    http_status: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The task's JSON result (visible in Flower)."""
        return {
            "state": self.state,
            "detail": self.detail,
            "attempt": self.attempt,
            "http_status": self.http_status,
        }


@dataclass
class _Run:
    """The working state of one task run, filled in as the attempt proceeds."""

    request: StopRequest
    task_id: str
    lock_token: str
    attempt: int
    #: The message as a dead letter would keep it; only built when the stop may end up there.
    payload: str = ""
    result: str = ""
    http_status: int | None = None
    error: str = ""
    started_at: float = 0.0
    attempt_record: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        """The keyword arguments ``StopStore.finish`` takes from this run."""
        return {
            "lock_token": self.lock_token,
            "attempt": self.attempt_record,
            "http_status": self.http_status,
            "error": self.error,
            "payload": self.payload,
            "started_at": self.started_at,
        }


@dataclass(frozen=True)
class Executor:
    """Everything one attempt needs, passed in explicitly."""

    store: StopStore
    api: VobizClient
    accounts: Accounts
    policy: RetryPolicy
    redactor: Redactor
    lock_ttl_ms: int
    limiter: RateLimiter
    #: Longest wait for a rate-limit slot before the message goes back to the queue.
    rate_wait_s: float = 30.0
    rand: Callable[[], float] = random.random

    def run(self, request: StopRequest, task_id: str, *, urgent: bool = False) -> Outcome:
        """Run the stop once: skip duplicates, else call the API and record the outcome.

        With a rate limit, the call first waits for the account's next slot (before taking the
        key's lock, so a long wait holds nothing); an urgent stop never queues behind routine ones.
        Raises :class:`RateLimitWaitTooLong` when no slot comes within ``rate_wait_s``.
        """
        limited = request.auth_id or self.accounts.default_auth_id
        if self.limiter.enabled and limited is not None:
            waited_s = self.limiter.wait_for_slot(limited, urgent=urgent, deadline_s=self.rate_wait_s)
            structlog.contextvars.bind_contextvars(rate_wait_ms=round(waited_s * 1000, 1))
        token = f"{task_id}:{uuid.uuid4().hex[:12]}"
        admission = self.store.begin(request, task_id, lock_token=token, lock_ttl_ms=self.lock_ttl_ms)
        if admission.decision == "skip":
            log.info("stop_skipped", reason=admission.detail)
            return Outcome("skipped", admission.detail)
        attempt = admission.attempts + 1
        auth_id = admission.auth_id or request.auth_id or self.accounts.default_auth_id
        structlog.contextvars.bind_contextvars(attempt=attempt, auth_id=auth_id)
        run = _Run(request, task_id, token, attempt)
        if admission.decision == "expired":
            return self._dead(run, "deadline", "not_after passed before the attempt")
        secret = self.accounts.token_for(auth_id) if auth_id else None
        if auth_id is None or secret is None:
            return self._dead(run, "unknown_account", f"no credentials configured for account {auth_id!r}")
        failure = self._attempt(run, auth_id, secret)
        if failure is None:
            state, detail = self.store.finish(request, task_id, result=run.result, **run.fields())
            log.info("stop_finished", state=state)
            return Outcome(state, detail, attempt, run.http_status)
        return self._failed(run, failure)

    def _failed(self, run: _Run, failure: ApiError) -> Outcome:
        """Dead-letter a permanent failure or the last attempt; schedule a retry otherwise."""
        run.payload = self._payload(run.request, run.task_id)  # a retry may pass its deadline: dead
        if isinstance(failure, PermanentApiError):
            if failure.is_credentials_problem:
                log.error("credentials_rejected", http_status=run.http_status, error=run.error)
            return self._dead(run, f"http_{run.http_status}", run.error)
        if run.attempt >= self.policy.max_attempts:
            return self._dead(run, "attempts_exhausted", run.error)
        return self._retry(run, failure)

    def _attempt(self, run: _Run, auth_id: str, secret: Secret) -> ApiError | None:
        """Call the API once; fill in the run's attempt record; return the failure, if any."""
        started_at = time.time()
        clock = time.perf_counter()
        request = run.request
        failure: ApiError | None = None
        try:
            verdict = self.api.stop_recording(
                auth_id=auth_id, token=secret, call_uuid=request.call_uuid, url=request.url
            )
        except ApiError as exc:
            failure = exc
            if exc.http_status == 429 and self.limiter.enabled:  # noqa: PLR2004 - the API's own limit hit
                rate = self.limiter.penalize(auth_id, retry_after_s=exc.retry_after_s)
                log.warning("rate_limit_lowered", rate_rps=round(rate, 1))
            run.result = "retry" if isinstance(exc, RetryableApiError) else "dead"
            run.http_status = exc.http_status
            run.error = self.redactor.text(exc.message)
        else:
            run.result, run.http_status = str(verdict.kind), verdict.http_status
        duration_ms = round((time.perf_counter() - clock) * 1000, 1)
        run.started_at = started_at
        run.attempt_record = {
            "attempt": run.attempt,
            "at": round(started_at, 3),
            "outcome": run.result,
            "http_status": run.http_status,
            "error": run.error or None,
            "duration_ms": duration_ms,
        }
        log.info(
            "attempt",
            outcome=run.result,
            http_status=run.http_status,
            duration_ms=duration_ms,
            error=run.error or None,
        )
        return failure

    def _retry(self, run: _Run, failure: ApiError) -> Outcome:
        delay_s = retry_delay(
            run.attempt,
            base_s=self.policy.backoff_base_s,
            cap_s=self.policy.backoff_cap_s,
            jitter=self.policy.jitter,
            retry_after_s=failure.retry_after_s,
            retry_after_cap_s=self.policy.retry_after_cap_s,
            rand=self.rand,
        )
        if run.attempt_record is not None:
            # Kept in the attempt log, so the gap before the next attempt can be checked.
            run.attempt_record["retry_in_s"] = round(delay_s, 3)
            if failure.retry_after_s is not None:  # the API's wait, as honoured (counted in metrics)
                run.attempt_record["retry_after_s"] = min(
                    failure.retry_after_s, self.policy.retry_after_cap_s
                )
        state, detail = self.store.finish(
            run.request, run.task_id, result="retry", delay_s=delay_s, dlq_id=new_entry_id(), **run.fields()
        )
        if state == "dead":
            log.warning("stop_dead", reason=detail, error=run.error)
        else:
            log.info("retry_scheduled", delay_s=round(delay_s, 3), state=state)
        return Outcome(state, detail, run.attempt, run.http_status)

    def _dead(self, run: _Run, reason: str, error: str) -> Outcome:
        run.payload = run.payload or self._payload(run.request, run.task_id)
        run.error = error
        state, detail = self.store.finish(
            run.request, run.task_id, result="dead", reason=reason, dlq_id=new_entry_id(), **run.fields()
        )
        log.warning("stop_dead", reason=detail or reason, error=error, state=state)
        return Outcome(state, detail or reason, run.attempt, run.http_status)

    def _payload(self, request: StopRequest, task_id: str) -> str:
        return encode_payload(
            {"task": TASK_NAME, "id": task_id, "kwargs": request.to_kwargs()}, self.redactor
        )
