"""``SandboxClient``: one method per control route of a running sandbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import requests


class SandboxError(Exception):
    """A control request answered with a non-2xx status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"sandbox answered {status}: {reason}")
        self.status = status
        self.reason = reason


class SandboxClient:
    """Drives a sandbox's ``/_sandbox/`` control API over HTTP."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:  # noqa: ANN401 - JSON
        response = self._session.request(
            method,
            f"{self.base_url}/_sandbox/{path}",
            json=body,
            params=params,
            timeout=self.timeout_s,
        )
        if not response.ok:
            try:
                reason = str(response.json().get("error", response.text))
            except ValueError:
                reason = response.text
            raise SandboxError(response.status_code, reason)
        return response.json() if response.content else None

    def health(self) -> bool:
        """Return whether the sandbox answers its health check."""
        return bool(self._call("GET", "health")["ok"])

    def add_account(self, auth_id: str, token: str, *, active: bool = True) -> None:
        """Create or replace an API account."""
        self._call("POST", "accounts", {"auth_id": auth_id, "token": token, "active": active})

    def update_account(self, auth_id: str, *, active: bool | None = None, token: str | None = None) -> None:
        """Activate/deactivate an account or change its token."""
        body = {k: v for k, v in (("active", active), ("token", token)) if v is not None}
        self._call("PATCH", f"accounts/{auth_id}", body)

    def create_call(self, auth_id: str, call_uuid: str | None = None) -> str:
        """Start a call (no recording yet); returns its uuid."""
        body = {"auth_id": auth_id} | ({} if call_uuid is None else {"call_uuid": call_uuid})
        return str(self._call("POST", "calls", body)["call_uuid"])

    def new_call(self, auth_id: str, *, recordings: int = 1, call_uuid: str | None = None) -> dict[str, Any]:
        """Start a call with ``recordings`` active recordings: ``{"call_uuid", "recordings": [url, ...]}``."""
        body: dict[str, object] = {"auth_id": auth_id, "recordings": recordings}
        if call_uuid is not None:
            body["call_uuid"] = call_uuid
        found: dict[str, Any] = self._call("POST", "calls", body)
        return found

    def hang_up(self, call_uuid: str) -> None:
        """End a call: later stops get 404 "Call not found"."""
        self._call("DELETE", f"calls/{call_uuid}")

    def start_recording(self, call_uuid: str, url: str | None = None) -> str:
        """Start a recording on a call; returns its URL."""
        return str(
            self._call("POST", f"calls/{call_uuid}/recordings", {} if url is None else {"url": url})["url"]
        )

    def call(self, call_uuid: str) -> dict[str, Any] | None:
        """Return ``{"call_uuid", "auth_id", "recordings"}`` of a live call, or ``None``."""
        try:
            found: dict[str, Any] = self._call("GET", f"calls/{call_uuid}")
        except SandboxError as error:
            if error.status == 404:  # noqa: PLR2004
                return None
            raise
        return found

    def requests(self, *, call_uuid: str | None = None, since_seq: int | None = None) -> list[dict[str, Any]]:
        """Return the logged API requests, oldest first."""
        params = {
            "call_uuid": call_uuid,
            "since_seq": None if since_seq is None else str(since_seq),
        }
        query = {k: v for k, v in params.items() if v is not None}
        found: list[dict[str, Any]] = self._call("GET", "requests", params=query)["requests"]
        return found

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "requests")

    def set_faults(
        self,
        rules: Sequence[Mapping[str, object]],
        *,
        latency_ms: float = 0,
        seed: int | None = None,
    ) -> None:
        """Replace the fault rules and the global latency."""
        self._call("PUT", "faults", {"rules": list(rules), "latency_ms": latency_ms, "seed": seed})

    def clear_faults(self) -> None:
        """Remove every fault rule and the global latency."""
        self._call("DELETE", "faults")

    def faults(self) -> dict[str, Any]:
        """Return the fault configuration, with each rule's remaining ``times``."""
        found: dict[str, Any] = self._call("GET", "faults")
        return found

    def configure(
        self,
        *,
        auto_calls: bool | None = None,
        nothing_to_stop: str | None = None,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> None:
        """Change settings; ``None`` keeps one. ``rate_limit_rps=0`` turns the per-account limit off."""
        fields = (
            ("auto_calls", auto_calls),
            ("nothing_to_stop", nothing_to_stop),
            ("rate_limit_rps", rate_limit_rps),
            ("rate_limit_burst", rate_limit_burst),
        )
        self._call("PUT", "config", {k: v for k, v in fields if v is not None})

    def config(self) -> dict[str, Any]:
        """Return the settings (``rate_limit_burst`` ``None`` = default) and the ``rate_limited`` count."""
        found: dict[str, Any] = self._call("GET", "config")
        return found

    def rate_limited(self) -> int:
        """Return how many requests the rate limiter has answered with 429 since the sandbox started."""
        return int(self.config()["rate_limited"])

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
