"""A recstop worker inside the test process: Celery's real consumer, recstop's task, executor and scheduler.

``InProcessWorker`` runs ``worker.app.create_app``'s app in a Celery ``WorkController`` on a thread,
against the test's own Redis and sandbox, so a behaviour test pays no process start (about 2.6 s
each for ``celery -A recstop.worker worker``). What only a real process shows (signals, ``kill -9``, the
``celery`` command line, Flower) is tested with ``harness.procs.WorkerProcess``.

Celery keeps some state per process (the app that pool threads run tasks with, the worker state,
kombu's event loop), so one in-process worker runs at a time; a test of several workers at once
starts them as processes.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from typing import Any, ClassVar, Self

from celery import Celery
from celery.contrib.testing.worker import TestWorkController

from harness.procs import json_lines
from recstop.worker.celeryapp.app import create_app
from recstop.worker.config.settings import Settings
from recstop.worker.observability.logs import configure_logging, reset_logging
from recstop.worker.run.runtime import build_runtime


class LogCapture:
    """Every log line of the process (recstop's and Celery's own) as JSON, kept in memory."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._stream = io.StringIO()
        self._lock = threading.Lock()
        configure_logging(log_level="INFO", log_format="json", secrets=secrets, stream=self._stream)

    def text(self) -> str:
        """Everything logged so far."""
        with self._lock:
            return self._stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """Every line parsed as JSON (fails on a line that is not JSON)."""
        return json_lines(self.text())

    def close(self) -> None:
        """Undo the logging configuration."""
        reset_logging()


class InProcessWorker:
    """A worker on a thread of this process, with the settings ``celery -A recstop.worker worker`` reads."""

    _running: ClassVar[set[str]] = set()

    def __init__(self, settings: Settings, logs: LogCapture, *, name: str) -> None:
        self.settings = settings
        self.logs = logs
        self.name = name
        self.app = in_process_app(settings)
        self._controller: TestWorkController | None = None
        self._thread: threading.Thread | None = None

    @property
    def hostname(self) -> str:
        """The node name, as ``-n NAME@%h`` would give."""
        return f"{self.name}@inprocess"

    def start(self) -> Self:
        """Start consuming; return once the consumer is ready."""
        if self._running:
            raise RuntimeError(
                f"in-process worker {sorted(self._running)} still runs: start several workers as processes"
            )
        # Pool threads run tasks with Celery's default app: make it this one.
        self.app.set_current()
        self.app.set_default()
        controller = TestWorkController(
            app=self.app,
            hostname=self.hostname,
            concurrency=self.settings.concurrency,
            pool="threads",
            loglevel="INFO",
            ready_callback=None,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._controller = controller
        self._thread = threading.Thread(target=controller.start, name=f"worker-{self.name}", daemon=True)
        self._thread.start()
        controller.ensure_started()
        self._running.add(self.hostname)
        return self

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 20.0) -> None:
        """Warm shutdown: stop consuming, let running tasks finish, hand unstarted messages back."""
        if self._controller is None or self._thread is None:
            return
        self._controller.stop()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"in-process worker {self.name} did not stop within {timeout_s} s")
        self._running.discard(self.hostname)
        self._controller = self._thread = None

    def log_text(self) -> str:
        """Everything this process logged (every in-process worker shares the capture)."""
        return self.logs.text()

    def log_records(self) -> list[dict[str, Any]]:
        """Every log line as JSON."""
        return self.logs.records()


def in_process_app(settings: Settings) -> Celery:
    """The app ``celery -A recstop.worker worker`` would build for ``settings``."""
    return create_app(settings, runtime=build_runtime(settings))
