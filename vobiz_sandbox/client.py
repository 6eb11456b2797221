"""``SandboxClient``: one method per control route of a running sandbox, and its imitated Vobiz API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import requests
from requests import Response


class SandboxError(Exception):
    """A control request answered with a non-2xx status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"sandbox answered {status}: {reason}")
        self.status = status
        self.reason = reason


class SandboxClient:
    """Drives a sandbox's ``/_sandbox/`` control API over HTTP, and calls its Vobiz API as a worker would.

    The ``api_*`` methods send the account's credentials as headers (never anywhere else).
    """

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

    def start_recording(
        self,
        call_uuid: str,
        url: str | None = None,
        *,
        time_limit_s: int | None = None,
        file_format: str | None = None,
        callback_url: str | None = None,
        callback_method: str | None = None,
    ) -> str:
        """Start a recording on a call (no time limit unless given); returns its URL."""
        return str(
            self.add_recording(
                call_uuid,
                url,
                time_limit_s=time_limit_s,
                file_format=file_format,
                callback_url=callback_url,
                callback_method=callback_method,
            )["url"]
        )

    def add_recording(
        self,
        call_uuid: str,
        url: str | None = None,
        *,
        time_limit_s: int | None = None,
        file_format: str | None = None,
        callback_url: str | None = None,
        callback_method: str | None = None,
    ) -> dict[str, Any]:
        """Start a recording on a call through the control API: ``{"url", "recording_id"}``."""
        fields = (
            ("url", url),
            ("time_limit", time_limit_s),
            ("file_format", file_format),
            ("callback_url", callback_url),
            ("callback_method", callback_method),
        )
        found: dict[str, Any] = self._call(
            "POST", f"calls/{call_uuid}/recordings", {k: v for k, v in fields if v is not None}
        )
        return found

    def call(self, call_uuid: str) -> dict[str, Any] | None:
        """Return ``{"call_uuid", "auth_id", "recordings"}`` of a live call, or ``None``."""
        try:
            found: dict[str, Any] = self._call("GET", f"calls/{call_uuid}")
        except SandboxError as error:
            if error.status == 404:  # noqa: PLR2004
                return None
            raise
        return found

    def requests(
        self, *, call_uuid: str | None = None, since_seq: int | None = None, endpoint: str | None = None
    ) -> list[dict[str, Any]]:
        """The logged API requests, oldest first; ``endpoint``: ``stop``, ``start``, ``recordings``."""
        params = {
            "call_uuid": call_uuid,
            "since_seq": None if since_seq is None else str(since_seq),
            "endpoint": endpoint,
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

    def add_faults(self, rules: Sequence[Mapping[str, object]]) -> None:
        """Append fault rules after the current ones (the latency and the seed stay)."""
        self._call("POST", "faults", {"rules": list(rules)})

    def fail_recordings(
        self,
        kind: str = "status",
        *,
        status: int = 503,
        probability: float = 1.0,
        times: int | None = None,
        call_uuid: str | None = None,
    ) -> None:
        """Append a rule making the Recordings API fail (``kind`` ``status``, ``reset`` or ``hang``)."""
        rule: dict[str, object] = {"kind": kind, "probability": probability, "endpoint": "recordings"}
        rule |= {"status": status} if kind == "status" else {}
        rule |= {k: v for k, v in (("times", times), ("call_uuid", call_uuid)) if v is not None}
        self.add_faults([rule])

    def bad_recordings_answer(
        self,
        answer: str,
        *,
        probability: float = 1.0,
        times: int | None = None,
        call_uuid: str | None = None,
    ) -> None:
        """Append a rule making the Recordings API answer badly (``answer``, a 200 each).

        ``old_shape``, ``html``, ``truncated``, ``no_end_ms``, ``end_before_start``, ``strings``, ``numbers``
        or ``never_finalized`` (see :data:`recstop.sandbox.listing.ANSWERS`).
        """
        rule: dict[str, object] = {"kind": "answer", "answer": answer, "probability": probability}
        rule |= {k: v for k, v in (("times", times), ("call_uuid", call_uuid)) if v is not None}
        self.add_faults([rule])

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
        finalize_delay_s: float | None = None,
    ) -> None:
        """Change settings; ``None`` keeps one. ``rate_limit_rps=0`` turns the per-account limit off."""
        fields = (
            ("auto_calls", auto_calls),
            ("nothing_to_stop", nothing_to_stop),
            ("rate_limit_rps", rate_limit_rps),
            ("rate_limit_burst", rate_limit_burst),
            ("finalize_delay_s", finalize_delay_s),
        )
        self._call("PUT", "config", {k: v for k, v in fields if v is not None})

    def config(self) -> dict[str, Any]:
        """Return the settings (``rate_limit_burst`` ``None`` = default) and the ``rate_limited`` count."""
        found: dict[str, Any] = self._call("GET", "config")
        return found

    def rate_limited(self) -> int:
        """Return how many requests the rate limiter has answered with 429 since the sandbox started."""
        return int(self.config()["rate_limited"])

    def set_finalize_delay(self, delay_s: float) -> None:
        """Set how long after a recording ends the Recordings API shows its end (0: at once)."""
        self.configure(finalize_delay_s=delay_s)

    def clock(self) -> dict[str, Any]:
        """Return the sandbox time ``{"now_ms", "offset_s"}``."""
        found: dict[str, Any] = self._call("GET", "clock")
        return found

    def advance_clock(self, seconds: float) -> int:
        """Move the sandbox clock forward (limits pass, recordings finalize); returns the new epoch ms."""
        return int(self._call("POST", "clock", {"advance_s": seconds})["now_ms"])

    def recordings(self, call_uuid: str | None = None) -> list[dict[str, Any]]:
        """Every recording (of one call), oldest first, with what the API does not show yet."""
        params = {} if call_uuid is None else {"call_uuid": call_uuid}
        found: list[dict[str, Any]] = self._call("GET", "recordings", params=params)["recordings"]
        return found

    def callbacks(self, *, since_seq: int | None = None) -> list[dict[str, Any]]:
        """Return the recording callbacks sent (each with its answer's status or error), oldest first."""
        params = {} if since_seq is None else {"since_seq": str(since_seq)}
        found: list[dict[str, Any]] = self._call("GET", "callbacks", params=params)["callbacks"]
        return found

    def clear_callbacks(self) -> None:
        """Empty the callback log."""
        self._call("DELETE", "callbacks")

    # -- the imitated Vobiz API, with an account's credentials ------------------------------------
    def _api(
        self,
        method: str,
        path: str,
        credentials: tuple[str, str],
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, object] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        auth_id, token = credentials
        return self._session.request(
            method,
            f"{self.base_url}/api/v1/Account/{auth_id}/{path}",
            headers={"X-Auth-ID": auth_id, "X-Auth-Token": token},
            params=params,
            json=json,
            data=form,
            timeout=self.timeout_s,
        )

    @staticmethod
    def _api_json(response: Response) -> Any:  # noqa: ANN401 - JSON
        if not response.ok:
            raise SandboxError(response.status_code, response.text)
        return response.json()

    def api_start_recording(
        self,
        auth_id: str,
        token: str,
        call_uuid: str,
        *,
        time_limit_s: int | None = None,
        file_format: str | None = None,
        callback_url: str | None = None,
        callback_method: str | None = None,
        form: bool = False,
    ) -> dict[str, Any]:
        """Start Recording through the API (JSON, or form-encoded with ``form``).

        Returns ``{"api_id", "message", "recording_id", "url"}``; a refusal raises :class:`SandboxError`.
        """
        fields = (
            ("time_limit", time_limit_s),
            ("file_format", file_format),
            ("callback_url", callback_url),
            ("callback_method", callback_method),
        )
        given = {k: v for k, v in fields if v is not None}
        body = {"form": {k: str(v) for k, v in given.items()}} if form else {"json": given}
        response = self._api("POST", f"Call/{call_uuid}/Record/", (auth_id, token), **body)
        found: dict[str, Any] = self._api_json(response)
        return found

    def api_stop_recording(self, auth_id: str, token: str, call_uuid: str, url: str | None = None) -> int:
        """Stop Recording through the API (one ``url``, else all); returns the HTTP status."""
        body = None if url is None else {"URL": url}
        response = self._api("DELETE", f"Call/{call_uuid}/Record/", (auth_id, token), json=body)
        return int(response.status_code)

    def api_recordings(
        self,
        auth_id: str,
        token: str,
        *,
        call_uuid: str | None = None,
        recording_type: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """One page of the Recordings API's list: ``{"api_id", "meta", "objects"}``."""
        fields = (
            ("call_uuid", call_uuid),
            ("recording_type", recording_type),
            ("limit", limit),
            ("offset", offset),
        )
        params = {k: str(v) for k, v in fields if v is not None}
        found: dict[str, Any] = self._api_json(
            self._api("GET", "Recording/", (auth_id, token), params=params)
        )
        return found

    def api_recording(self, auth_id: str, token: str, recording_id: str) -> dict[str, Any] | None:
        """One recording from the Recordings API, or ``None`` when it answers 404."""
        response = self._api("GET", f"Recording/{recording_id}/", (auth_id, token))
        if response.status_code == 404:  # noqa: PLR2004
            return None
        found: dict[str, Any] = self._api_json(response)
        return found

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
