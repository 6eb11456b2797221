"""Flower (``celery -A recstop.worker flower``) as a real process on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import requests

from harness.procs import ROOT, free_port, terminate, wait_for


class FlowerProcess:
    """``celery -A recstop.worker flower`` as a real process on ``port`` (else a free one), output in a file.

    With ``basic_auth`` (user, password) Flower asks for it on its UI and API; without it the API
    is opened with ``FLOWER_UNAUTHENTICATED_API`` (tests that only read what Flower shows).

    It runs in a session of its own: a Ctrl-C in the terminal (``make run``) reaches only the stack,
    which stops Flower with one SIGTERM. Flower caught the terminal's SIGINT itself before, and the
    SIGTERM that followed hit its exit handlers: ``sys.exit(0)`` from its SIGTERM handler inside
    ``atexit``, a ``SystemExit: 0`` traceback at the end of its log.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        basic_auth: tuple[str, str] | None = None,
        max_tasks: int | None = None,
        port: int | None = None,
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.basic_auth = basic_auth
        self.max_tasks = max_tasks
        self.port = free_port() if port is None else port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Where Flower listens."""
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        """The command line that starts this Flower."""
        argv = [sys.executable, "-m", "celery", "-A", "recstop.worker", "flower"]
        # No --tasks_columns: the columns and how a stop reads in them come with the app, as for
        # any `celery -A recstop.worker flower` (worker/celeryapp/flowerview.py).
        argv += [f"--port={self.port}", "--address=127.0.0.1"]
        if self.basic_auth is not None:
            argv.append(f"--basic-auth={self.basic_auth[0]}:{self.basic_auth[1]}")
        if self.max_tasks is not None:
            argv.append(f"--max_tasks={self.max_tasks}")
        return argv

    def start(self) -> FlowerProcess:
        """Start Flower and wait until its health check answers."""
        env = {**os.environ, **self.env}
        if self.basic_auth is None:
            env["FLOWER_UNAUTHENTICATED_API"] = "true"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self._healthy, timeout_s=30, interval_s=0.1, what="flower to answer")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"flower exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        try:
            return requests.get(f"{self.base_url}/healthcheck", timeout=2).ok
        except requests.RequestException:
            return False

    def request(self, path: str, *, auth: bool = True) -> requests.Response:
        """GET ``path``, with the basic-auth credentials unless ``auth`` is false."""
        credentials = self.basic_auth if auth else None
        return requests.get(f"{self.base_url}{path}", auth=credentials, timeout=10)

    def get(self, path: str) -> str:
        """GET ``path`` (with the credentials, if any) and return the body; fail on an error status."""
        response = self.request(path)
        response.raise_for_status()
        return response.text

    def log_text(self) -> str:
        """Everything Flower printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM Flower; SIGKILL it if it lingers."""
        terminate(self.proc, 15)
        self.proc = None
