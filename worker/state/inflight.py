"""Reliable fetch on Redis: no instant in which a message exists only in a worker's memory.

A consumer (one per worker broker connection) takes messages with one atomic move each, from a
queue's list into its own in-flight list (``lua/fetch.lua``, or ``BLMOVE`` while it waits); an ack
removes the message from that list (``LREM``). Every list a consumer has moved messages from is
named in its sources set (:func:`sources_key`), by ``fetch.lua`` in the same script as the move
(or before the ``BLMOVE`` is sent), so whoever reaps the consumer finds every one of its in-flight
lists, whatever the queues were called. The consumer heartbeats every ``heartbeat_s`` in
``recstop:consumers``; when one stays silent for ``timeout_s`` (SIGKILL, OOM kill, host lost,
partition), any live consumer moves its in-flight messages back to the head of their lists
(``lua/reap.lua``), atomically and exactly once. A consumer that is alive but slow keeps
heartbeating from its own thread, so its messages are never taken from it however long it holds
them. Nothing here depends on a guessed visibility timeout.

Every key is prefixed with kombu's ``global_keyprefix`` (``prefix``), as kombu prefixes its
queue lists: sources are named here as kombu names them, unprefixed, and :class:`Fetched` holds
the real keys.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from redis import Redis

from recstop.worker.model.ids import new_id
from recstop.worker.state import keys
from recstop.worker.state.arguments import encode
from recstop.worker.state.scripts import LuaScript, Scripts, reply_json

#: The move that takes one message from a list (its right end, the head) into an in-flight list.
BLOCKING_MOVE: Final = ("RIGHT", "LEFT")


def new_consumer_id() -> str:
    """A consumer id that names the host and process: ``<host>.<pid>.<random>``."""
    return f"{socket.gethostname()}.{os.getpid()}.{new_id()[:8]}"


def sources_key(consumer: str) -> str:
    """set: the lists ``consumer`` has moved messages from (unprefixed names), for its reaper."""
    return f"{keys.PREFIX}:sources:{consumer}"


@dataclass(frozen=True)
class Fetched:
    """One message moved into a consumer's in-flight list: where it came from, byte for byte.

    ``source`` and ``inflight`` are the real keys (with kombu's ``global_keyprefix``). A message of
    a queue consumed without acks is ``popped``: it is in no in-flight list.
    """

    source: str
    inflight: str
    message: bytes
    consumer: str
    popped: bool = False


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
    """The reply of ``beat.lua``: Redis time, the consumers silent for too long, and ``joined``.

    ``joined``: this consumer was listed anew (its first beat, or it had been reaped as silent).
    """

    now: float
    stale: tuple[str, ...]
    joined: bool

    @classmethod
    def parse(cls, raw: object) -> Beat:
        """Read the script's JSON."""
        reply = reply_json(raw)
        stale = tuple(str(s) for s in reply.get("stale", ()))
        return cls(float(reply["now"]), stale, bool(reply.get("joined")))


def parse_counts(raw: object) -> list[int]:
    """The reply of ``reap.lua``: messages moved back, per consumer named."""
    return [int(n) for n in reply_json(raw)]


def parse_requeued(raw: object) -> bool:
    """The reply of ``requeue.lua``: whether the message was in flight (and is back in its list)."""
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


class Inflight:
    """One consumer's side of the protocol: fetch, ack, requeue, heartbeat, reap, release.

    ``client`` is any thread-safe (pooled) client that does not rewrite keys (not kombu's prefixed
    one): acks come from the worker's task threads, and every key here is prefixed already.
    """

    def __init__(self, client: Redis, consumer: str, *, timeout_s: float, prefix: str = "") -> None:
        self.client = client
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.prefix = prefix
        self.scripts = Scripts(client)
        self._registered: set[str] = set()

    def key(self, name: str) -> str:
        """The real key of a list kombu names ``name`` (with the global key prefix)."""
        return self.prefix + name

    def inflight(self, source: str, consumer: str | None = None) -> str:
        """The in-flight list of this consumer (or ``consumer``) for the list ``source``."""
        return self.prefix + keys.inflight_key(consumer or self.consumer, source)

    def _sources_key(self, consumer: str | None = None) -> str:
        return self.prefix + sources_key(consumer or self.consumer)

    def _pairs(self, sources: Iterable[str], consumer: str | None = None) -> list[str]:
        """Each source list followed by the consumer's in-flight list for it (real keys)."""
        return [k for s in sources for k in (self.key(s), self.inflight(s, consumer))]

    def fetched(self, source: str, message: bytes, *, popped: bool = False) -> Fetched:
        """A message this consumer moved (or ``popped``) from ``source`` (as named by kombu)."""
        return Fetched(self.key(source), self.inflight(source), message, self.consumer, popped)

    def register(self, sources: Iterable[str]) -> None:
        """Name ``sources`` in this consumer's sources set before a ``BLMOVE`` may move from them."""
        new = sorted(set(sources) - self._registered)
        if new:
            self.client.sadd(self._sources_key(), *new)
            self._registered.update(new)

    def _fetch_args(self, sources: Sequence[str], count: int, popped: Collection[str]) -> dict[str, object]:
        pop = [k for k, source in enumerate(sources, 1) if source in popped]
        return {"count": count, "sources": list(sources), "pop": pop}

    def fetch_command(
        self, sources: Sequence[str], count: int, popped: Collection[str] = ()
    ) -> list[str | int]:
        """The ``EVALSHA`` of one ``fetch.lua`` call, to send on a connection and read later.

        ``popped``: sources consumed without acks, whose messages are popped, as kombu pops them.
        """
        pairs = self._pairs(sources)
        args = encode(self._fetch_args(sources, count, popped))
        return ["EVALSHA", self.scripts.sha(FETCH), 1 + len(pairs), self._sources_key(), *pairs, args]

    def parse_fetched(
        self, raw: object, sources: Sequence[str], popped: Collection[str] = ()
    ) -> list[Fetched]:
        """The messages one ``fetch.lua`` call (sent with :meth:`fetch_command`) moved, in order."""
        return self._fetched(FETCH.parse(raw), sources, popped)

    def fetch(self, sources: Sequence[str], count: int, popped: Collection[str] = ()) -> list[Fetched]:
        """Run ``fetch.lua`` now, on the pooled client (a synchronous get)."""
        pairs = self._pairs(sources)
        raw = self.scripts.run(FETCH, [self._sources_key(), *pairs], self._fetch_args(sources, count, popped))
        return self._fetched(raw, sources, popped)

    def _fetched(
        self, moved: list[tuple[int, bytes]], sources: Sequence[str], popped: Collection[str]
    ) -> list[Fetched]:
        return [
            self.fetched(source, message, popped=source in popped)
            for source, message in ((sources[index - 1], message) for index, message in moved)
        ]

    def blocking_move(self, source: str, timeout_s: float, *, pop: bool = False) -> list[str | float]:
        """The ``BLMOVE`` that waits for one message on ``source`` (register the source first).

        With ``pop`` (a queue consumed without acks), kombu's ``BRPOP``: its reply is ``[list, message]``.
        """
        if pop:
            return ["BRPOP", self.key(source), timeout_s]
        return ["BLMOVE", self.key(source), self.inflight(source), *BLOCKING_MOVE, timeout_s]

    def ack(self, fetched: Fetched) -> bool:
        """The message was handled: drop it from the in-flight list; whether it was still there."""
        return bool(self.client.lrem(fetched.inflight, 1, fetched.message))  # type: ignore[arg-type]

    def put_back(self, fetched: Fetched) -> None:
        """A message nobody received goes back to the head of its list, as it was."""
        if fetched.popped:
            self.client.rpush(fetched.source, fetched.message)
        else:
            self.requeue(fetched, head=True)

    def requeue(self, fetched: Fetched, *, head: bool, back: bytes | None = None) -> bool:
        """Hand the message back to its list (head: next to be taken); whether it was in flight.

        ``back``: what goes back in its place (the message marked redelivered); default, itself.
        """
        return self.scripts.run(
            REQUEUE,
            [fetched.inflight, fetched.source],
            {"head": head},
            [fetched.message, fetched.message if back is None else back],
        )

    def beat(self) -> tuple[float, list[str]]:
        """Heartbeat; return Redis time and the consumers silent for longer than ``timeout_s``."""
        beat = self.scripts.run(
            BEAT, [self.key(keys.CONSUMERS)], {"consumer": self.consumer, "timeout_s": self.timeout_s}
        )
        if beat.joined:
            # Reaped while alive (or never listed): a reaper emptied the sources set, so name the
            # lists again before the next blocking move.
            self._registered.clear()
        return beat.now, list(beat.stale)

    def reap(
        self, consumers: Sequence[str], sources: Sequence[str], *, stale_before: float | None
    ) -> list[int]:
        """Move the in-flight messages of ``consumers`` back to their lists; how many per consumer.

        Each consumer's lists are those named in its sources set, and ``sources`` (recstop's lanes:
        a consumer of a version that kept no sources set). With ``stale_before`` (Redis time), a
        consumer that beat since then is left alone.
        """
        if not consumers:
            return []
        pipe = self.client.pipeline(transaction=False)
        for consumer in consumers:
            pipe.smembers(self._sources_key(consumer))
        registered = [{_text(s) for s in found} for found in pipe.execute()]
        per_consumer = [sorted(found | set(sources)) for found in registered]
        return self.scripts.run(
            REAP,
            [
                self.key(keys.CONSUMERS),
                *(
                    key
                    for consumer, lists in zip(consumers, per_consumer, strict=True)
                    for key in (self._sources_key(consumer), *self._pairs(lists, consumer))
                ),
            ],
            {
                "consumers": [
                    {"id": consumer, "sources": lists}
                    for consumer, lists in zip(consumers, per_consumer, strict=True)
                ],
                "stale_before": stale_before,
            },
        )

    def release(self, sources: Sequence[str]) -> int:
        """Hand back every message this consumer holds (at shutdown) and leave ``recstop:consumers``."""
        self._registered.clear()
        return sum(self.reap([self.consumer], sources, stale_before=None))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def inflight_lists(client: Redis) -> list[str]:
    """Every consumer's non-empty in-flight list (an empty list does not exist in Redis)."""
    return sorted(
        str(k if isinstance(k, str) else k.decode())
        for k in client.scan_iter(match=keys.INFLIGHT_MATCH, count=keys.SCAN_COUNT)
    )


def inflight_messages(client: Redis) -> list[bytes | str]:
    """Every message some consumer holds and has not acknowledged (for metrics and checks)."""
    pipe = client.pipeline(transaction=False)
    for key in inflight_lists(client):
        pipe.lrange(key, 0, -1)
    return [message for messages in pipe.execute() for message in messages]
