"""``recstop audit sink`` as a real process, its output in a file, in a session of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.procs import ROOT, terminate, wait_for

#: What the sink logs once its schema is migrated and its consumer group exists.
STARTED = "audit_sink_started"


class AuditSinkProcess:
    """The audit sink with the environment ``env`` (``RECSTOP_BROKER_URL``, ``RECSTOP_AUDIT_DB``).

    ``args`` are extra ``recstop audit sink`` options (``--batch``, ``--claim-idle-s`` ...).
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, *, args: Sequence[str] = ()) -> None:
        self.env = {**env, "RECSTOP_LOG_FORMAT": "json"}
        self.log_path = log_path
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts_before = 0

    def argv(self) -> list[str]:
        """The command line: ``recstop audit sink`` with this interpreter."""
        return [sys.executable, "-m", "recstop.producers.cli", "audit", "sink", *self.args]

    def start(self, *, wait: bool = True, timeout_s: float = 30.0) -> AuditSinkProcess:
        """Start it; with ``wait``, until it logs ``audit_sink_started`` (schema ready, group made)."""
        self._starts_before = self.log_text().count(STARTED)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            wait_for(self._started, timeout_s=timeout_s, interval_s=0.1, what="the audit sink to start")
        return self

    def _started(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"audit sink exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        return self.log_text().count(STARTED) > self._starts_before

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """Everything the sink printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (it finishes its batch, commits, acks) and wait; SIGKILL after ``timeout_s``."""
        if self.proc is not None:
            terminate(self.proc, timeout_s)
