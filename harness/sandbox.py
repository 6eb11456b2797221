"""The Vobiz sandbox as its own process, so that load on it never competes with the caller's GIL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from harness.procs import ROOT, free_port, terminate, wait_for
from recstop.sandbox import SandboxClient


class SandboxProcess:
    """``python -m recstop.sandbox`` on a loopback port (``port``, else a free one), with a control client."""

    def __init__(
        self,
        log_path: Path,
        accounts: Mapping[str, str],
        *,
        auto_calls: bool = True,
        seed: int | None = None,
        port: int | None = None,
        new_session: bool = False,
    ) -> None:
        """``new_session``: run in a session (and process group) of its own, out of a terminal's Ctrl-C."""
        self.log_path = log_path
        self.new_session = new_session
        self.accounts = dict(accounts)
        self.auto_calls = auto_calls
        self.seed = seed
        self.port = free_port() if port is None else port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.client = SandboxClient(self.base_url, timeout_s=30.0)

    @property
    def base_url(self) -> str:
        """Where the sandbox listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The Vobiz API base URL that workers are configured with."""
        return f"{self.base_url}/api/v1"

    def start(self) -> SandboxProcess:
        """Start the server and wait until its health endpoint answers."""
        argv = [sys.executable, "-m", "recstop.sandbox", "--port", str(self.port)]
        for auth_id, token in self.accounts.items():
            argv += ["--account", f"{auth_id}:{token}"]
        if self.auto_calls:
            argv.append("--auto-calls")
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=self.new_session
        )
        wait_for(self._healthy, timeout_s=20, interval_s=0.1, what="the sandbox to answer")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"sandbox exited with {self.proc.returncode}; see {self.log_path}")
        try:
            return self.client.health()
        except OSError:
            return False

    def stop(self) -> None:
        """Terminate the server and close the control client (a no-op when it is not running)."""
        self.client.close()
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
