"""Recording callbacks: once a recording with a ``callback_url`` is finalized, its details are sent there.

One watcher thread waits for the next recording to be finalized (or for the state to change) and queues
its callback; a few sender threads deliver them, form-encoded as Vobiz's callbacks are (in the query
string for ``GET``), once each, without retries. Every attempt, delivered or not, goes to the callback
log; nothing a callback URL does can block a request handler or stop the server.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Final, Protocol
from urllib.parse import urlencode

from recstop.sandbox.recordings import Shown, callback_params

CALLBACK_TIMEOUT_S: Final = 5.0
CALLBACK_SENDERS: Final = 4
#: Shortest wait of the watcher: with a frozen clock a due time can stay a hair away.
MIN_WAIT_S: Final = 0.01
#: The most of a callback's answer read (and ignored).
MAX_ANSWER_BYTES: Final = 64 << 10
FORM_TYPE: Final = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class CallbackJob:
    """One callback to send."""

    url: str
    method: str
    params: tuple[tuple[str, str], ...]
    recording_id: str
    call_uuid: str

    @classmethod
    def of(cls, shown: Shown) -> CallbackJob:
        """The callback of a finalized recording that has a ``callback_url``."""
        rec = shown.recording
        assert rec.callback_url is not None
        params = tuple(callback_params(shown).items())
        return cls(rec.callback_url, rec.callback_method, params, rec.recording_id, rec.call_uuid)


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One callback sent: what, where, and its answer's status or why there was none."""

    time: float
    recording_id: str
    call_uuid: str
    url: str
    method: str
    params: dict[str, str]
    status: int | None
    error: str | None
    duration_ms: float

    def to_json(self) -> dict[str, object]:
        """The attempt as a JSON object."""
        return asdict(self)


class CallbackSource(Protocol):
    """What the dispatcher needs from the sandbox state."""

    def due_callbacks(self) -> tuple[list[CallbackJob], float | None, int]:
        """Callbacks now due, seconds until the next one (``None``: none known), the change count."""

    def wait_for_change(self, generation: int, timeout_s: float | None) -> None:
        """Return once the change count differs from ``generation`` or ``timeout_s`` passed."""

    def wake(self) -> None:
        """Count a change, waking the watcher."""

    def log_callback(self, attempt: CallbackAttempt) -> None:
        """Record one attempt."""


_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _request(job: CallbackJob) -> urllib.request.Request:
    form = urlencode(job.params)
    if job.method == "GET":
        joiner = "&" if "?" in job.url else "?"
        return urllib.request.Request(f"{job.url}{joiner}{form}", method="GET")  # noqa: S310 - http(s) only
    headers = {"Content-Type": FORM_TYPE}
    return urllib.request.Request(job.url, form.encode(), headers, method=job.method)  # noqa: S310


def deliver(job: CallbackJob, timeout_s: float = CALLBACK_TIMEOUT_S) -> CallbackAttempt:
    """Send one callback; never raises: a failure is the attempt's ``error``."""
    sent, started = time.time(), time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        with _OPENER.open(_request(job), timeout=timeout_s) as answer:
            answer.read(MAX_ANSWER_BYTES)
            status = answer.status
    except urllib.error.HTTPError as refused:
        status, error = refused.code, f"HTTP {refused.code}"
        refused.close()
    except (OSError, ValueError, http.client.HTTPException) as failed:
        reason = failed.reason if isinstance(failed, urllib.error.URLError) else None
        cause = reason if isinstance(reason, BaseException) else failed
        error = f"{type(cause).__name__}: {cause}"
    return CallbackAttempt(
        time=sent,
        recording_id=job.recording_id,
        call_uuid=job.call_uuid,
        url=job.url,
        method=job.method,
        params=dict(job.params),
        status=status,
        error=error,
        duration_ms=round((time.monotonic() - started) * 1000, 3),
    )


class CallbackDispatcher:
    """The watcher and sender threads of one sandbox (daemon threads: they never delay its stop)."""

    def __init__(
        self,
        source: CallbackSource,
        *,
        senders: int = CALLBACK_SENDERS,
        timeout_s: float = CALLBACK_TIMEOUT_S,
        name: str = "vobiz-sandbox",
    ) -> None:
        self._source = source
        self._timeout_s = timeout_s
        self._jobs: queue.SimpleQueue[CallbackJob | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._watch, name=f"{name}-callbacks", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send, name=f"{name}-callback-{n}", daemon=True)
            for n in range(senders)
        ]
        self._started = False

    def start(self) -> None:
        """Start the threads (once)."""
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    def stop(self) -> None:
        """Tell the threads to end; callbacks not yet sent are dropped."""
        self._stopping.set()
        self._source.wake()
        for _ in self._threads[1:]:
            self._jobs.put(None)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            due, wait_s, generation = self._source.due_callbacks()
            for job in due:
                self._jobs.put(job)
            self._source.wait_for_change(generation, None if wait_s is None else max(wait_s, MIN_WAIT_S))

    def _send(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._stopping.is_set():
                return
            self._source.log_callback(deliver(job, self._timeout_s))
