"""Where each message is, over time: the lanes and every in-flight list, polled in a background thread.

A message is always in exactly one list (a lane, or the in-flight list of the consumer that
fetched it) until it is acknowledged. Polling every list every ``interval_s`` gives each task id a
history of places, ``None`` once it is in none of them: how often it was fetched, by whom, and how
long a stopping worker kept what it did not run.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Self

from redis import Redis
from redis.exceptions import RedisError

from chaos.inflight import consumer_of, message_ids, pid_of
from recstop.worker.state.inflight import inflight_lists
from recstop.worker.state.keys import LANES

#: The place of a message that is in no list: acknowledged (or not published yet).
GONE: Final = None


@dataclass(frozen=True)
class Stay:
    """One uninterrupted stay of a message in one place (a lane name or a consumer id)."""

    place: str | None
    since: float  # the first poll that saw it there (epoch seconds)

    @property
    def consumer(self) -> str | None:
        """The consumer that held the message, when the place is an in-flight list."""
        return None if self.place is None or self.place in LANES else self.place


class Watch:
    """Polls the lanes and the in-flight lists until stopped; a context manager that closes ``client``."""

    def __init__(self, client: Redis, interval_s: float = 0.02) -> None:
        self.client = client
        self.interval_s = interval_s
        self.history: dict[str, list[Stay]] = {}
        self.polls = 0
        self._ids: dict[bytes | str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(RedisError):  # Redis down: the next poll sees where things went
                self.poll()
            self._stop.wait(self.interval_s)

    def poll(self) -> None:
        """Look at every list once and record what moved."""
        places = [*LANES, *inflight_lists(self.client)]
        pipe = self.client.pipeline(transaction=False)
        for key in places:
            pipe.lrange(key, 0, -1)
        contents = pipe.execute()
        now = time.time()
        where: dict[str, str] = {}
        for key, messages in zip(places, contents, strict=True):
            place = key if key in LANES else consumer_of(key)
            for raw in messages:
                task_id = self._task_id(raw)
                if task_id is not None:
                    where[task_id] = place
        for task_id in where.keys() | self.history.keys():
            now_at = where.get(task_id, GONE)
            stays = self.history.setdefault(task_id, [])
            if not stays or stays[-1].place != now_at:
                stays.append(Stay(now_at, now))
        self.polls += 1

    def _task_id(self, raw: bytes | str) -> str | None:
        if raw not in self._ids:
            ids = message_ids(raw)
            self._ids[raw] = None if ids is None else ids[0]
        return self._ids[raw]

    def fetches(self, task_id: str) -> int:
        """How many times the message was seen arriving in a consumer's in-flight list."""
        return sum(1 for stay in self.history.get(task_id, []) if stay.consumer is not None)

    def holders(self, task_id: str) -> list[str]:
        """The consumers that held the message, in order (one entry per stay)."""
        return [s.consumer for s in self.history.get(task_id, []) if s.consumer is not None]

    def held_s(self, task_id: str) -> float:
        """How long the message stayed in in-flight lists in all (to the poll's resolution)."""
        stays = self.history.get(task_id, [])
        ends = [*(s.since for s in stays[1:]), time.time()]
        return sum(end - s.since for s, end in zip(stays, ends, strict=True) if s.consumer is not None)

    def handed_back(self, pid: int, after: float) -> list[tuple[str, float]]:
        """(task id, seconds) for every message process ``pid`` held at or after ``after`` and gave up.

        A message leaves a consumer either acknowledged (gone) or handed back (seen next in a lane
        or another consumer's list). The seconds run from ``after`` (or from when the process
        fetched it, if later) to the first poll that saw it back.
        """
        out: list[tuple[str, float]] = []
        for task_id, stays in self.history.items():
            for stay, nxt in itertools.pairwise(stays):
                if stay.consumer is None or pid_of(stay.consumer) != pid or nxt.since < after:
                    continue
                if nxt.place is not GONE:
                    out.append((task_id, nxt.since - max(after, stay.since)))
        return out

    def fetched_by(self, pid: int, after: float) -> list[str]:
        """The task ids process ``pid`` fetched after ``after`` (first seen in its lists then)."""
        return [
            task_id
            for task_id, stays in self.history.items()
            if any(s.consumer is not None and pid_of(s.consumer) == pid and s.since > after for s in stays)
        ]

    def tracked(self, task_ids: Iterable[str]) -> int:
        """How many of ``task_ids`` the watch ever saw."""
        return sum(1 for task_id in task_ids if task_id in self.history)
