"""Thread-safe in-memory world of the sandbox: accounts, calls, request log, faults, config."""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final, NamedTuple

from recstop.sandbox.faults import FaultConfig, FaultPlan, FaultRule
from recstop.sandbox.ratelimit import RateLimiter
from recstop.sandbox.requestlog import LoggedRequest, RequestLog

NOTHING_TO_STOP_MODES: Final = ("404", "204")


def recording_url() -> str:
    """Return a fresh, unique recording URL in the sandbox's media domain."""
    return f"https://media.sandbox.vobiz.test/rec/{uuid.uuid4()}.mp3"


class Account(NamedTuple):
    """An API account's token and whether it may act."""

    token: str
    active: bool


@dataclass
class Call:
    """A live call and its active recordings."""

    auth_id: str
    active_recordings: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)


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
    ) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._calls: dict[str, Call] = {}
        self._log = RequestLog()
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

    # -- calls ------------------------------------------------------------------------------
    def create_call(self, auth_id: str, call_uuid: str) -> None:
        """Start a call with no recording (``KeyError``: no account, ``ValueError``: taken)."""
        with self._lock:
            if auth_id not in self._accounts:
                raise KeyError(auth_id)
            if call_uuid in self._calls:
                raise ValueError(f"call {call_uuid} already exists")
            self._calls[call_uuid] = Call(auth_id)

    def hang_up(self, call_uuid: str) -> bool:
        """End a call; ``False`` if there was none."""
        with self._lock:
            return self._calls.pop(call_uuid, None) is not None

    def start_recording(self, call_uuid: str, url: str) -> None:
        """Add an active recording; ``KeyError`` for an unknown call, ``ValueError`` if active."""
        with self._lock:
            call = self._calls[call_uuid]
            if url in call.active_recordings:
                raise ValueError(f"recording {url} is already active")
            call.active_recordings.append(url)

    def call(self, call_uuid: str) -> Call | None:
        """Return a copy of a live call, or ``None``."""
        with self._lock:
            call = self._calls.get(call_uuid)
            return None if call is None else Call(call.auth_id, list(call.active_recordings), call.created_at)

    def stop(self, auth_id: str, call_uuid: str, url: str | None) -> Stop:
        """Stop one recording (``url``) or all of them, as the API does."""
        with self._lock:
            call = self._calls.get(call_uuid)
            if call is None and self._auto_calls and auth_id in self._accounts:
                call = self._calls[call_uuid] = Call(auth_id, [recording_url()])
            if call is None or call.auth_id != auth_id:
                return Stop.NO_CALL
            if url is not None:
                if url not in call.active_recordings:
                    return Stop.NO_RECORDING
                call.active_recordings.remove(url)
                return Stop.STOPPED
            if not call.active_recordings and self._nothing_to_stop == "404":
                return Stop.NO_RECORDING
            call.active_recordings.clear()
            return Stop.STOPPED

    # -- request log ------------------------------------------------------------------------
    def log(self, entry: LoggedRequest) -> int:
        """Append to the request log; returns the entry's ``seq``."""
        with self._lock:
            return self._log.append(entry)

    def requests(
        self, *, call_uuid: str | None = None, since_seq: int | None = None
    ) -> list[dict[str, object]]:
        """Return logged requests, oldest first, for one call and/or after ``since_seq``."""
        with self._lock:
            return self._log.select(call_uuid=call_uuid, since_seq=since_seq)

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

    def faults(self) -> dict[str, object]:
        """Return the fault configuration with remaining ``times``."""
        with self._lock:
            return self._faults.to_json()

    def pick_fault(self, call_uuid: str | None) -> FaultRule | None:
        """Return the fault to inject into this request, if any (uses one of its ``times``)."""
        with self._lock:
            return self._faults.pick(call_uuid)

    @property
    def latency_ms(self) -> float:
        """Delay added to every API request."""
        with self._lock:
            return self._faults.config.latency_ms

    def configure(
        self,
        *,
        auto_calls: bool | None = None,
        nothing_to_stop: str | None = None,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | Keep | None = KEEP,
    ) -> None:
        """Change settings; ``None`` (``KEEP`` for the burst, where ``None`` = default) keeps one.

        ``rate_limit_rps`` 0 turns the limit off. Any rate limit change starts every bucket full.
        """
        if nothing_to_stop is not None and nothing_to_stop not in NOTHING_TO_STOP_MODES:
            raise ValueError(f"nothing_to_stop must be '404' or '204', not {nothing_to_stop!r}")
        with self._lock:
            if rate_limit_rps is not None or rate_limit_burst is not KEEP:
                rate = self._limiter.rate_rps if rate_limit_rps is None else rate_limit_rps
                burst = self._burst if isinstance(rate_limit_burst, Keep) else rate_limit_burst
                self._limiter, self._burst = RateLimiter(rate, burst), burst  # raises before any change
            if auto_calls is not None:
                self._auto_calls = auto_calls
            if nothing_to_stop is not None:
                self._nothing_to_stop = nothing_to_stop

    def config(self) -> dict[str, object]:
        """Return the settings and ``rate_limited``, the 429s the rate limiter has sent so far."""
        with self._lock:
            return {
                "auto_calls": self._auto_calls,
                "nothing_to_stop": self._nothing_to_stop,
                "rate_limit_rps": self._limiter.rate_rps or 0.0,
                "rate_limit_burst": self._burst,
                "rate_limited": self._rate_limited,
            }

    def rate_limit(self, auth_id: str) -> float | None:
        """Count one API request against ``auth_id``'s limit: ``None`` if allowed, else seconds to wait."""
        with self._lock:
            wait = self._limiter.take(auth_id)
            if wait is not None:
                self._rate_limited += 1
            return wait
