"""Reliable fetch on Redis: no instant in which a message exists only in a worker's memory.

A consumer (one per worker broker connection) takes messages with one atomic move each, from a
lane into its own in-flight list (``lua/fetch.lua``, or ``BLMOVE`` while it waits); an ack
removes the message from that list (``LREM``). The consumer heartbeats every ``heartbeat_s`` in
``recstop:consumers``; when one stays silent for ``timeout_s`` (SIGKILL, OOM kill, host lost,
partition), any live consumer moves its in-flight messages back to the head of their lanes
(``lua/reap.lua``), atomically and exactly once. A consumer that is alive but slow keeps
heartbeating from its own thread, so its messages are never taken from it however long it holds
them. Nothing here depends on a guessed visibility timeout.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from redis import Redis
from redis.exceptions import RedisError

from recstop.worker.model.ids import new_id
from recstop.worker.state import keys
from recstop.worker.state.redisclient import RedisOutage
from recstop.worker.state.scripts import LuaScript, Scripts, encode, reply_json

log = structlog.get_logger("recstop.fetch")

#: The move that takes one message from a lane (its right end, the head) into an in-flight list.
BLOCKING_MOVE: Final = ("RIGHT", "LEFT")


def new_consumer_id() -> str:
    """A consumer id that names the host and process: ``<host>.<pid>.<random>``."""
    return f"{socket.gethostname()}.{os.getpid()}.{new_id()[:8]}"


@dataclass(frozen=True)
class Fetched:
    """One message moved into a consumer's in-flight list: where it came from, byte for byte."""

    source: str
    inflight: str
    message: bytes

    @property
    def consumer(self) -> str:
        """The consumer holding it (the in-flight list is ``recstop:inflight:<consumer>:<source>``)."""
        return keys.inflight_consumer(self.inflight, self.source)


def parse_fetch(raw: object) -> list[tuple[int, bytes]]:
    """The reply of ``fetch.lua``: (1-based source index, message as stored) per message moved."""
    if not isinstance(raw, list):
        raise TypeError(f"fetch answered {type(raw).__name__}, not an array")
    out: list[tuple[int, bytes]] = []
    for i in range(0, len(raw), 2):
        index, message = raw[i], raw[i + 1]
        if not isinstance(index, int) or not isinstance(message, bytes):
            raise TypeError("fetch answers pairs of (source index, message bytes)")
        out.append((index, message))
    return out


@dataclass(frozen=True)
class Beat:
    """The reply of ``beat.lua``: Redis time, and the consumers silent longer than the timeout."""

    now: float
    stale: tuple[str, ...]

    @classmethod
    def parse(cls, raw: object) -> Beat:
        """Read the script's JSON."""
        reply = reply_json(raw)
        return cls(float(reply["now"]), tuple(str(s) for s in reply.get("stale", ())))


def parse_counts(raw: object) -> list[int]:
    """The reply of ``reap.lua``: messages moved back, per consumer named."""
    return [int(n) for n in reply_json(raw)]


def parse_requeued(raw: object) -> bool:
    """The reply of ``requeue.lua``: whether the message was in flight (and is back in its lane)."""
    return bool(reply_json(raw)["requeued"])


FETCH: Final = LuaScript("fetch", parse_fetch)
BEAT: Final = LuaScript("beat", Beat.parse)
REAP: Final = LuaScript("reap", parse_counts)
REQUEUE: Final = LuaScript("requeue", parse_requeued)


#: Every message this process has fetched and not yet acknowledged, by delivery tag (tags are
#: unique per consumer). The task that runs a message acknowledges it in the same script that
#: records the stop's outcome (``StopStore.finish``) and takes it from here, so the ack that Celery
#: sends afterwards has nothing left to do.
HELD: dict[str, Fetched] = {}
#: The message header that carries the delivery tag to the task (Celery gives a task its headers as
#: ``self.request`` attributes, but not the tag).
TAG_HEADER: Final = "recstop_delivery_tag"


