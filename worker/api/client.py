"""The Vobiz API client: one thread-safe urllib3 connection pool per process, one call.

urllib3 is the HTTP engine underneath ``requests``; calling it directly costs a third of the CPU
per call (``make bench`` measures both), and the worker makes this one call thousands of times
a second. Nothing of ``requests`` is needed here: no cookies, redirects, proxies or auth hooks.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Final
from urllib.parse import quote

import urllib3
from urllib3 import exceptions as http_errors

from recstop.worker.api.classify import Classification, classify, no_response
from recstop.worker.config.secrets import Secret
from recstop.worker.config.settings import ApiSettings

USER_AGENT: Final = "recstop/0.1 (+celery)"


def record_url(api_base: str, auth_id: str, call_uuid: str) -> str:
    """``{api_base}/Account/{auth_id}/Call/{call_uuid}/Record/``: exact casing, trailing slash."""
    return (
        f"{api_base.rstrip('/')}/Account/{quote(auth_id, safe='')}/Call/{quote(call_uuid, safe='')}/Record/"
    )


class VobizClient:
    """Stops recordings; every call returns its :class:`Classification`, a timeout or reset included."""

    def __init__(self, api: ApiSettings, *, concurrency: int) -> None:
        self.api = api
        # One keep-alive connection per worker thread; never block waiting for a free one.
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=max(1, concurrency), block=False)
        self._timeout = urllib3.Timeout(connect=api.connect_timeout_s, read=api.read_timeout_s)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.clear()

    def stop_recording(
        self, *, auth_id: str, token: Secret, call_uuid: str, url: str | None
    ) -> Classification:
        """DELETE the recording(s); ``url=None`` stops every recording on the call."""
        headers = {
            "X-Auth-ID": auth_id,
            "X-Auth-Token": token.reveal(),
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        body = None
        if url is not None:
            body = json.dumps({"URL": url}).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._pool.request(
                "DELETE",
                record_url(self.api.base_url, auth_id, call_uuid),
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except http_errors.NewConnectionError as exc:  # before TimeoutError: urllib3 2 derives it from there
            return no_response("connection", "connection error", exc)
        except http_errors.TimeoutError as exc:
            return no_response("timeout", "timeout", exc)
        except http_errors.ProtocolError as exc:
            return no_response("connection", "connection error", exc)
        except (http_errors.HTTPError, OSError) as exc:
            return no_response("request", "request failed", exc)
        verdict = classify(response.status, response.headers, response.data)
        if verdict.succeeded or verdict.message:
            return verdict
        return dataclasses.replace(verdict, message=response.reason or f"HTTP {response.status}")
