"""The Redis channel with reliable fetch: no message is ever only in a process's memory.

kombu's Redis transport pops a message (``BRPOP``) and records it as unacknowledged afterwards: a
worker killed in between loses it, and a worker killed after gets it back only when a guessed
visibility timeout expires. Here a consumer moves messages into its own in-flight lists, one
atomic move each (``state.inflight``), and a heartbeat replaces the visibility timeout:

- **Fetching.** With credit, the consumer's blocking connection runs ``fetch.lua``: urgent lane
  first, as many messages as an event loop may take (the free prefetch credit), or one for
  ``drain_events`` (kombu's one message per call). When nothing waits, the connection blocks in
  ``BLMOVE`` on the last queue, and one more connection per other queue consumed with acks (the
  urgent lane) blocks in ``BLMOVE`` on it, so an urgent stop is taken the moment it arrives.
  ``basic_get`` moves one message the same way. A queue consumed without acks is popped
  (``RPOP`` in ``fetch.lua``, ``BRPOP``), as kombu pops it: no_ack asks for at most once.
- **Acks** remove the message from the in-flight list; a reject with requeue moves it back to the
  tail of its list, marked redelivered as kombu marks it. kombu's ``unacked`` hash, its index and
  its restore sweeps are not used (``broker.options`` refuses their options).
- **Closing** drops the blocking connections (a reply still pending is a message already in the
  in-flight list) and hands every message still held back to the head of its list.

What the channel holds, and how it is settled, is ``broker.holding``. kombu's ``global_keyprefix``
prefixes the in-flight lists, the sources sets and the heartbeats as it prefixes the queues. A list
item that is not a kombu envelope is wrapped as poison (``broker.queueitem``).
"""

from __future__ import annotations

from dataclasses import dataclass
from queue import Empty
from time import monotonic
from typing import Any, Final

import structlog
from redis import exceptions as redis_errors

from recstop.worker.broker.holding import HoldingChannel
from recstop.worker.broker.options import refuse_unsupported
from recstop.worker.broker.poller import WAITER
from recstop.worker.broker.qos import InflightQoS
from recstop.worker.state import keys
from recstop.worker.state.inflight import FETCH, Fetched

log = structlog.get_logger("recstop.transport")

#: Messages one fetch takes in an event loop when no prefetch limit is set.
UNLIMITED_FETCH: Final = 100
#: The command of a ``fetch.lua`` call; a blocking wait is ``BLMOVE``, or ``BRPOP`` (no acks).
FETCH_COMMAND: Final = "EVALSHA"
POP_COMMAND: Final = "BRPOP"


@dataclass(frozen=True)
class Pending:
    """What the blocking connection was sent: a fetch from ``sources``, or a wait on one queue."""

    command: str
    sources: tuple[str, ...]
    #: The sources a fetch pops rather than moves from (queues consumed without acks).
    popped: frozenset[str] = frozenset()


