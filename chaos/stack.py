"""One scenario's private stack: Redis with AOF, the sandbox with two accounts, workers and producers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Final

from harness import stack

AUTH_ID: Final = "MA_CHAOS0001"
TOKEN: Final = "tok-Chaos-7c1e55aa90d3"
#: A second account, for scenarios that deactivate one (403) while the other keeps working.
OTHER_AUTH_ID: Final = "SA_CHAOS0002"
OTHER_TOKEN: Final = "tok-Chaos-other-41b2f0"

#: The worker configuration every scenario starts from: short timeouts and backoff, so that a
#: scenario's retries, redeliveries and lock expiries happen within seconds, not minutes.
BASE_ENV: Final = {
    "VOBIZ_AUTH_ID": AUTH_ID,
    "VOBIZ_AUTH_TOKEN": TOKEN,
    "RECSTOP_BACKOFF_BASE_S": "0.2",
    "RECSTOP_BACKOFF_CAP_S": "2",
    "RECSTOP_MAX_ATTEMPTS": "12",
    "RECSTOP_CONNECT_TIMEOUT_S": "1",
    "RECSTOP_READ_TIMEOUT_S": "2",
    "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "2",
    "RECSTOP_CONCURRENCY": "16",
    "RECSTOP_SCHEDULER_POLL_S": "0.05",
    "RECSTOP_VISIBILITY_TIMEOUT_S": "10",
    "RECSTOP_LOG_FORMAT": "json",
    "RECSTOP_LOG_LEVEL": "INFO",
}


class Stack(stack.Stack):
    """The harness stack: AOF with ``appendfsync`` per scenario, both accounts, ``BASE_ENV`` under ``env``."""

    temp_prefix: ClassVar[str] = "recstop-chaos-"
    worker_stop_s: ClassVar[float] = 15.0

    def __init__(
        self,
        name: str,
        *,
        appendfsync: str = "everysec",
        env: Mapping[str, str] | None = None,
        keep_dir: Path | None = None,
    ) -> None:
        super().__init__(
            name,
            redis=stack.RedisOptions(appendfsync=appendfsync),
            sandbox=stack.SandboxOptions(
                {AUTH_ID: TOKEN, OTHER_AUTH_ID: OTHER_TOKEN}, credentials_file=True, seed=7
            ),
            env={**BASE_ENV, **(env or {})},
            keep_dir=keep_dir,
        )
