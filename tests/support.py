"""Helpers shared by the tests: the harness re-exported, and the waits and probes tests repeat."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.inprocess import InProcessWorker, LogCapture
from harness.poison import lpush_raw_message
from harness.procs import (
    ROOT,
    RedisServer,
    WorkerProcess,
    free_port,
    publish_raw,
    redis_server_binary,
    terminate,
    wait_for,
)
from worker.fetch import inflight_messages

__all__ = [
    "ROOT",
    "InProcessWorker",
    "LogCapture",
    "RedisServer",
    "WorkerProcess",
    "cli",
    "deletes",
    "final",
    "free_port",
    "in_flight",
    "lpush_raw_message",
    "publish_raw",
    "redis_server_binary",
    "terminate",
    "wait_for",
]


def in_flight(client: Any) -> int:
    """How many messages some consumer has fetched and not acknowledged."""
    return len(inflight_messages(client))


def final(producer: Any, call_uuid: str, url: str | None = None, timeout_s: float = 20.0) -> Any:
    """Wait until the stop is no longer pending and return its status record."""

    def done() -> Any:
        record = producer.status(call_uuid, url)
        return record if record and not record.state.pending else None

    return wait_for(done, timeout_s=timeout_s, what=f"stop of {call_uuid} to finish")


def deletes(sandbox_client: Any, call_uuid: str) -> list[dict[str, Any]]:
    """The DELETE requests the sandbox received for a call."""
    return [r for r in sandbox_client.requests(call_uuid=call_uuid) if r["method"] == "DELETE"]


def cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``recstop`` console script as a process."""
    exe = str(Path(sys.executable).parent / "recstop")
    return subprocess.run(  # noqa: PLW1510 - the exit code is what the tests assert
        [exe, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