class Channel(HoldingChannel):
    """The Redis channel with reliable fetch, tolerant of foreign list items and of a closed connection."""

    QoS = InflightQoS  # type: ignore[assignment]
    #: Queues are taken from in the order they are consumed (kombu's default rotates them) ...
    queue_order_strategy = "priority"

    def __init__(self, connection: Any, **kwargs: Any) -> None:  # noqa: ANN401
        refuse_unsupported(connection.client.transport_options)
        self._idle = False
        self._pending = Pending(FETCH_COMMAND, ())
        self._waiters: dict[str, Any] = {}  # queue → a client bound to one connection
        self._armed: dict[str, str] = {}  # queue → the blocking command its waiter sent
        self._no_ack: set[str] = set()  # queues consumed without acks (Celery's pidbox replies ...)
        super().__init__(connection, **kwargs)

    def _update_queue_cycle(self) -> None:
        """... and the urgent lane first (a stable sort keeps the others' order)."""
        self._queue_cycle.update(sorted(self.active_queues, key=lambda name: name != keys.URGENT_QUEUE))

    # --- fetching -------------------------------------------------------------------------------

    def _lane_of(self, item: Fetched) -> str:
        return item.source.removeprefix(self.global_keyprefix).rsplit(self.sep, 1)[0]

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Send the next fetch, or (when nothing waited) block until a message arrives."""
        queues = self._queue_cycle.consume(len(self.active_queues))
        sources = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        if not sources:
            return
        popped = {s for q in queues if q in self._no_ack for s in self._queue_lists(q)}
        self._hold_from([s for s in sources if s not in popped])
        connection: Any = self.client.connection
        if self._idle:
            self._arm_waiters([queue for queue in queues[:-1] if queue not in self._no_ack])
            command = self._block(connection, queues[-1], timeout or self.brpop_timeout)
            self._pending = Pending(command, (queues[-1],))
        else:
            connection.send_command(*self.inflight.fetch_command(sources, self._credit(), popped))
            self._pending = Pending(FETCH_COMMAND, tuple(sources), frozenset(popped))
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]

    def _brpop_read(self, **options: Any) -> bool:  # noqa: ANN401
        """Read the fetch's (or the blocking move's) reply and deliver what it moved."""
        pending = self._pending
        try:
            connection: Any = self.client.connection
            try:
                reply = self.client.parse_response(connection, pending.command, **options)
            except redis_errors.NoScriptError:
                self.inflight.scripts.load(FETCH)  # Redis restarted without it: next fetch works
                self._idle = False
                raise Empty from None
            except self.connection_errors:
                connection.disconnect()
                raise
            if pending.command == FETCH_COMMAND:
                fetched = self.inflight.parse_fetched(reply, pending.sources, pending.popped)
                self._idle = not fetched
            else:
                fetched = self._blocked(pending.sources[0], pending.command, reply)
                self._idle = False
            if not fetched:
                raise Empty
            for item in fetched:
                self._deliver_fetched(item)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _credit(self) -> int:
        """How many messages one fetch takes: one for ``drain_events``, else the free prefetch credit."""
        if not self.connection.cycle.in_event_loop:
            return 1  # kombu's drain_events delivers one message per call
        qos = self.qos
        if not qos.prefetch_count:
            return UNLIMITED_FETCH
        held = len(qos._delivered) - len(qos._dirty)  # noqa: SLF001 - kombu's own count of unacked messages
        return max(1, int(qos.prefetch_count) - held)

    def _block(self, connection: Any, queue: str, timeout: float) -> str:  # noqa: ANN401
        """Send the wait for ``queue``'s next message on ``connection``; the command sent.

        ``BLMOVE`` into the in-flight list, or kombu's ``BRPOP`` for a queue consumed without acks.
        """
        pop = queue in self._no_ack
        if not pop:
            self.inflight.register([queue])  # named before the move, for whoever reaps this consumer
        command = self.inflight.blocking_move(queue, timeout, pop=pop)
        connection.send_command(*command)
        return str(command[0])

    def _blocked(self, queue: str, command: str, reply: Any) -> list[Fetched]:  # noqa: ANN401
        """What a blocking wait on ``queue`` answered: the message (``BRPOP``: [list, message])."""
        if not reply:
            return []
        if command == POP_COMMAND:
            return [self.inflight.fetched(queue, reply[1], popped=True)]
        return [self.inflight.fetched(queue, reply)]

    def _arm_waiters(self, queues: list[str]) -> None:
        """Block one connection per queue in ``BLMOVE``, so a message there is taken at once.

        Only queues consumed with acks: a popped message must not wait in a socket for a reader.
        """
        for queue in queues:
            if queue in self._armed:
                continue
            client = self._waiters.get(queue)
            if client is None:
                client = self._waiters[queue] = self._create_client(asynchronous=True)
                client.connection = client.connection_pool.get_connection()
            self.connection.cycle._register(self, client, WAITER + queue)  # noqa: SLF001
            self._armed[queue] = self._block(client.connection, queue, self.brpop_timeout)

    def waiter_readable(self, kind: str) -> None:
        """A queue waiter's wait answered: deliver what it took, and wait again if there is credit."""
        queue = kind.removeprefix(WAITER)
        client = self._waiters[queue]
        command = self._armed.pop(queue)
        try:
            reply = client.parse_response(client.connection, command)
        except self.connection_errors:
            client.connection.disconnect()
            raise
        fetched = self._blocked(queue, command, reply)
        if not fetched:
            raise Empty  # its wait timed out: nothing was delivered
        self._idle = False
        self._deliver_fetched(fetched[0])
        if queue in self.active_queues and self.qos.can_consume():
            self._arm_waiters([queue])  # an urgent burst comes in one move per message

    def _poll_error(self, type: str, **options: Any) -> None:  # noqa: A002, ANN401 - kombu's signature
        if type.startswith(WAITER):
            queue = type.removeprefix(WAITER)
            client = self._waiters[queue]
            client.parse_response(client.connection, self._armed.pop(queue, "BLMOVE"))
            return
        super()._poll_error(type, **options)

    def basic_get(self, queue: str, no_ack: bool = False, **_kwargs: Any) -> Any:  # noqa: ANN401, FBT001, FBT002
        """Take one message now, moved into the in-flight list like every fetch (kombu pops it)."""
        sources = self._queue_lists(queue)
        if not no_ack:
            self._hold_from(sources)
        fetched = self.inflight.fetch(sources, 1, popped=sources if no_ack else ())
        with self.conn_or_acquire() as client:
            self._maybe_update_queues_expire(client, queue)  # a get keeps an expiring queue, as kombu's
        if not fetched:
            return None
        message = self.Message(self._take(fetched[0], queue), channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: float | None = None) -> Any:  # noqa: ANN401
        """Never: kombu's pops a message into memory; here every fetch moves it (``basic_get``, polls)."""
        raise NotImplementedError(f"recstop's channel never pops a message (queue {queue!r}): use basic_get")

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401, FBT001
        """Consume ``queue``; one consumed without acks is popped (kombu's at-most-once), held nowhere."""
        if no_ack:
            self._no_ack.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _basic_cancel(self, consumer_tag: str) -> Any:  # noqa: ANN401 - kombu's
        """Stop consuming a queue, and stop fetching at once; the next poll fetches afresh.

        What the blocked moves took is handed back (once no queue is left, that is a warm shutdown).
        """
        queue = self._tag_to_queue.get(consumer_tag)
        result = super()._basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack.discard(queue)
        if self._heartbeat is not None and not self._closing:
            self._stop_fetching()
        return result

    def _deliver_fetched(self, item: Fetched) -> None:
        lane = self._lane_of(item)
        if lane not in self.connection._callbacks:  # noqa: SLF001
            # Its consumer was cancelled while the fetch was on its way: nobody received it.
            self.inflight.put_back(item)
            return
        self.connection._deliver(self._take(item, lane), lane)  # noqa: SLF001

    # --- stopping -------------------------------------------------------------------------------

    def _drop_blocked_moves(self) -> None:
        """Disconnect the blocked moves: a reply they still owe is a message in the in-flight list.

        A ``BRPOP`` (no acks) is left to be read, as kombu reads it: its reply is the only copy.
        """
        pending: Any = self._in_poll
        if pending and self._pending.command != POP_COMMAND:
            pending.disconnect()
            self._in_poll = None  # type: ignore[assignment]
        for client in self._waiters.values():
            if client.connection is not None:
                client.connection.disconnect()
        self._armed.clear()
        self._idle = False

    def _stop_fetching(self) -> None:
        """Drop the blocked moves and hand back what they moved but nobody received."""
        self._drop_blocked_moves()
        try:
            requeued = self._hand_back(delivered=False)
        except redis_errors.RedisError as exc:
            log.warning("hand_back_failed", consumer=self.consumer_id, error=type(exc).__name__)
            return
        if requeued:
            log.info("undelivered_handed_back", consumer=self.consumer_id, requeued=requeued)

    def close(self) -> None:
        """Drop the blocking connections without reading them, hand back what is held, close."""
        self._closing = True  # kombu's cancels below have nothing left to hand back
        self._drop_blocked_moves()
        self.release()
        super().close()
