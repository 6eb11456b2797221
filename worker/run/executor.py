"""One attempt at one stop, in plain code (no Celery): admit, call the API, record the outcome."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from recstop.worker.api.classify import Classification
from recstop.worker.api.client import VobizClient
from recstop.worker.config.credentials import Accounts
from recstop.worker.config.secrets import Secret
from recstop.worker.config.settings import RetryPolicy
from recstop.worker.model.ids import new_id
from recstop.worker.model.redaction import Redactor
from recstop.worker.model.validation import StopRequest
from recstop.worker.model.vocabulary import DeadReason, Decision, Outcome, Sidelined, State, http_reason
from recstop.worker.policy.backoff import retry_delay
from recstop.worker.policy.priority import URGENT_FIRST, UrgentFirst
from recstop.worker.policy.ratelimit import RateLimiter
from recstop.worker.state.attempts import AttemptRecord, Attempts, Finished
from recstop.worker.state.deadletters import encode_payload, new_entry_id
from recstop.worker.state.inflight import Fetched
from recstop.worker.state.keys import TASK_NAME

log = structlog.get_logger("recstop.execute")


@dataclass(frozen=True)
class RunResult:
    """What one task run did to its stop: the stop's state afterwards, or why it did nothing."""

    state: State | Sidelined
    detail: str = ""
    attempt: int | None = None
    http_status: int | None = None
    error: str = ""
    #: The task's message was acknowledged with the outcome (``finish`` took it off the in-flight list).
    acked: bool = False


@dataclass
class _Run:
    """The working state of one task run, filled in as the attempt proceeds."""

    request: StopRequest
    task_id: str
    lock_token: str
    attempt: int
    #: The account the attempt is made with (the message's, else the worker's default).
    auth_id: str | None = None
    #: The message as a dead letter would keep it; only built when the stop may end up there.
    payload: str = ""
    http_status: int | None = None
    error: str = ""
    started_at: float = 0.0
    attempt_record: dict[str, Any] | None = None
    ack: Fetched | None = None

    def record(self, *, delay_s: float = 0.0, reason: str = "", dlq_id: str = "") -> AttemptRecord:
        """What ``Attempts.finish`` records of this run."""
        return AttemptRecord(
            attempt=self.attempt_record,
            http_status=self.http_status,
            error=self.error,
            delay_s=delay_s,
            reason=reason,
            dlq_id=dlq_id,
            payload=self.payload,
            started_at=self.started_at,
        )


