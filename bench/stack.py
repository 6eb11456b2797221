"""One scenario's private stack: the harness stack plus naive reference workers and the request feed.

recstop workers run as plain ``celery -A recstop.worker worker`` with recstop's defaults: the environment
only says where Redis and the API are and which account to use (plus what a scenario varies).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from bench.naive import NaiveWorker
from harness.procs import wait_for
from harness.sandbox import SandboxProcess
from harness.stack import SandboxOptions, Stack
from recstop.worker.state.inflight import inflight_lists

AUTH_ID: Final = "MA_BENCH0001"
TOKEN: Final = "tok-Bench-5d0c2e71"
POLL_S: Final = 0.25


class RequestFeed:
    """The sandbox's request log, read incrementally (``since_seq``) so polling stays cheap."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox
        self.entries: list[dict[str, Any]] = []
        self._seq = 0

    def poll(self) -> list[dict[str, Any]]:
        """Fetch what arrived since the last poll; return the new entries."""
        fresh = self.sandbox.client.requests(since_seq=self._seq)
        if fresh:
            self._seq = int(fresh[-1]["seq"])
            self.entries.extend(fresh)
        return fresh

    def reset(self) -> None:
        """Forget what was read (the sandbox keeps numbering)."""
        self.poll()
        self.entries.clear()

    def first_ok(self) -> dict[str, float]:
        """call_uuid → arrival time of its first 204."""
        seen: dict[str, float] = {}
        for entry in self.entries:
            if entry["status"] == 204 and entry["call_uuid"] not in seen:
                seen[entry["call_uuid"]] = float(entry["time"])
        return seen

    def wait_ok(self, call_uuids: set[str], *, timeout_s: float) -> bool:
        """Poll until every call in ``call_uuids`` got a 204, or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        missing = set(call_uuids)
        while True:
            for entry in self.poll():
                if entry["status"] == 204:
                    missing.discard(entry["call_uuid"])
            if not missing:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)  # polling a remote log at a fixed pace; completion is the condition


class BenchStack(Stack):
    """A harness stack (Redis AOF everysec, the sandbox with one account, JSON logs) plus naive workers."""

    temp_prefix: ClassVar[str] = "recstop-bench-"

    def __init__(self, name: str, *, latency_ms: float = 0.0, keep_dir: Path | None = None) -> None:
        super().__init__(
            name,
            sandbox=SandboxOptions({AUTH_ID: TOKEN}),
            env={"RECSTOP_LOG_FORMAT": "json"},
            keep_dir=keep_dir,
        )
        self.latency_ms = latency_ms
        self.naive: list[NaiveWorker] = []
        self.feed = RequestFeed(self.sandbox)

    def start(self) -> Self:
        """Start Redis and the sandbox; give every sandbox answer ``latency_ms``."""
        super().start()
        self.sandbox.client.set_faults([], latency_ms=self.latency_ms)
        return self

    def start_naive(
        self, count: int, mode: str, concurrency: int, *, rate_limit: str = ""
    ) -> list[NaiveWorker]:
        """Start ``count`` naive reference workers (``default`` or ``tuned``)."""
        env = {
            "NAIVE_BROKER_URL": self.broker_url,
            "NAIVE_API_BASE": self.sandbox.api_base,
            "NAIVE_AUTH_ID": AUTH_ID,
            "NAIVE_AUTH_TOKEN": TOKEN,
            "NAIVE_MODE": mode,
            "NAIVE_CONCURRENCY": str(concurrency),
            "NAIVE_RATE_LIMIT": rate_limit,
        }
        started = [
            NaiveWorker(env, self.directory / f"naive-{mode}-{len(self.naive) + i}.log").start()
            for i in range(count)
        ]
        self.naive.extend(started)
        return started

    def stop_workers(self) -> None:
        """Stop every worker of either kind."""
        super().stop_workers()
        for naive in self.naive:
            naive.stop(timeout_s=self.worker_stop_s)
        self.naive.clear()

    def drained(self, queues: Mapping[str, int] | None = None) -> bool:
        """Whether every queue list is empty and no worker holds a message.

        recstop's workers hold messages in their in-flight lists; the naive reference runs kombu's
        stock transport, which holds them in its ``unacked`` hash.
        """
        client = self.client()
        try:
            names = dict(queues or {"recstop": 0, "recstop.urgent": 0, "naive": 0})
            idle = not inflight_lists(client) and client.hlen("unacked") == 0
            return idle and all(client.llen(name) == 0 for name in names)
        finally:
            client.close()

    def wait_drained(self, timeout_s: float) -> None:
        """Wait until the queues are empty."""
        wait_for(self.drained, timeout_s=timeout_s, interval_s=POLL_S, what="the queues to drain")
