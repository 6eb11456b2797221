"""The Vobiz API client: one thread-safe urllib3 connection pool per process, one call.

urllib3 is the HTTP engine underneath ``requests``; calling it directly costs a third of the CPU
per call (``make bench`` measures both), and the worker makes this one call thousands of times
a second. Nothing of ``requests`` is needed here: no cookies, redirects, proxies or auth hooks.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

import urllib3
from urllib3 import exceptions as http_errors

from recstop.worker.api.classify import Classification, classify, no_response, parse_error_body
from recstop.worker.api.recordings import PAGE_LIMIT, BadAnswerError, Page, parse_page
from recstop.worker.config.secrets import Secret
from recstop.worker.config.settings import ApiSettings
from recstop.worker.model.recording import Recording
from recstop.worker.model.vocabulary import ConfirmReason, http_reason

USER_AGENT: Final = "recstop/0.1 (+celery)"
#: Answers after which the same lookup may succeed later (the others are permanent: 401, 403 ...).
TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})


#: Pages read at most in one lookup of a call's recordings (``PAGE_LIMIT`` each): 10,000 recordings.
MAX_PAGES: Final = 100


@dataclass(frozen=True)
class LookupFailed:
    """A lookup of a call's recordings that got no usable answer.

    ``reason`` is what the confirmation records (``http_403``, ``bad_answer``, ``timeout``,
    ``connection`` ...); ``transient`` says whether looking again later may help.
    """

    reason: str
    transient: bool
    error: str = ""


@dataclass(frozen=True)
class CallRecordings:
    """Every recording the list shows for a call, over all its pages."""

    recordings: tuple[Recording, ...]
    has_end_times: bool
    pages: int


def recordings_path(auth_id: str) -> str:
    """``/Account/{auth_id}/Recording/`` (after the API base's path): exact casing, trailing slash."""
    return f"/Account/{quote(auth_id, safe='')}/Recording/"


def record_path(auth_id: str, call_uuid: str) -> str:
    """``/Account/{auth_id}/Call/{call_uuid}/Record/`` (after the base's path): exact casing."""
    return f"/Account/{quote(auth_id, safe='')}/Call/{quote(call_uuid, safe='')}/Record/"


def record_url(api_base: str, auth_id: str, call_uuid: str) -> str:
    """``{api_base}/Account/{auth_id}/Call/{call_uuid}/Record/``."""
    return f"{api_base.rstrip('/')}{record_path(auth_id, call_uuid)}"


class VobizClient:
    """Stops recordings; every call returns its :class:`Classification`, a timeout or reset included.

    One connection pool for the API's host, called with the request's path: the base URL is parsed
    once, not on every call, and each account's headers are built once.
    """

    def __init__(self, api: ApiSettings, *, concurrency: int) -> None:
        self.api = api
        # One keep-alive connection per worker thread; never block waiting for a free one.
        self._pool = urllib3.connection_from_url(api.base_url, maxsize=max(1, concurrency), block=False)
        self._base_path = (urllib3.util.parse_url(api.base_url).path or "").rstrip("/")
        self._timeout = urllib3.Timeout(connect=api.connect_timeout_s, read=api.read_timeout_s)
        self._headers: dict[tuple[str, str], dict[str, str]] = {}

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    def _headers_for(self, auth_id: str, token: Secret) -> dict[str, str]:
        """The headers of every call made as ``auth_id`` (built once per account and token)."""
        revealed = token.reveal()
        found = self._headers.get((auth_id, revealed))
        if found is None:
            found = self._headers[(auth_id, revealed)] = {
                "X-Auth-ID": auth_id,
                "X-Auth-Token": revealed,
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            }
        return found

    def stop_recording(
        self, *, auth_id: str, token: Secret, call_uuid: str, url: str | None
    ) -> Classification:
        """DELETE the recording(s); ``url=None`` stops every recording on the call."""
        headers = self._headers_for(auth_id, token)
        body = None
        if url is not None:
            body = json.dumps({"URL": url}).encode()
            headers = {**headers, "Content-Type": "application/json"}
        path = self._base_path + record_path(auth_id, call_uuid)
        try:
            response = self._pool.urlopen(
                "DELETE",
                path,
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
                assert_same_host=False,
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

    def call_recordings(
        self, *, auth_id: str, token: Secret, call_uuid: str
    ) -> CallRecordings | LookupFailed:
        """Every recording the Recordings API lists for a call, page by page (one lookup)."""
        found: list[Recording] = []
        offset: int | None = 0
        pages = 0
        has_end_times = True
        while offset is not None and pages < MAX_PAGES:
            page = self._page(auth_id=auth_id, token=token, call_uuid=call_uuid, offset=offset)
            if isinstance(page, LookupFailed):
                return page
            pages += 1
            found.extend(page.recordings)
            has_end_times = has_end_times and page.has_end_times
            offset = page.next_offset if page.next_offset is not None and page.next_offset > offset else None
        return CallRecordings(tuple(found), has_end_times, pages)

    def _page(self, *, auth_id: str, token: Secret, call_uuid: str, offset: int) -> Page | LookupFailed:
        query = urlencode({"call_uuid": call_uuid, "limit": str(PAGE_LIMIT), "offset": str(offset)})
        try:
            response = self._pool.urlopen(
                "GET",
                f"{self._base_path}{recordings_path(auth_id)}?{query}",
                headers=self._headers_for(auth_id, token),
                timeout=self._timeout,
                retries=False,
                redirect=False,
                assert_same_host=False,
            )
        except http_errors.NewConnectionError as exc:
            return LookupFailed("connection", transient=True, error=f"connection error: {type(exc).__name__}")
        except http_errors.TimeoutError as exc:
            return LookupFailed("timeout", transient=True, error=f"timeout: {type(exc).__name__}")
        except (http_errors.HTTPError, OSError) as exc:
            return LookupFailed("connection", transient=True, error=f"request failed: {type(exc).__name__}")
        if response.status != 200:  # noqa: PLR2004 - the list's one success
            error = parse_error_body(response.data).message or response.reason or f"HTTP {response.status}"
            transient = response.status in TRANSIENT_STATUSES or response.status >= 500  # noqa: PLR2004
            return LookupFailed(http_reason(response.status), transient=transient, error=error)
        try:
            return parse_page(response.data, offset=offset, call_uuid=call_uuid)
        except BadAnswerError as exc:
            return LookupFailed(ConfirmReason.BAD_ANSWER, transient=False, error=str(exc))
