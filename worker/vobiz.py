"""The Vobiz API client: one pooled ``requests.Session`` per thread, one call."""

from __future__ import annotations

import threading
from typing import Final
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from worker.classify import Classification, Kind, classify
from worker.errors import PermanentApiError, RetryableApiError
from worker.settings import ApiSettings, Secret

USER_AGENT: Final = "recstop/0.1 (+celery)"


def record_url(api_base: str, auth_id: str, call_uuid: str) -> str:
    """``{api_base}/Account/{auth_id}/Call/{call_uuid}/Record/``: exact casing, trailing slash."""
    return (
        f"{api_base.rstrip('/')}/Account/{quote(auth_id, safe='')}/Call/{quote(call_uuid, safe='')}/Record/"
    )


class VobizClient:
    """Stops recordings. Returns the classification on success; raises the typed error otherwise."""

    def __init__(self, api: ApiSettings) -> None:
        self.api = api
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            self._local.session = session
        return session

    def stop_recording(
        self, *, auth_id: str, token: Secret, call_uuid: str, url: str | None
    ) -> Classification:
        """DELETE the recording(s); ``url=None`` stops every recording on the call."""
        headers = {"X-Auth-ID": auth_id, "X-Auth-Token": token.reveal()}
        try:
            response = self._session().delete(
                record_url(self.api.base_url, auth_id, call_uuid),
                headers=headers,
                json={"URL": url} if url is not None else None,
                timeout=(self.api.connect_timeout_s, self.api.read_timeout_s),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise RetryableApiError(f"timeout: {type(exc).__name__}", code="timeout") from None
        except requests.ConnectionError as exc:
            raise RetryableApiError(f"connection error: {type(exc).__name__}", code="connection") from None
        except requests.RequestException as exc:
            raise RetryableApiError(f"request failed: {type(exc).__name__}", code="request") from None
        verdict = classify(response.status_code, response.headers, response.content)
        text = verdict.message or response.reason or ""
        if verdict.kind is Kind.RETRY:
            raise RetryableApiError(
                text, http_status=verdict.http_status, code=verdict.code, retry_after_s=verdict.retry_after_s
            )
        if verdict.kind is Kind.PERMANENT:
            raise PermanentApiError(text, http_status=verdict.http_status, code=verdict.code)
        return verdict
