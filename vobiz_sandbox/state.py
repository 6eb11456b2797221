"""Thread-safe in-memory world of the sandbox: accounts, calls, recordings, logs, faults, config, clock.

Time: the recordings' times come from the sandbox clock, ``clock()`` (epoch seconds, ``time.time`` unless
one is injected) plus an offset that only grows (:meth:`SandboxState.advance_clock`, ``POST
/_sandbox/clock``): a test moves the sandbox forward instead of sleeping. The request and callback logs
keep real time.

Finalization: a recording that ended at ``t`` is finalized at ``t`` plus the finalization delay in force
at ``t`` (a delay changed later applies to recordings ending after the change, never to one already
ended); until then the Recordings API shows its end and durations as null, and then its callback is sent.
A delay of 0 finalizes at once.
"""

from __future__ import annotations

import bisect
import hmac
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final, NamedTuple

from recstop.sandbox.callbacks import CallbackAttempt, CallbackJob
from recstop.sandbox.faults import Endpoint, FaultConfig, FaultPlan, FaultRule
from recstop.sandbox.listing import ListQuery
from recstop.sandbox.ratelimit import RateLimiter
from recstop.sandbox.recordings import (
    CALL_RECORDING,
    DEFAULT_FROM_NUMBER,
    DEFAULT_TO_NUMBER,
    Recording,
    Shown,
    media_url,
    new_recording_id,
)
from recstop.sandbox.requestlog import LoggedRequest, RequestLog, SequencedLog
from recstop.sandbox.start import RecordingSpec

NOTHING_TO_STOP_MODES: Final = ("404", "204")
DEFAULT_FINALIZE_DELAY_S: Final = 0.5
#: Where the recordings' time comes from unless a clock is injected: epoch seconds.
DEFAULT_CLOCK: Final[Callable[[], float]] = time.time
MAX_FINALIZE_DELAY_S: Final = 3_600.0
MAX_CLOCK_ADVANCE_S: Final = 366 * 86_400.0
#: Finalization delay changes remembered (the oldest are forgotten beyond this).
MAX_DELAY_CHANGES: Final = 1_000
_LONG_AGO_MS: Final = -(1 << 62)


class Account(NamedTuple):
    """An API account's token and whether it may act."""

    token: str
    active: bool


@dataclass(frozen=True, slots=True)
class Call:
    """A call: its account and numbers, and when it hung up (``None`` while live)."""

    auth_id: str
    from_number: str = DEFAULT_FROM_NUMBER
    to_number: str = DEFAULT_TO_NUMBER
    ended_ms: int | None = None


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A live call as the control API shows it: the URLs of its active recordings, oldest first."""

    auth_id: str
    active_recordings: list[str]


class Auth(Enum):
    """Outcome of checking credentials."""

    OK = "ok"
    INVALID = "invalid"
    INACTIVE = "inactive"


class Keep(Enum):
    """Marks a setting that :meth:`SandboxState.configure` leaves as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class Stop(Enum):
    """Outcome of a stop-recording request."""

    STOPPED = "stopped"
    NO_CALL = "no_call"
    NO_RECORDING = "no_recording"


