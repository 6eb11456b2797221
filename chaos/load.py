"""Bounded load: enqueue stops at a steady rate from a few threads, retrying refused enqueues."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.procs import wait_for
from recstop.worker.model.errors import BrokerUnavailableError


class Handle(Protocol):
    """What an enqueue returns: the task id of the stop's message."""

    @property
    def task_id(self) -> str:
        """The task id."""
        ...


class Sender(Protocol):
    """Anything that enqueues a stop as ``producers.Producer`` does (or plain Celery, ``chaos.plain``)."""

    def stop_recording(self, call_uuid: str, *, auth_id: str | None = ..., urgent: bool = ...) -> Handle:
        """Enqueue one stop; raise ``BrokerUnavailableError`` when it was not stored."""
        ...


@dataclass(frozen=True)
class Accepted:
    """A stop the producer reported as stored: the harness holds the system to it."""

    call_uuid: str
    task_id: str
    accepted_at: float
    auth_id: str | None = None


@dataclass
class LoadResult:
    """What a load run sent, what was accepted, and what the producer refused (and when)."""

    accepted: list[Accepted] = field(default_factory=list)
    refused: int = 0
    refusal_s: list[float] = field(default_factory=list)  # how long each refusal took to arrive
    refused_at: list[float] = field(default_factory=list)  # when each refusal arrived (epoch)
    errors: list[str] = field(default_factory=list)

    def accept_times(self) -> list[float]:
        """When each stop was accepted, sorted."""
        return sorted(a.accepted_at for a in self.accepted)

    def refused_window(self, after: float) -> tuple[float, float] | None:
        """From the first refusal at or after ``after`` (epoch) to the first acceptance after it.

        None when nothing was refused since ``after``; the end is infinite when nothing was accepted
        after that refusal.
        """
        refusals = sorted(t for t in self.refused_at if t >= after)
        if not refusals:
            return None
        first = refusals[0]
        resumed = next((t for t in self.accept_times() if t > first), float("inf"))
        return first, resumed


def new_calls(count: int) -> list[str]:
    """Fresh call UUIDs (the sandbox creates a call with one recording on first sight)."""
    return [str(uuid.uuid4()) for _ in range(count)]


class Load:
    """Enqueues ``calls`` at ``rate_per_s`` from ``threads`` producers, in a background thread.

    A refused enqueue (``BrokerUnavailableError``) is retried after ``retry_s``, as a real
    service would, until ``give_up_s`` has passed; only stops the producer accepted count. Call
    ``index`` goes to the urgent lane when ``urgent_for(index)``.
    """

    def __init__(
        self,
        make_producer: Callable[[], Sender],
        calls: list[str],
        *,
        rate_per_s: float,
        threads: int = 4,
        retry_s: float = 0.2,
        give_up_s: float = 60.0,
        auth_id_for: Callable[[int], str | None] = lambda _: None,
        urgent_for: Callable[[int], bool] = lambda _: False,
    ) -> None:
        self.calls = calls
        self.rate_per_s = rate_per_s
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        self.auth_id_for = auth_id_for
        self.urgent_for = urgent_for
        self.result = LoadResult()
        self._producers = [make_producer() for _ in range(threads)]
        self._lock = threading.Lock()
        self._next = 0
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def start(self) -> Load:
        """Start sending; returns at once."""
        self._started = time.monotonic()
        for index, producer in enumerate(self._producers):
            thread = threading.Thread(target=self._run, args=(producer,), name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait(self, timeout_s: float = 300.0) -> LoadResult:
        """Wait until every call was accepted or given up."""
        for thread in self._threads:
            thread.join(timeout_s)
        return self.result

    @property
    def progress(self) -> int:
        """How many calls have been handed to a sending thread so far."""
        with self._lock:
            return self._next

    def wait_progress(self, count: int, timeout_s: float = 120.0) -> None:
        """Wait until ``count`` calls have been handed out for sending."""
        wait_for(lambda: self.progress >= count, timeout_s=timeout_s, what=f"{count} stops sent")

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.calls):
                return None
            index = self._next
            self._next += 1
        # Pace: call ``index`` is due at started + index / rate.
        delay = self._started + index / self.rate_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return index

    def _run(self, producer: Sender) -> None:
        while (index := self._take()) is not None:
            self._send(producer, index)

    def _send(self, producer: Sender, index: int) -> None:
        call_uuid = self.calls[index]
        auth_id = self.auth_id_for(index)
        urgent = self.urgent_for(index)
        first_try = time.monotonic()
        while True:
            began = time.monotonic()
            try:
                handle = producer.stop_recording(call_uuid, auth_id=auth_id, urgent=urgent)
            except BrokerUnavailableError:
                with self._lock:
                    self.result.refused += 1
                    self.result.refusal_s.append(time.monotonic() - began)
                    self.result.refused_at.append(time.time())
                if time.monotonic() - first_try > self.give_up_s:
                    with self._lock:
                        self.result.errors.append(f"gave up on {call_uuid}")
                    return
                time.sleep(self.retry_s)
                continue
            with self._lock:
                self.result.accepted.append(Accepted(call_uuid, handle.task_id, time.time(), auth_id))
            return
