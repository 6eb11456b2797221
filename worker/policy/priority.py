"""Urgent stops first inside a process: routine stops pause between their steps while one is in.

The urgent lane gets a stop to a worker ahead of the routine backlog, but inside a busy worker the
stop then shares the interpreter with every routine stop in flight (64 threads by default). Under
a backlog each of them takes the GIL in turn, and most of an urgent stop's time went between its
fetch and its API call. So from the moment the transport delivers an urgent message (``hold``)
until its task returns (``release``), routine stops wait at their next step boundary (before the
state-store admission, the API call and the outcome record) for at most ``max_pause_s``; a step
already started finishes undisturbed. A hold older than ``stale_after_s`` no longer pauses
anyone, so a hold whose release went missing costs at most that long.

One gate per process (``URGENT_FIRST``), like the interpreter lock it works around: the transport
holds it, the executor waits on it. ``make bench`` scenario 3 measures the effect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final


class UrgentFirst:
    """The urgent stops in this process (delivered or running); routine stops yield to them."""

    def __init__(
        self,
        *,
        max_pause_s: float = 1.0,
        stale_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pause_s = max_pause_s
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._cond = threading.Condition()
        self._held: dict[str, float] = {}  # key -> when it was held

    def hold(self, key: str) -> None:
        """An urgent stop is in this process (``key``: its delivery tag or task id)."""
        with self._cond:
            oldest = self._clock() - self.stale_after_s
            for stale in [k for k, since in self._held.items() if since <= oldest]:
                del self._held[stale]  # its release went missing; it has stopped pausing anyone
            self._held.setdefault(key, self._clock())

    def release(self, key: str) -> None:
        """It is done (or handed back); releasing a key not held does nothing."""
        with self._cond:
            if self._held.pop(key, None) is not None and not self._live():
                self._cond.notify_all()

    @contextmanager
    def urgent(self, key: str) -> Iterator[None]:
        """Hold the gate for the duration of the block."""
        self.hold(key)
        try:
            yield
        finally:
            self.release(key)

    def yield_to_urgent(self) -> float:
        """Wait (bounded) while an urgent stop is in; the seconds waited (0.0 almost always)."""
        if not self._held:  # unlocked read: a stale answer delays by one step at most
            return 0.0
        start = self._clock()
        with self._cond:
            self._cond.wait_for(lambda: not self._live(), timeout=self.max_pause_s)
        return self._clock() - start

    @property
    def held(self) -> int:
        """How many urgent stops pause routine ones now (stale holds left out)."""
        with self._cond:
            return self._live()

    def _live(self) -> int:
        oldest = self._clock() - self.stale_after_s
        return sum(1 for since in self._held.values() if since > oldest)


#: This process's gate.
URGENT_FIRST: Final = UrgentFirst()
