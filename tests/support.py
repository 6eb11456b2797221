"""Test helpers: the real-process harness (``harness``), re-exported for the tests."""

from __future__ import annotations

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

__all__ = [
    "ROOT",
    "RedisServer",
    "WorkerProcess",
    "free_port",
    "lpush_raw_message",
    "publish_raw",
    "redis_server_binary",
    "terminate",
    "wait_for",
]
