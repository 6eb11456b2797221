"""One attempt at one stop, as a plain function: admit, call the API, record the outcome."""

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
from worker.redaction import Redactor
from worker.settings import Accounts, RetryPolicy
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


@dataclass(frozen=True)
class Executor:
    """Everything one attempt needs, passed in explicitly."""

    store: StopStore
    api: VobizClient
    accounts: Accounts
    policy: RetryPolicy
    redactor: Redactor
    lock_ttl_ms: int
    rand: Callable[[], float] = random.random

    def run(self, request: StopRequest, task_id: str) -> Outcome:
        """Run the stop once: skip duplicates, else call the API and record the outcome."""
        token = f"{task_id}:{uuid.uuid4().hex[:12]}"
        admission = self.store.begin(request, task_id, lock_token=token, lock_ttl_ms=self.lock_ttl_ms)
        if admission.decision == "skip":
            log.info("stop_skipped", reason=admission.detail)
            return Outcome("skipped", admission.detail)
        attempt = admission.attempts + 1
        auth_id = admission.auth_id or request.auth_id or self.accounts.default_auth_id
        structlog.contextvars.bind_contextvars(attempt=attempt, auth_id=auth_id)
        common: dict[str, Any] = {"lock_token": token, "payload": self._payload(request, task_id)}
        if admission.decision == "expired":
            return self._dead(
                request, task_id, attempt, None, "deadline", "not_after passed before the attempt", common
            )
        secret = self.accounts.token_for(auth_id) if auth_id else None
        if auth_id is None or secret is None:
            error = f"no credentials configured for account {auth_id!r}"
            return self._dead(request, task_id, attempt, None, "unknown_account", error, common)

        started_at = time.time()
        clock = time.perf_counter()
        try:
            verdict = self.api.stop_recording(
                auth_id=auth_id, token=secret, call_uuid=request.call_uuid, url=request.url
            )
        except ApiError as exc:
            failure: ApiError | None = exc
            result, http_status = ("retry" if isinstance(exc, RetryableApiError) else "dead"), exc.http_status
        else:
            failure, result, http_status = None, str(verdict.kind), verdict.http_status
        duration_ms = round((time.perf_counter() - clock) * 1000, 1)
        error = self.redactor.text(failure.message) if failure else ""
        record = {
            "attempt": attempt,
            "at": round(started_at, 3),
            "outcome": result,
            "http_status": http_status,
            "error": error or None,
            "duration_ms": duration_ms,
        }
        log.info(
            "attempt", outcome=result, http_status=http_status, duration_ms=duration_ms, error=error or None
        )
        if isinstance(failure, PermanentApiError) and failure.is_credentials_problem:
            log.error("credentials_rejected", http_status=http_status, error=error)
        common.update(attempt=record, http_status=http_status, error=error, started_at=started_at)

        if result == "retry":
            if attempt >= self.policy.max_attempts:
                return self._dead(request, task_id, attempt, http_status, "attempts_exhausted", error, common)
            assert isinstance(failure, ApiError)
            delay_s = retry_delay(
                attempt,
                base_s=self.policy.backoff_base_s,
                cap_s=self.policy.backoff_cap_s,
                jitter=self.policy.jitter,
                retry_after_s=failure.retry_after_s,
                retry_after_cap_s=self.policy.retry_after_cap_s,
                rand=self.rand,
            )
            state, detail = self.store.finish(
                request, task_id, result="retry", delay_s=delay_s, dlq_id=new_entry_id(), **common
            )
            if state == "dead":
                log.warning("stop_dead", reason=detail, error=error)
            else:
                log.info("retry_scheduled", delay_s=round(delay_s, 3), state=state)
            return Outcome(state, detail, attempt, http_status)
        if result == "dead":
            reason = f"http_{http_status}"
            return self._dead(request, task_id, attempt, http_status, reason, error, common)
        state, detail = self.store.finish(request, task_id, result=result, **common)
        log.info("stop_finished", state=state)
        return Outcome(state, detail, attempt, http_status)

    def _dead(
        self,
        request: StopRequest,
        task_id: str,
        attempt: int,
        http_status: int | None,
        reason: str,
        error: str,
        common: dict[str, Any],
    ) -> Outcome:
        fields = {**common, "error": error, "http_status": http_status}
        fields.setdefault("attempt", None)
        state, detail = self.store.finish(
            request, task_id, result="dead", reason=reason, dlq_id=new_entry_id(), **fields
        )
        log.warning("stop_dead", reason=detail or reason, error=error, state=state)
        return Outcome(state, detail or reason, attempt, http_status)

    def _payload(self, request: StopRequest, task_id: str) -> str:
        return encode_payload(
            {"task": TASK_NAME, "id": task_id, "kwargs": request.to_kwargs()}, self.redactor
        )