@dataclass(frozen=True)
class Executor:
    """Everything one attempt needs, passed in explicitly."""

    attempts: Attempts
    api: VobizClient
    accounts: Accounts
    policy: RetryPolicy
    redactor: Redactor
    lock_ttl_ms: int
    limiter: RateLimiter
    #: Longest wait for a rate-limit slot before the message goes back to the queue.
    rate_wait_s: float
    #: Routine stops pause between steps while an urgent one is in this process.
    priority: UrgentFirst = URGENT_FIRST
    rand: Callable[[], float] = random.random

    def run(
        self, request: StopRequest, task_id: str, *, urgent: bool = False, ack: Fetched | None = None
    ) -> RunResult:
        """Run the stop once: skip duplicates, else call the API and record the outcome.

        ``ack``: the task's message as fetched, acknowledged with the outcome when one is recorded.

        With a rate limit, the call first waits for the account's next slot (before taking the
        stop's lock, so a long wait holds nothing); an urgent stop never queues behind routine ones.
        Raises :class:`RateLimitWaitTooLong` when no slot comes within ``rate_wait_s``.
        """
        if urgent:
            with self.priority.urgent(task_id):
                return self._run(request, task_id, urgent=True, ack=ack)
        return self._run(request, task_id, urgent=False, ack=ack)

    def _run(self, request: StopRequest, task_id: str, *, urgent: bool, ack: Fetched | None) -> RunResult:
        limited = request.auth_id or self.accounts.default_auth_id
        if self.limiter.enabled and limited is not None:
            waited_s = self.limiter.wait_for_slot(limited, urgent=urgent, deadline_s=self.rate_wait_s)
            structlog.contextvars.bind_contextvars(rate_wait_ms=round(waited_s * 1000, 1))
        token = f"{task_id}:{new_id()[:12]}"
        self._step(urgent=urgent)
        admission = self.attempts.begin(
            request,
            task_id,
            lock_token=token,
            lock_ttl_ms=self.lock_ttl_ms,
            consumer=ack.consumer if ack is not None else None,
            default_auth_id=self.accounts.default_auth_id,
        )
        if admission.decision is Decision.SKIP:
            log.info("stop_skipped", reason=admission.detail)
            return RunResult(Sidelined.SKIPPED, admission.detail)
        if admission.decision is Decision.CANCELLED:
            log.info("stop_cancelled", reason=admission.detail)
            return RunResult(State.CANCELLED, admission.detail)
        attempt = admission.attempts + 1
        auth_id = admission.auth_id or request.auth_id or self.accounts.default_auth_id
        structlog.contextvars.bind_contextvars(attempt=attempt, auth_id=auth_id)
        run = _Run(request, task_id, token, attempt, auth_id=auth_id, ack=ack)
        if admission.decision is Decision.EXPIRED:
            return self._dead(run, DeadReason.DEADLINE, "not_after passed before the attempt")
        secret = self.accounts.token_for(auth_id) if auth_id else None
        if auth_id is None or secret is None:
            return self._dead(
                run, DeadReason.UNKNOWN_ACCOUNT, f"no credentials configured for account {auth_id!r}"
            )
        self._step(urgent=urgent)
        verdict = self._attempt(run, auth_id, secret)
        self._step(urgent=urgent)
        return self._settle(run, verdict)

    def _step(self, *, urgent: bool) -> None:
        """A step boundary: a routine stop waits here while an urgent one runs."""
        if not urgent:
            self.priority.yield_to_urgent()

    def _settle(self, run: _Run, verdict: Classification) -> RunResult:
        """Record the attempt's outcome: stopped, retry after a backoff, or dead-lettered."""
        if verdict.succeeded:
            finished = self._finish(run, verdict.outcome, run.record())
            self._log_attempt(run, finished)
            return self._result(run, finished)
        run.payload = self._payload(run.request, run.task_id)  # a retry may pass its deadline: dead
        if verdict.outcome is Outcome.DEAD:
            if verdict.http_status in {401, 403}:  # the account or token is wrong, not the stop
                log.error("credentials_rejected", http_status=run.http_status, error=run.error)
            return self._dead(run, http_reason(run.http_status), run.error)
        if run.attempt >= self.policy.max_attempts:
            return self._dead(run, DeadReason.ATTEMPTS_EXHAUSTED, run.error)
        return self._retry(run, verdict)

    def _attempt(self, run: _Run, auth_id: str, secret: Secret) -> Classification:
        """Call the API once; fill in the run's attempt record; return the verdict."""
        started_at = time.time()
        clock = time.perf_counter()
        request = run.request
        verdict = self.api.stop_recording(
            auth_id=auth_id, token=secret, call_uuid=request.call_uuid, url=request.url
        )
        if verdict.http_status == 429 and self.limiter.enabled:  # noqa: PLR2004 - the API's own limit hit
            rate = self.limiter.penalize(auth_id, retry_after_s=verdict.retry_after_s)
            log.warning("rate_limit_lowered", rate_rps=round(rate, 1))
        run.http_status = verdict.http_status
        run.error = self.redactor.text(verdict.error)
        duration_ms = round((time.perf_counter() - clock) * 1000, 1)
        run.started_at = started_at
        run.attempt_record = {
            "attempt": run.attempt,
            "at": round(started_at, 3),
            "outcome": str(verdict.outcome),
            "http_status": run.http_status,
            "error": run.error or None,
            "duration_ms": duration_ms,
        }
        return verdict

    @staticmethod
    def _log_attempt(run: _Run, finished: Finished, **extra: object) -> None:
        """The one log line of an attempt, once its outcome is recorded (warning when the stop died)."""
        record = run.attempt_record or {}
        emit = log.warning if finished.state is State.DEAD else log.info
        emit(
            "attempt",
            outcome=record.get("outcome"),
            http_status=run.http_status,
            duration_ms=record.get("duration_ms"),
            error=run.error or None,
            state=str(finished.state),
            **extra,
        )

    def _retry(self, run: _Run, verdict: Classification) -> RunResult:
        delay_s = retry_delay(
            run.attempt,
            base_s=self.policy.backoff_base_s,
            cap_s=self.policy.backoff_cap_s,
            jitter=self.policy.jitter,
            retry_after_s=verdict.retry_after_s,
            retry_after_cap_s=self.policy.retry_after_cap_s,
            rand=self.rand,
        )
        if run.attempt_record is not None:
            # Kept in the attempt log, so the gap before the next attempt can be checked.
            run.attempt_record["retry_in_s"] = round(delay_s, 3)
            if verdict.retry_after_s is not None:  # the API's wait, as honoured (counted in metrics)
                run.attempt_record["retry_after_s"] = min(
                    verdict.retry_after_s, self.policy.retry_after_cap_s
                )
        finished = self._finish(run, Outcome.RETRY, run.record(delay_s=delay_s, dlq_id=new_entry_id()))
        if finished.state is State.DEAD:
            self._log_attempt(run, finished, reason=finished.detail)
        else:
            self._log_attempt(run, finished, retry_in_s=round(delay_s, 3))
        return self._result(run, finished)

    def _dead(self, run: _Run, reason: str, error: str) -> RunResult:
        run.payload = run.payload or self._payload(run.request, run.task_id)
        run.error = error
        finished = self._finish(run, Outcome.DEAD, run.record(reason=reason, dlq_id=new_entry_id()))
        if run.attempt_record is None:  # given up before calling the API
            log.warning("stop_dead", reason=finished.detail or reason, error=error, state=str(finished.state))
        else:
            self._log_attempt(run, finished, reason=finished.detail or reason)
        return RunResult(
            finished.state,
            finished.detail or reason,
            run.attempt,
            run.http_status,
            error,
            acked=run.ack is not None,
        )

    def _finish(self, run: _Run, outcome: Outcome, record: AttemptRecord) -> Finished:
        return self.attempts.finish(
            run.request,
            run.task_id,
            lock_token=run.lock_token,
            outcome=outcome,
            record=record,
            ack=run.ack,
            auth_id=run.auth_id,
        )

    @staticmethod
    def _result(run: _Run, finished: Finished) -> RunResult:
        return RunResult(
            finished.state,
            finished.detail,
            run.attempt,
            run.http_status,
            run.error,
            acked=run.ack is not None,
        )

    def _payload(self, request: StopRequest, task_id: str) -> str:
        return encode_payload(
            {"task": TASK_NAME, "id": task_id, "kwargs": request.to_kwargs()}, self.redactor
        )
