"""One scenario's private stack: Redis with AOF, the sandbox with two accounts, workers and producers."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Final

from chaos.overrides import DEFAULTS, Overrides
from harness import stack
from recstop.worker.state.acl import Role

AUTH_ID: Final = "MA_CHAOS0001"
TOKEN: Final = "tok-Chaos-7c1e55aa90d3"
#: A second account, for scenarios that deactivate one (403) while the other keeps working.
OTHER_AUTH_ID: Final = "SA_CHAOS0002"
OTHER_TOKEN: Final = "tok-Chaos-other-41b2f0"

#: What a deployment must say, and nothing else: the account and JSON logs. The harness adds where
#: Redis and the API are (``RECSTOP_BROKER_URL``, ``VOBIZ_API_BASE``) and the second account
#: (``RECSTOP_CREDENTIALS_FILE``). Every other setting is the shipped default unless a scenario
#: overrides it, and then the table says so.
BASE_ENV: Final = {
    "VOBIZ_AUTH_ID": AUTH_ID,
    "VOBIZ_AUTH_TOKEN": TOKEN,
    "RECSTOP_LOG_FORMAT": "json",
}


class RedisRefusedError(AssertionError):
    """A part of a scenario's stack was refused a command, key or channel by its Redis user."""

    def __init__(self, name: str, denials: list[str]) -> None:
        super().__init__(f"stack {name}: Redis refused {len(denials)} time(s): {denials[:5]}")


class Stack(stack.Stack):
    """The harness stack: AOF with ``appendfsync`` per scenario, both accounts, ``BASE_ENV`` and overrides.

    Workers run in process groups of their own (``WorkerProcess.kill_group``) and stop together.
    """

    temp_prefix: ClassVar[str] = "recstop-chaos-"
    worker_stop_s: ClassVar[float] = 20.0
    worker_sessions: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        *,
        appendfsync: str = "everysec",
        overrides: Overrides = DEFAULTS,
        keep_dir: Path | None = None,
        redis_url: str | Callable[[Role], str] | None = None,
        watch_url: str | None = None,
    ) -> None:
        """``redis_url``: an external Redis (a ``sentinel://`` URL or each role's), read via ``watch_url``."""
        self.overrides = overrides
        super().__init__(
            name,
            redis=stack.RedisOptions(appendfsync=appendfsync) if redis_url is None else redis_url,
            watch_url=watch_url,
            sandbox=stack.SandboxOptions(
                {AUTH_ID: TOKEN, OTHER_AUTH_ID: OTHER_TOKEN}, credentials_file=True, seed=7
            ),
            env={**BASE_ENV, **overrides.env},
            keep_dir=keep_dir,
        )

    def stop(self) -> None:
        """Stop the stack; a part Redis refused something (``ACL LOG``) fails the scenario."""
        stopping = not self._stopped
        super().stop()
        if stopping and self.denials:
            raise RedisRefusedError(self.name, self.denials)

    def stop_workers(self) -> None:
        """SIGTERM every worker at once, wait for them together; SIGKILL what outlives ``worker_stop_s``."""
        for worker in self.workers:
            if worker.alive and worker.proc is not None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.worker_stop_s
        for worker in self.workers:
            if worker.proc is not None:
                try:
                    worker.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    worker.kill_group()
            worker.stop(timeout_s=1.0)  # closes its log; the process is gone by now
        self.workers.clear()