class Inflight:
    """One consumer's side of the protocol: fetch, ack, requeue, heartbeat, reap, release.

    ``client`` is any thread-safe (pooled) client: acks come from the worker's task threads.
    """

    def __init__(self, client: Redis, consumer: str, *, timeout_s: float) -> None:
        self.client = client
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.scripts = Scripts(client)

    def inflight(self, source: str) -> str:
        """The in-flight list of this consumer for ``source``."""
        return keys.inflight_key(self.consumer, source)

    def fetch_command(self, sources: Sequence[str], count: int) -> list[str | int]:
        """The ``EVALSHA`` of one ``fetch.lua`` call, to send on a connection and read later."""
        pairs = _pairs(sources, self.consumer)
        return ["EVALSHA", self.scripts.sha(FETCH), len(pairs), *pairs, encode({"count": count})]

    def parse_fetched(self, raw: object, sources: Sequence[str]) -> list[Fetched]:
        """The messages one ``fetch.lua`` call (sent with :meth:`fetch_command`) moved, in order."""
        return [
            Fetched(sources[index - 1], keys.inflight_key(self.consumer, sources[index - 1]), message)
            for index, message in FETCH.parse(raw)
        ]

    def ack(self, fetched: Fetched) -> bool:
        """The message was handled: drop it from the in-flight list; whether it was still there."""
        return bool(self.client.lrem(fetched.inflight, 1, fetched.message))  # type: ignore[arg-type]

    def requeue(self, fetched: Fetched, *, head: bool) -> bool:
        """Hand the message back to its lane (head: next to be taken); whether it was in flight."""
        return self.scripts.run(
            REQUEUE, [fetched.inflight, fetched.source], {"head": head}, [fetched.message]
        )

    def beat(self) -> tuple[float, list[str]]:
        """Heartbeat; return Redis time and the consumers silent for longer than ``timeout_s``."""
        beat = self.scripts.run(
            BEAT, [keys.CONSUMERS], {"consumer": self.consumer, "timeout_s": self.timeout_s}
        )
        return beat.now, list(beat.stale)

    def reap(
        self, consumers: Sequence[str], sources: Sequence[str], *, stale_before: float | None
    ) -> list[int]:
        """Move the in-flight messages of ``consumers`` back to their lanes; how many per consumer.

        With ``stale_before`` (Redis time), a consumer that beat since then is left alone.
        """
        if not consumers:
            return []
        return self.scripts.run(
            REAP,
            [keys.CONSUMERS, *(key for c in consumers for key in _pairs(sources, c))],
            {
                "consumers": list(consumers),
                "sources_per_consumer": len(sources),
                "stale_before": stale_before,
            },
        )

    def release(self, sources: Sequence[str]) -> int:
        """Hand back every message this consumer holds (at shutdown) and leave ``recstop:consumers``."""
        return sum(self.reap([self.consumer], sources, stale_before=None))


def _pairs(sources: Sequence[str], consumer: str) -> list[str]:
    """Each source list followed by ``consumer``'s in-flight list for it."""
    return [key for source in sources for key in (source, keys.inflight_key(consumer, source))]


class Heartbeat:
    """A consumer's heartbeat thread; each beat also reaps the consumers that stopped beating."""

    def __init__(self, inflight: Inflight, sources: Sequence[str], *, interval_s: float) -> None:
        self.inflight = inflight
        self.sources = list(sources)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recstop-heartbeat", daemon=True)
        # A few lines per outage, naming the Redis and the cause; the beats keep their interval
        # (backing off would get this consumer reaped once Redis answers again).
        self._outage = RedisOutage.for_client(
            "heartbeat_redis_unavailable",
            inflight.client,
            base_s=interval_s,
            cap_s=interval_s,
            logger=log,
            consumer=inflight.consumer,
        )

    def start(self) -> Heartbeat:
        """Beat at once (a restarted worker reaps what its predecessor held), then every interval."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (the consumer then counts as gone after ``timeout_s``)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def beat_once(self) -> int:
        """One heartbeat and reap; how many messages were handed back."""
        now, stale = self.inflight.beat()
        stale = [c for c in stale if c != self.inflight.consumer]
        if not stale:
            return 0
        counts = self.inflight.reap(stale, self.sources, stale_before=now - self.inflight.timeout_s)
        for consumer, count in zip(stale, counts, strict=True):
            log.warning("consumer_reaped", consumer=consumer, requeued=count)
        return sum(counts)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
            except RedisError as exc:
                self._stop.wait(self._outage.failed(exc))
                continue
            self._outage.recovered()
            self._stop.wait(self.interval_s)


def inflight_lists(client: Redis) -> list[str]:
    """Every consumer's non-empty in-flight list (an empty list does not exist in Redis)."""
    return sorted(
        str(k if isinstance(k, str) else k.decode()) for k in client.scan_iter(match=keys.INFLIGHT_MATCH)
    )


def inflight_messages(client: Redis) -> list[bytes | str]:
    """Every message some consumer holds and has not acknowledged (for metrics and checks)."""
    pipe = client.pipeline(transaction=False)
    for key in inflight_lists(client):
        pipe.lrange(key, 0, -1)
    return [message for messages in pipe.execute() for message in messages]
