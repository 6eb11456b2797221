"""The naive Celery reference: one task that DELETEs a recording, as a plain Celery user writes it.

``celery -A bench.naive worker -Q naive`` finds ``app`` here; it is built once, on first access,
from the environment:

- ``NAIVE_BROKER_URL`` (required): the Redis broker.
- ``NAIVE_API_BASE``, ``NAIVE_AUTH_ID``, ``NAIVE_AUTH_TOKEN``: where and as whom to call Vobiz.
- ``NAIVE_MODE``: ``default`` (Celery's defaults: prefork, one process per CPU, prefetch 4, a
  fresh ``requests.delete`` per call) or ``tuned`` (thread pool of ``NAIVE_CONCURRENCY``,
  prefetch 1, late acks, one keep-alive ``requests.Session`` per thread).

Importing the module reads nothing, so the producer side (:func:`publish`) and the process
wrapper (:class:`NaiveWorker`) can be imported without that environment.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final, Self
from urllib.parse import quote

import requests
from celery import Celery
from celery.signals import worker_ready
from requests.adapters import HTTPAdapter

from harness.procs import ROOT, terminate, wait_for

QUEUE: Final = "naive"
TASK_NAME: Final = "naive.stop_recording"
MODES: Final = ("default", "tuned")
#: What the worker logs (at WARNING, so that the per-task INFO lines cost nothing) once it consumes.
READY_LINE: Final = "naive worker ready"
HTTP_TIMEOUT_S: Final = 10

log = logging.getLogger("bench.naive")


class NaiveStopError(Exception):
    """Vobiz answered the DELETE with a status outside 2xx."""


def record_url(api_base: str, auth_id: str, call_uuid: str) -> str:
    """``{api_base}/Account/{auth_id}/Call/{call_uuid}/Record/``."""
    return (
        f"{api_base.rstrip('/')}/Account/{quote(auth_id, safe='')}/Call/{quote(call_uuid, safe='')}/Record/"
    )


def make_app(env: Mapping[str, str]) -> Celery:
    """A Celery app configured from ``env`` (``NAIVE_*``), with ``naive.stop_recording`` registered."""
    broker_url = env.get("NAIVE_BROKER_URL")
    if not broker_url:
        raise KeyError("NAIVE_BROKER_URL is required")
    mode = env.get("NAIVE_MODE", "default")
    if mode not in MODES:
        raise ValueError(f"NAIVE_MODE must be one of {MODES}, not {mode!r}")
    api_base = env.get("NAIVE_API_BASE", "")
    auth_id = env.get("NAIVE_AUTH_ID", "")
    token = env.get("NAIVE_AUTH_TOKEN", "")
    headers = {"X-Auth-ID": auth_id, "X-Auth-Token": token}

    app = Celery("naive", broker=broker_url, set_as_current=False)
    # Only what it takes to run: the queue, JSON, and no result backend. Everything else is Celery's.
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    if mode == "tuned":
        concurrency = int(env.get("NAIVE_CONCURRENCY", "16"))
        app.conf.update(
            worker_pool="threads",
            worker_concurrency=concurrency,
            worker_prefetch_multiplier=1,
            task_acks_late=True,
        )
        local = threading.local()

        def session() -> requests.Session:
            found: requests.Session | None = getattr(local, "session", None)
            if found is None:
                found = requests.Session()
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
                found.mount("http://", adapter)
                found.mount("https://", adapter)
                local.session = found
            return found

        def delete(url: str) -> requests.Response:
            return session().delete(url, headers=headers, timeout=HTTP_TIMEOUT_S)

    else:

        def delete(url: str) -> requests.Response:
            return requests.delete(url, headers=headers, timeout=HTTP_TIMEOUT_S)

    def stop_recording(call_uuid: str) -> int:
        response = delete(record_url(api_base, auth_id, call_uuid))
        if not 200 <= response.status_code < 300:
            raise NaiveStopError(f"{response.status_code} for {call_uuid}")
        return response.status_code

    # NAIVE_RATE_LIMIT ("200/s"): Celery's own rate limit, which holds per worker instance only.
    app.task(name=TASK_NAME, rate_limit=env.get("NAIVE_RATE_LIMIT") or None)(stop_recording)
    return app


@functools.cache
def _env_app() -> Celery:
    return make_app(os.environ)


def __getattr__(name: str) -> Celery:
    """``bench.naive.app``: the app built from ``os.environ``, once (what ``celery -A`` looks up)."""
    if name == "app":
        return _env_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _announce_ready(**_: object) -> None:
    log.warning(READY_LINE)


worker_ready.connect(_announce_ready, weak=False)


def publish(broker_url: str, call_uuids: Sequence[str], stop: threading.Event | None = None) -> float:
    """Send one ``naive.stop_recording`` per call_uuid with ``send_task`` in a loop; the seconds it took.

    ``stop`` ends the loop early (a measurement that hit its time cap).
    """
    app = make_app({"NAIVE_BROKER_URL": broker_url})
    try:
        started = time.perf_counter()
        for call_uuid in call_uuids:
            if stop is not None and stop.is_set():
                break
            app.send_task(TASK_NAME, args=[call_uuid], queue=QUEUE)
        return time.perf_counter() - started
    finally:
        app.close()


class NaiveWorker:
    """``celery -A bench.naive worker -Q naive`` as a subprocess with its ``NAIVE_*`` environment."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The worker's main process id (prefork children are its descendants)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, *, ready_timeout_s: float = 60.0) -> Self:
        """Start the worker and wait until it consumes from the queue."""
        argv = [sys.executable, "-m", "celery", "-A", "bench.naive", "worker", "-Q", QUEUE]
        argv += ["--loglevel", "WARNING"]  # Celery's defaults otherwise: gossip, mingle, heartbeats on
        env = {**os.environ, **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_for(self._ready, timeout_s=ready_timeout_s, interval_s=0.1, what="the naive worker")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"naive worker exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}"
            )
        return READY_LINE in self.log_text()

    def log_text(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (warm shutdown) and wait; SIGKILL after ``timeout_s``."""
        terminate(self.proc, timeout_s)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