class SandboxState:
    """All mutable sandbox state, guarded by one lock."""

    def __init__(
        self,
        *,
        auto_calls: bool = False,
        nothing_to_stop: str = "404",
        seed: int | None = None,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
        finalize_delay_s: float = DEFAULT_FINALIZE_DELAY_S,
        clock: Callable[[], float] = DEFAULT_CLOCK,
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0
        self._clock = clock
        self._offset_us = 0
        self._accounts: dict[str, Account] = {}
        self._calls: dict[str, Call] = {}
        self._recordings: dict[str, Recording] = {}
        self._by_call: dict[str, list[str]] = {}
        self._by_account: dict[str, list[str]] = {}
        self._awaiting_callback: set[str] = set()
        self._delay_since_ms: list[int] = [_LONG_AGO_MS]
        self._delay_ms: list[int] = [0]
        self._log = RequestLog()
        self._callbacks: SequencedLog[CallbackAttempt] = SequencedLog()
        self._seed = seed
        self._faults = FaultPlan(FaultConfig(seed=seed))
        self._auto_calls = False
        self._nothing_to_stop = "404"
        self._limiter = RateLimiter()
        self._burst: int | None = None  # as configured: None = the limiter's default
        self._rate_limited = 0
        self.configure(
            auto_calls=auto_calls,
            nothing_to_stop=nothing_to_stop,
            rate_limit_rps=rate_limit_rps,
            rate_limit_burst=rate_limit_burst,
            finalize_delay_s=finalize_delay_s,
        )

    # -- accounts ---------------------------------------------------------------------------
    def add_account(self, auth_id: str, token: str, *, active: bool = True) -> None:
        """Create or replace an account."""
        with self._lock:
            self._accounts[auth_id] = Account(token, active)

    def update_account(
        self, auth_id: str, *, active: bool | None = None, token: str | None = None
    ) -> Account:
        """Change an account's token and/or active flag; ``KeyError`` if unknown."""
        with self._lock:
            account = self._accounts[auth_id]
            account = self._accounts[auth_id] = Account(
                account.token if token is None else token,
                account.active if active is None else active,
            )
            return account

    def authenticate(self, auth_id: str | None, token: str | None) -> Auth:
        """Check an ``X-Auth-ID`` / ``X-Auth-Token`` pair."""
        with self._lock:
            account = self._accounts.get(auth_id) if auth_id else None
        if account is None or token is None:
            return Auth.INVALID
        if not hmac.compare_digest(account.token.encode(), token.encode()):
            return Auth.INVALID
        return Auth.OK if account.active else Auth.INACTIVE

    # -- the clock --------------------------------------------------------------------------
    def _now_us(self) -> int:
        """The sandbox clock in epoch microseconds (callers hold the lock)."""
        return round(self._clock() * 1_000_000) + self._offset_us

    def now_ms(self) -> int:
        """The sandbox clock in epoch milliseconds."""
        with self._lock:
            return self._now_us() // 1000

    def advance_clock(self, seconds: float) -> int:
        """Move the sandbox clock forward by ``seconds`` (> 0); returns the new time, epoch ms."""
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_CLOCK_ADVANCE_S):
            raise ValueError(f"advance_s must be a number above 0 and at most {MAX_CLOCK_ADVANCE_S:g}")
        with self._lock:
            self._offset_us += round(seconds * 1_000_000)
            self._bump()
            return self._now_us() // 1000

    def clock(self) -> dict[str, object]:
        """``{"now_ms", "offset_s"}``: the sandbox time and how far it has been moved ahead."""
        with self._lock:
            return {"now_ms": self._now_us() // 1000, "offset_s": self._offset_us / 1_000_000}

    # -- calls and recordings ---------------------------------------------------------------
    def create_call(
        self, auth_id: str, call_uuid: str, *, from_number: str | None = None, to_number: str | None = None
    ) -> None:
        """Start a call with no recording (``KeyError``: no account, ``ValueError``: a live one has it)."""
        with self._lock:
            if auth_id not in self._accounts:
                raise KeyError(auth_id)
            known = self._calls.get(call_uuid)
            if known is not None and known.ended_ms is None:
                raise ValueError(f"call {call_uuid} already exists")
            self._calls[call_uuid] = Call(
                auth_id, from_number or DEFAULT_FROM_NUMBER, to_number or DEFAULT_TO_NUMBER
            )

    def _live_call(self, call_uuid: str, auth_id: str | None) -> Call | None:
        """The live call (of ``auth_id`` when given); with auto_calls an unknown one is created."""
        call = self._calls.get(call_uuid)
        if call is None and auth_id is not None and self._auto_calls and auth_id in self._accounts:
            call = self._calls[call_uuid] = Call(auth_id)
        if call is None or call.ended_ms is not None or (auth_id is not None and call.auth_id != auth_id):
            return None
        return call

    def _active(self, call_uuid: str, now_ms: int) -> list[Recording]:
        found = (self._recordings[rid] for rid in self._by_call.get(call_uuid, ()))
        return [rec for rec in found if rec.active(now_ms)]

    def _store(self, rec: Recording) -> None:
        if rec.recording_id not in self._recordings:
            self._by_call.setdefault(rec.call_uuid, []).append(rec.recording_id)
            self._by_account.setdefault(rec.auth_id, []).append(rec.recording_id)
        self._recordings[rec.recording_id] = rec
        if rec.callback_url is not None:
            self._bump()

    def start_recording(
        self, call_uuid: str, spec: RecordingSpec, *, url: str | None = None, auth_id: str | None = None
    ) -> Recording:
        """Start a recording on a live call (of ``auth_id`` when given, as the API does).

        ``KeyError``: no such live call; ``ValueError``: ``url`` is already recording on it.
        """
        with self._lock:
            call = self._live_call(call_uuid, auth_id)
            if call is None:
                raise KeyError(call_uuid)
            now_us = self._now_us()
            if url is not None and any(rec.url == url for rec in self._active(call_uuid, now_us // 1000)):
                raise ValueError(f"recording {url} is already active")
            recording_id = new_recording_id()
            rec = Recording(
                recording_id=recording_id,
                url=url or media_url(recording_id, spec.file_format),
                call_uuid=call_uuid,
                auth_id=call.auth_id,
                start_us=now_us,
                file_format=spec.file_format,
                time_limit_s=spec.time_limit_s,
                callback_url=spec.callback_url,
                callback_method=spec.callback_method,
                from_number=call.from_number,
                to_number=call.to_number,
            )
            self._store(rec)
            if rec.callback_url is not None:
                self._awaiting_callback.add(recording_id)
            return rec

    def _end(self, recordings: list[Recording], now_ms: int) -> None:
        for rec in recordings:
            self._store(replace(rec, stopped_ms=now_ms, finalize_delay_ms=self._delay_ms[-1]))

    def hang_up(self, call_uuid: str) -> bool:
        """End a live call and its recordings; ``False`` if there was none."""
        with self._lock:
            call = self._calls.get(call_uuid)
            if call is None or call.ended_ms is not None:
                return False
            now_ms = self._now_us() // 1000
            self._calls[call_uuid] = replace(call, ended_ms=now_ms)
            self._end(self._active(call_uuid, now_ms), now_ms)
            return True

    def call(self, call_uuid: str) -> LiveCall | None:
        """Return a live call with its active recordings, or ``None``."""
        with self._lock:
            call = self._calls.get(call_uuid)
            if call is None or call.ended_ms is not None:
                return None
            active = self._active(call_uuid, self._now_us() // 1000)
            return LiveCall(call.auth_id, [rec.url for rec in active])

    def stop(self, auth_id: str, call_uuid: str, url: str | None) -> Stop:
        """Stop one recording (``url``) or all of them, as the API does."""
        with self._lock:
            auto = call_uuid not in self._calls
            call = self._live_call(call_uuid, auth_id)
            if call is None:
                return Stop.NO_CALL
            now_us = self._now_us()
            if auto:  # auto_calls made it: live with one recording
                recording_id = new_recording_id()
                self._store(Recording(recording_id, media_url(recording_id), call_uuid, auth_id, now_us))
            active = self._active(call_uuid, now_us // 1000)
            if url is not None:
                active = [rec for rec in active if rec.url == url]
                if not active:
                    return Stop.NO_RECORDING
            if not active and self._nothing_to_stop == "404":
                return Stop.NO_RECORDING
            self._end(active, now_us // 1000)
            return Stop.STOPPED

    # -- finalization and the Recordings API ------------------------------------------------
    def _delay_at(self, at_ms: int) -> int:
        """The finalization delay in force at ``at_ms``, in milliseconds."""
        return self._delay_ms[bisect.bisect_right(self._delay_since_ms, at_ms) - 1]

    def _finalized_at(self, rec: Recording) -> int | None:
        """When ``rec`` is (or will be) finalized, epoch ms; ``None`` while nothing ends it.

        A stop or hang-up took the delay in force at that moment; a time limit takes the one in force
        when it passes.
        """
        if rec.stopped_ms is not None:
            return rec.stopped_ms + rec.finalize_delay_ms
        end = rec.end_ms
        return None if end is None else end + self._delay_at(end)

    def _show(self, rec: Recording, now_ms: int) -> Shown:
        finalized = self._finalized_at(rec)
        return Shown(rec, rec.end_ms if finalized is not None and finalized <= now_ms else None)

    def recording_call(self, recording_id: str) -> str | None:
        """The call of a recording, or ``None`` if there is no such recording."""
        with self._lock:
            rec = self._recordings.get(recording_id)
            return None if rec is None else rec.call_uuid

    def recording(self, auth_id: str, recording_id: str) -> Shown | None:
        """One of the account's recordings as the API shows it now, or ``None``."""
        with self._lock:
            rec = self._recordings.get(recording_id)
            if rec is None or rec.auth_id != auth_id:
                return None
            return self._show(rec, self._now_us() // 1000)

    def recordings_page(self, auth_id: str, query: ListQuery) -> tuple[list[Shown], int]:
        """One page of the account's recordings, oldest first, and how many match in all."""
        with self._lock:
            if query.recording_type not in {None, CALL_RECORDING}:
                return [], 0
            if query.call_uuid is None:
                ids = self._by_account.get(auth_id, [])
            else:
                ids = self._by_call.get(query.call_uuid, [])
                ids = [rid for rid in ids if self._recordings[rid].auth_id == auth_id]
            now_ms = self._now_us() // 1000
            page = ids[query.offset : query.offset + query.limit]
            return [self._show(self._recordings[rid], now_ms) for rid in page], len(ids)

    def recordings(self, call_uuid: str | None = None) -> list[dict[str, object]]:
        """Every recording (of one call), oldest first, as the control API shows it: the whole truth."""
        with self._lock:
            if call_uuid is None:
                ids = [rid for ids in self._by_account.values() for rid in ids]
            else:
                ids = self._by_call.get(call_uuid, [])
            now_ms = self._now_us() // 1000
            found = sorted((self._recordings[rid] for rid in ids), key=lambda rec: rec.start_us)
            return [self._truth(rec, now_ms) for rec in found]

    def _truth(self, rec: Recording, now_ms: int) -> dict[str, object]:
        end, finalized = rec.end_ms, self._finalized_at(rec)
        return {
            "recording_id": rec.recording_id,
            "url": rec.url,
            "call_uuid": rec.call_uuid,
            "auth_id": rec.auth_id,
            "file_format": rec.file_format,
            "time_limit_s": rec.time_limit_s,
            "callback_url": rec.callback_url,
            "callback_method": rec.callback_method,
            "start_ms": rec.start_ms,
            "end_ms": end if end is not None and end <= now_ms else None,
            "active": rec.active(now_ms),
            "finalized_ms": finalized,
            "finalized": finalized is not None and finalized <= now_ms,
        }

    # -- callbacks --------------------------------------------------------------------------
    def _bump(self) -> None:
        """Count a change that may move the next callback (callers hold the lock)."""
        self._generation += 1
        self._changed.notify_all()

    def wake(self) -> None:
        """Count a change, waking whoever waits in :meth:`wait_for_change`."""
        with self._lock:
            self._bump()

    def wait_for_change(self, generation: int, timeout_s: float | None) -> None:
        """Return once the change count differs from ``generation``, or after ``timeout_s``."""
        with self._lock:
            self._changed.wait_for(lambda: self._generation != generation, timeout_s)

    def due_callbacks(self) -> tuple[list[CallbackJob], float | None, int]:
        """Callbacks of recordings finalized by now (each once), seconds to the next, the change count."""
        with self._lock:
            now_ms = self._now_us() // 1000
            due: list[CallbackJob] = []
            next_ms: int | None = None
            for recording_id in list(self._awaiting_callback):
                rec = self._recordings[recording_id]
                finalized = self._finalized_at(rec)
                if finalized is not None and finalized <= now_ms:
                    self._awaiting_callback.discard(recording_id)
                    due.append(CallbackJob.of(self._show(rec, now_ms)))
                elif finalized is not None:
                    next_ms = finalized if next_ms is None else min(next_ms, finalized)
            wait_s = None if next_ms is None else (next_ms - now_ms) / 1000
            return due, wait_s, self._generation

    def log_callback(self, attempt: CallbackAttempt) -> None:
        """Append a callback attempt to the callback log."""
        with self._lock:
            self._callbacks.append(attempt)

    def callbacks(self, *, since_seq: int | None = None) -> list[dict[str, object]]:
        """The callbacks sent, oldest first, after ``since_seq``."""
        with self._lock:
            return self._callbacks.select(since_seq=since_seq)

    def clear_callbacks(self) -> None:
        """Empty the callback log."""
        with self._lock:
            self._callbacks.clear()

    # -- request log ------------------------------------------------------------------------
    def log(self, entry: LoggedRequest) -> int:
        """Append to the request log; returns the entry's ``seq``."""
        with self._lock:
            return self._log.append(entry)

    def requests(
        self, *, call_uuid: str | None = None, since_seq: int | None = None, endpoint: str | None = None
    ) -> list[dict[str, object]]:
        """Return logged requests, oldest first, for one call, after ``since_seq``, to one endpoint."""
        where = None if endpoint is None else (lambda entry: entry.endpoint == endpoint)
        with self._lock:
            return self._log.select(call_uuid=call_uuid, since_seq=since_seq, where=where)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log.clear()

    # -- faults and config ------------------------------------------------------------------
    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault rules, global latency and seed (the server's seed when ``None``)."""
        if config.seed is None:
            config = replace(config, seed=self._seed)
        with self._lock:
            self._faults = FaultPlan(config)

    def add_faults(self, rules: tuple[FaultRule, ...]) -> None:
        """Append fault rules after the current ones."""
        with self._lock:
            self._faults.add(rules)

    def faults(self) -> dict[str, object]:
        """Return the fault configuration with remaining ``times``."""
        with self._lock:
            return self._faults.to_json()

    def pick_fault(self, call_uuid: str | None, endpoint: Endpoint | None) -> FaultRule | None:
        """Return the fault to inject into this request, if any (uses one of its ``times``)."""
        with self._lock:
            return self._faults.pick(call_uuid, endpoint)

    @property
    def latency_ms(self) -> float:
        """Delay added to every API request."""
        with self._lock:
            return self._faults.config.latency_ms

    def _set_delay(self, delay_s: float) -> None:
        """Make ``delay_s`` the finalization delay from now on (callers hold the lock)."""
        now_ms = self._now_us() // 1000
        while len(self._delay_ms) > 1 and self._delay_since_ms[-1] >= now_ms:  # same instant: replace
            self._delay_since_ms.pop()
            self._delay_ms.pop()
        self._delay_since_ms.append(now_ms)
        self._delay_ms.append(round(delay_s * 1000))
        if len(self._delay_ms) > MAX_DELAY_CHANGES:
            del self._delay_since_ms[1], self._delay_ms[1]
        self._bump()

    def configure(
        self,
        *,
        auto_calls: bool | None = None,
        nothing_to_stop: str | None = None,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | Keep | None = KEEP,
        finalize_delay_s: float | None = None,
    ) -> None:
        """Change settings; ``None`` (``KEEP`` for the burst, where ``None`` = default) keeps one.

        ``rate_limit_rps`` 0 turns the limit off. Any rate limit change starts every bucket full.
        ``finalize_delay_s`` (0 to 3600) applies to recordings that end from now on.
        """
        if nothing_to_stop is not None and nothing_to_stop not in NOTHING_TO_STOP_MODES:
            raise ValueError(f"nothing_to_stop must be '404' or '204', not {nothing_to_stop!r}")
        if finalize_delay_s is not None and not (
            math.isfinite(finalize_delay_s) and 0 <= finalize_delay_s <= MAX_FINALIZE_DELAY_S
        ):
            raise ValueError(f"finalize_delay_s must be a number from 0 to {MAX_FINALIZE_DELAY_S:g}")
        with self._lock:
            if rate_limit_rps is not None or rate_limit_burst is not KEEP:
                rate = self._limiter.rate_rps if rate_limit_rps is None else rate_limit_rps
                burst = self._burst if isinstance(rate_limit_burst, Keep) else rate_limit_burst
                self._limiter, self._burst = RateLimiter(rate, burst), burst  # raises before any change
            if auto_calls is not None:
                self._auto_calls = auto_calls
            if nothing_to_stop is not None:
                self._nothing_to_stop = nothing_to_stop
            if finalize_delay_s is not None:
                self._set_delay(finalize_delay_s)

    def config(self) -> dict[str, object]:
        """Return the settings and ``rate_limited``, the 429s the rate limiter has sent so far."""
        with self._lock:
            return {
                "auto_calls": self._auto_calls,
                "nothing_to_stop": self._nothing_to_stop,
                "rate_limit_rps": self._limiter.rate_rps or 0.0,
                "rate_limit_burst": self._burst,
                "rate_limited": self._rate_limited,
                "finalize_delay_s": self._delay_ms[-1] / 1000,
            }

    def rate_limit(self, auth_id: str) -> float | None:
        """Count one API request against ``auth_id``'s limit: ``None`` if allowed, else seconds to wait."""
        with self._lock:
            wait = self._limiter.take(auth_id)
            if wait is not None:
                self._rate_limited += 1
            return wait
