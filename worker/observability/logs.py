"""Structured logging: structlog processors shared by our lines and by Celery's own."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from recstop.worker.config.settings import LogFormat
from recstop.worker.model.redaction import Redactor

#: Fields every task line carries (None when unknown), so lines can be grouped per call.
TASK_FIELDS = ("call_uuid", "task_id", "attempt", "auth_id", "request_id")


class RedactSecrets:
    """Processor: mask every known token value anywhere in the event."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._redactor = Redactor(secrets)

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        """Return the event with secrets masked."""
        return {key: self._redactor.value(value) for key, value in event.items()}


def fill_task_fields(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Processor: lines logged inside a task carry all the task fields, even when unknown."""
    if "task_id" in event:
        for name in TASK_FIELDS:
            event.setdefault(name, None)
    return event


def _renderer(fmt: LogFormat, stream: TextIO) -> Processor:
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    if console:
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer(sort_keys=False)


class _Enqueue(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: formatting happens there, not under a lock here."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record unchanged (the default would format it in the logging thread)."""
        return record


class _BatchWriter:
    """The writer thread: takes every record queued so far at once, formats them, writes them as one.

    One ``write`` and one ``flush`` per batch instead of per line, and one wake-up of this thread
    per batch: a busy worker queues a few lines per stop, and each write of its own was a system
    call and a thread switch (both expensive on this VM).
    """

    #: Most lines written at once (a bound on the text held in memory).
    MAX_BATCH = 512
    #: After a write, the lines of this long are gathered before the next: the writer wakes at
    #: most this often while lines keep coming (each wake-up is a thread switch), and a line is
    #: written at most this much after it was logged.
    LINGER_S = 0.05

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord | None], handler: logging.StreamHandler[TextIO]
    ) -> None:
        self._records = records
        self._handler = handler
        self._thread = threading.Thread(target=self._run, name="recstop-log-writer", daemon=True)

    def start(self) -> None:
        """Start writing."""
        self._thread.start()

    def stop(self) -> None:
        """Write out what is queued, then stop the thread."""
        self._records.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._records.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < self.MAX_BATCH and batch[-1] is not None:
                    batch.append(self._records.get_nowait())
            lines = []
            for record in batch:
                if record is None:
                    continue
                try:
                    lines.append(self._handler.format(record))
                except Exception:  # noqa: BLE001 - logging never raises into the worker; the line is reported
                    self._handler.handleError(record)
            if lines:
                stream = self._handler.stream
                with contextlib.suppress(OSError, ValueError):  # the output closed at exit
                    stream.write("\n".join(lines) + "\n")
                    stream.flush()
            if batch[-1] is None:
                return
            time.sleep(self.LINGER_S)  # gathering the next batch (not synchronisation)


_listener: _BatchWriter | None = None


def configure_logging(
    *,
    log_level: str,
    log_format: LogFormat,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    background: bool = False,
) -> None:
    """Route structlog and the standard library (Celery included) through one pipeline.

    With ``background``, lines are rendered and written by one writer thread, the lines queued
    meanwhile in one write: a worker's task threads only queue their records instead of taking
    turns on the output's lock (which cost a sixth of a busy worker's CPU). The queue is flushed
    at exit.
    """
    out = stream or sys.stdout
    # What must be read where the line is logged: the task's context (contextvars are per thread),
    # the time, and the exception being handled. The rest runs where the line is rendered (the
    # writer thread, with ``background``), for structlog's lines and the standard library's alike.
    at_call: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    at_render: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        fill_task_fields,
        RedactSecrets(secrets),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *at_call,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *at_call],
        processors=[
            *at_render,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(log_format, out),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    _stop_listener()
    if background:
        global _listener  # noqa: PLW0603 - one writer thread per process, replaced on reconfiguration
        records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        _listener = _BatchWriter(records, handler)
        _listener.start()
        atexit.register(_stop_listener)
        root.handlers = [_Enqueue(records)]
    else:
        root.handlers = [handler]
    root.setLevel(log_level)
    logging.captureWarnings(
        capture=True
    )  # warnings.warn (Celery's SecurityWarning ...) becomes a JSON line too
    # Celery's per-task "received"/"succeeded" lines repeat our own attempt lines without the
    # call context; our "attempt" line is the one line per attempt.
    for noisy in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(log_level)))


def _stop_listener() -> None:
    """Write out what is queued and stop the writer thread, if there is one."""
    global _listener  # noqa: PLW0603
    if _listener is not None:
        _listener.stop()
        _listener = None


def reset_logging() -> None:
    """Undo ``configure_logging`` (for tests and embedding)."""
    _stop_listener()
    structlog.reset_defaults()
    logging.captureWarnings(capture=False)
    logging.getLogger().handlers = []


def json_say(msg: str, f: TextIO | None = None) -> None:
    """Stand-in for Celery's ``safe_say``: the same signal-safe raw write, as one JSON line."""
    stream = f or sys.__stdout__
    if stream is None:
        return
    line = {
        "event": msg.strip(),
        "level": "warning",
        "logger": "celery.apps.worker",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    with contextlib.suppress(OSError, ValueError):
        os.write(stream.fileno(), (json.dumps(line) + "\n").encode())


def install_json_say(fmt: LogFormat, stream: TextIO) -> bool:
    """Make Celery's shutdown messages (written from signal handlers) JSON lines too."""
    if fmt == "console" or (fmt == "auto" and stream.isatty()):
        return False
    import celery.apps.worker as celery_worker  # noqa: PLC0415 - only in worker processes

    celery_worker.safe_say = json_say
    return True
