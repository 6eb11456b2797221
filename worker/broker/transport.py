"""kombu's Redis transport (and its Sentinel variant) with reliable fetch, selected by ``broker_transport``.

kombu's Redis transport pops a message (``BRPOP``) and records it as unacknowledged afterwards: a
worker killed in between loses it, and a worker killed after gets it back only when a guessed
visibility timeout expires. Here a consumer moves messages into its own in-flight list, one atomic
move each (``worker.fetch``), and a heartbeat replaces the visibility timeout:

- **Fetching.** With credit, the consumer's blocking connection runs ``fetch.lua``: as many
  messages as it may hold, urgent lane first, into its in-flight lists. When nothing waits, the
  connection blocks in ``BLMOVE`` on the routine lane, and one more connection per other lane
  (the urgent one) blocks in ``BLMOVE`` on it, so an urgent stop is taken the moment it arrives.
- **Acks** remove the message from the in-flight list; a reject with requeue moves it back to the
  tail of its lane. kombu's ``unacked`` hash, its index and its restore sweeps are not used.
- **Closing** drops the blocking connections (a reply still pending is a message already in the
  in-flight list) and hands every message still held back to the head of its lane.

Also: a list item that is not a kombu envelope is wrapped as poison (``worker.queueitem``), a
closed connection raises a Redis ``ConnectionError`` (Celery reconnects) instead of kombu's
``AttributeError``, publishes can wait for replicas (``WAIT``), and a reconnect keeps this
transport (``Connection``).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from queue import Empty
from time import monotonic
from typing import Any, Final

import celery.app.amqp
import structlog
from kombu.connection import Connection as KombuConnection
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis import exceptions as redis_errors

from recstop.worker.broker.queueitem import envelope
from recstop.worker.config.redis import RedisSettings
from recstop.worker.policy.priority import URGENT_FIRST
from recstop.worker.state import keys
from recstop.worker.state.inflight import (
    FETCH,
    HELD,
    TAG_HEADER,
    Fetched,
    Heartbeat,
    Inflight,
    new_consumer_id,
)
from recstop.worker.state.redisclient import ReplicaShortfall, check_wait, queue_wait

log = structlog.get_logger("recstop.transport")

_DEFAULTS: Final = RedisSettings()
#: Transport options of recstop's channels beyond kombu's: replicas a publish waits for, and how long.
WAIT_OPTIONS: Final = ("wait_replicas", "wait_timeout_ms")
#: Transport options of the reliable fetch: when a silent consumer counts as gone, how often to beat.
FETCH_OPTIONS: Final = ("consumer_timeout_s", "consumer_heartbeat_s")
#: Messages one fetch takes when no prefetch limit is set.
UNLIMITED_FETCH: Final = 100
#: Poller registration type of a lane waiter's connection: ``WAIT:<list>``.
WAITER: Final = "WAIT:"


class InflightQoS(virtual.QoS):
    """kombu's QoS (prefetch credit), with acks kept in Redis as the consumer's in-flight lists."""

    restore_at_shutdown = True

    def ack(self, delivery_tag: str) -> None:
        """The message is handled: drop it from the in-flight list."""
        self.channel.settle(delivery_tag, requeue=None)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:  # noqa: FBT001, FBT002 - kombu's signature
        """Drop the message, or (``requeue``) hand it back to the tail of its lane."""
        self.channel.settle(delivery_tag, requeue="tail" if requeue else None)
        super().ack(delivery_tag)

    def restore_unacked(self, _client: object = None) -> None:
        """Hand every message this consumer holds back to the head of its lane."""
        self.channel.release()

    def restore_visible(self, *_args: object, **_kwargs: object) -> None:
        """Nothing to sweep: a dead consumer's messages come back through the heartbeat."""


class Channel(kombu_redis.Channel):
    """The Redis channel with reliable fetch, tolerant of foreign list items and of a closed connection.

    With the ``wait_replicas`` transport option (> 0), a published message also waits until that
    many replicas hold it (``WAIT``, at most ``wait_timeout_ms``); a shortfall is a Redis
    ``ConnectionError``, so the producer refuses the enqueue instead of reporting it accepted.
    """

    QoS = InflightQoS  # type: ignore[assignment]
    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.Channel.from_transport_options,
        *WAIT_OPTIONS,
        *FETCH_OPTIONS,
    )
    # Until the transport options set them: the settings model's defaults (one place).
    wait_replicas: int = _DEFAULTS.wait_replicas
    wait_timeout_ms: int = _DEFAULTS.wait_timeout_ms
    consumer_timeout_s: float = _DEFAULTS.consumer_timeout_s
    consumer_heartbeat_s: float = _DEFAULTS.consumer_heartbeat_s
    #: Lanes are named in a fixed order (kombu's default rotates them for fairness) ...
    queue_order_strategy = "priority"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        self.consumer_id = new_consumer_id()
        self._tags = itertools.count()
        self._idle = False
        self._pending: str | list[str] = []  # the list a blocking move waits on, or a fetch's sources
        self._waiters: dict[str, Any] = {}  # lane → a client bound to one connection
        self._armed: set[str] = set()
        self._sources_seen: set[str] = set()
        self._no_ack: set[str] = set()  # queues consumed without acks (Celery's pidbox replies ...)
        self._inflight: Inflight | None = None
        self._heartbeat: Heartbeat | None = None
        super().__init__(*args, **kwargs)

    # --- fetching -------------------------------------------------------------------------------

    @property
    def inflight(self) -> Inflight:
        """The in-flight protocol of this consumer, on a pooled (thread-safe) client."""
        if self._inflight is None:
            client = self._create_client()
            self._inflight = Inflight(client, self.consumer_id, timeout_s=float(self.consumer_timeout_s))
            self._inflight.scripts.load(FETCH)  # sent with EVALSHA on the blocking connection
        return self._inflight

    def _sources(self) -> list[str]:
        """Every list this channel takes from, in the order it takes from them (urgent lane first)."""
        lanes = self._queue_cycle.consume(len(self.active_queues))
        return [self._q_for_pri(lane, pri) for pri in self.priority_steps for lane in lanes]

    def _lane_of(self, source: str) -> str:
        return source.rsplit(self.sep, 1)[0]

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Send the next fetch, or (when nothing waited) block until a message arrives."""
        sources = self._sources()
        if not sources:
            return
        self._start_heartbeat()
        self._sources_seen.update(sources)
        connection: Any = self.client.connection
        if self._idle:
            lanes = [self._q_for_pri(lane, 0) for lane in self._queue_cycle.consume(len(self.active_queues))]
            self._arm_waiters(lanes[:-1])
            wait = lanes[-1]
            connection.send_command(
                "BLMOVE", wait, self.inflight.inflight(wait), "RIGHT", "LEFT", timeout or self.brpop_timeout
            )
            self._pending = wait
        else:
            connection.send_command(*self.inflight.fetch_command(sources, self._credit()))
            self._pending = sources
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]

    def _brpop_read(self, **options: Any) -> bool:  # noqa: ANN401
        """Read the fetch's (or the blocking move's) reply and deliver what it moved."""
        pending = self._pending
        try:
            connection: Any = self.client.connection
            command = "BLMOVE" if isinstance(pending, str) else "EVALSHA"
            try:
                reply = self.client.parse_response(connection, command, **options)
            except redis_errors.NoScriptError:
                self.inflight.scripts.load(FETCH)  # Redis restarted without it: next fetch works
                self._idle = False
                raise Empty from None
            except self.connection_errors:
                connection.disconnect()
                raise
            if isinstance(pending, str):
                fetched = [Fetched(pending, self.inflight.inflight(pending), reply)] if reply else []
                self._idle = False
            else:
                fetched = self.inflight.parse_fetched(reply, pending)
                self._idle = not fetched
            if not fetched:
                raise Empty
            for item in fetched:
                self._deliver_fetched(item)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _credit(self) -> int:
        """How many more messages this channel may hold (kombu's prefetch count, as ``can_consume``)."""
        qos = self.qos
        if not qos.prefetch_count:
            return UNLIMITED_FETCH
        held = len(qos._delivered) - len(qos._dirty)  # noqa: SLF001 - kombu's own count of unacked messages
        return max(1, int(qos.prefetch_count) - held)

    def _arm_waiters(self, lanes: list[str]) -> None:
        """Block one connection per lane in ``BLMOVE``, so a message there is taken at once."""
        for lane in lanes:
            if lane in self._armed:
                continue
            client = self._waiters.get(lane)
            if client is None:
                client = self._waiters[lane] = self._create_client(asynchronous=True)
                client.connection = client.connection_pool.get_connection()
            self.connection.cycle._register(self, client, WAITER + lane)  # noqa: SLF001
            client.connection.send_command(
                "BLMOVE", lane, self.inflight.inflight(lane), "RIGHT", "LEFT", self.brpop_timeout
            )
            self._armed.add(lane)

    def waiter_readable(self, kind: str) -> None:
        """A lane waiter's ``BLMOVE`` answered: deliver what it moved, and wait again if there is credit."""
        lane = kind.removeprefix(WAITER)
        client = self._waiters[lane]
        self._armed.discard(lane)
        try:
            reply = client.parse_response(client.connection, "BLMOVE")
        except self.connection_errors:
            client.connection.disconnect()
            raise
        if reply:
            self._idle = False
            self._deliver_fetched(Fetched(lane, self.inflight.inflight(lane), reply))
            if self.qos.can_consume():
                self._arm_waiters([lane])  # an urgent burst comes in one move per message

    def _poll_error(self, type: str, **options: Any) -> None:  # noqa: A002, ANN401 - kombu's signature
        if type.startswith(WAITER):
            client = self._waiters[type.removeprefix(WAITER)]
            client.parse_response(client.connection, "BLMOVE")
            return
        super()._poll_error(type, **options)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401, FBT001
        """Consume ``queue``; a queue consumed without acks has its messages dropped as they are fetched."""
        if no_ack:
            self._no_ack.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _basic_cancel(self, consumer_tag: str) -> Any:  # noqa: ANN401 - kombu's
        """Stop consuming a queue; once no lane is consumed (a warm shutdown), stop fetching at once."""
        result = super()._basic_cancel(consumer_tag)
        if not self.active_queues and self._inflight is not None:
            self._stop_fetching()
        return result

    def _stop_fetching(self) -> None:
        """Drop the blocked moves and hand back what they moved but nobody received."""
        pending: Any = self._in_poll
        if pending:
            pending.disconnect()  # its reply, if any, is a message in the in-flight list: handed back below
            self._in_poll = None  # type: ignore[assignment]
        for client in self._waiters.values():
            if client.connection is not None:
                client.connection.disconnect()
        self._armed.clear()
        self._idle = False
        try:
            requeued = self._hand_back_undelivered()
        except redis_errors.RedisError as exc:
            log.warning("hand_back_failed", consumer=self.consumer_id, error=type(exc).__name__)
            return
        if requeued:
            log.info("undelivered_handed_back", consumer=self.consumer_id, requeued=requeued)

    def _hand_back_undelivered(self) -> int:
        """Messages in the in-flight lists that were never delivered go back to the head of their lane."""
        delivered = Counter(
            item.message for tag, item in HELD.items() if tag.startswith(self.consumer_id + ":")
        )
        requeued = 0
        for source in sorted(self._sources_seen):
            key = self.inflight.inflight(source)
            # Newest first, each pushed to the head: the oldest ends up next to be taken.
            messages: list[bytes] = self.inflight.client.lrange(key, 0, -1)  # type: ignore[assignment]
            for message in messages:
                if delivered[message] > 0:
                    delivered[message] -= 1
                    continue
                requeued += self.inflight.requeue(Fetched(source, key, message), head=True)
        return requeued

    def _deliver_fetched(self, item: Fetched) -> None:
        lane = self._lane_of(item.source)
        payload = envelope(item.message, lane)
        tag = f"{self.consumer_id}:{next(self._tags)}"
        payload["properties"]["delivery_tag"] = tag
        if isinstance(payload.get("headers"), dict):
            payload["headers"][TAG_HEADER] = tag  # the task reads it as self.request.<TAG_HEADER>
        if lane in self._no_ack:
            self.inflight.ack(item)  # delivered is done, for a consumer that never acks
        else:
            HELD[tag] = item
            headers = payload.get("headers")
            if lane == keys.URGENT_QUEUE and not (isinstance(headers, dict) and headers.get("eta")):
                URGENT_FIRST.hold(tag)  # routine stops here pause until its task returns
        self.connection._deliver(payload, lane)  # noqa: SLF001

    # --- acks, heartbeat, shutdown ----------------------------------------------------------------

    def settle(self, delivery_tag: str, *, requeue: str | None) -> None:
        """Remove a delivered message from the in-flight list, or requeue it (``head``/``tail``)."""
        URGENT_FIRST.release(delivery_tag)
        item = HELD.pop(delivery_tag, None)
        if item is None:  # acknowledged already, by the task that recorded its outcome
            return
        if requeue is None:
            self.inflight.ack(item)
        else:
            self.inflight.requeue(item, head=requeue == "head")

    def hand_back(self, delivery_tag: str) -> None:
        """A message that will not run here (its worker stops): back to the head of its lane now."""
        self.settle(delivery_tag, requeue="head")
        virtual.QoS.ack(self.qos, delivery_tag)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            sources = [self._q_for_pri(lane, pri) for pri in self.priority_steps for lane in keys.LANES]
            self._heartbeat = Heartbeat(
                self.inflight, sources, interval_s=float(self.consumer_heartbeat_s)
            ).start()

    def release(self) -> None:
        """Hand back every message this consumer holds (to the head of its lane) and stop beating."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._inflight is None:
            return
        for tag in [tag for tag in HELD if tag.startswith(self.consumer_id + ":")]:
            HELD.pop(tag, None)
            URGENT_FIRST.release(tag)
        try:
            requeued = self.inflight.release(sorted(self._sources_seen))
        except redis_errors.RedisError as exc:
            # Unreachable: once this consumer's heartbeat is older than the timeout, a live worker
            # moves these messages back (or this process, reconnected, does).
            log.warning("release_failed", consumer=self.consumer_id, error=type(exc).__name__)
            return
        if requeued:
            log.info("consumer_released", consumer=self.consumer_id, requeued=requeued)

    def close(self) -> None:
        """Drop the blocking connections without reading them, hand back what is held, close."""
        pending: Any = self._in_poll
        if pending:
            pending.disconnect()
            self._in_poll = None  # type: ignore[assignment]
        for client in self._waiters.values():
            if client.connection is not None:
                client.connection.disconnect()
        self._armed.clear()
        self.release()
        super().close()

    # --- kombu fixes ------------------------------------------------------------------------------

    def _create_client(self, asynchronous: bool = False) -> Any:  # noqa: ANN401, FBT001, FBT002
        """One client per connection pool, not one per operation.

        kombu builds a new ``redis.Redis`` for every publish: redis-py 8 spends about 60 µs
        building each (its callback table). A client is thread-safe; every command still takes its
        own connection from the pool.
        """
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        cached = getattr(self, "_sync_client", None)
        if cached is None or cached.connection_pool is not pool:
            cached = self._sync_client = super()._create_client(asynchronous=False)
        return cached

    def _update_queue_cycle(self) -> None:
        """... and the urgent lane first."""
        self._queue_cycle.update(
            sorted(self.active_queues, key=lambda name: (name != keys.URGENT_QUEUE, name))
        )

    def _put(self, queue: str, message: Mapping[str, Any], **kwargs: Any) -> None:  # noqa: ANN401
        if self.wait_replicas <= 0 or kwargs.get("_publish_batch") is not None:
            super()._put(queue, message, **kwargs)
            return
        # kombu's LPUSH (and queue expiry), then WAIT on the same connection: WAIT counts the
        # replicas that acknowledged this connection's writes.
        pri = self._get_message_priority(message, reverse=False)
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            pipe.lpush(self._q_for_pri(queue, pri), dumps(message))
            if self._expires and queue in self._expires:
                for step in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, step), self._expires[queue])
            queue_wait(pipe, self._wait_settings)
            acked = pipe.execute()[-1]
        try:
            check_wait(acked, self._wait_settings)
        except ReplicaShortfall as exc:
            raise redis_errors.ConnectionError(f"message {exc}") from None

    @property
    def _wait_settings(self) -> RedisSettings:
        return RedisSettings(wait_replicas=self.wait_replicas, wait_timeout_ms=self.wait_timeout_ms)

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:  # noqa: FBT001, FBT002
        if self.connection.client is None:
            raise redis_errors.ConnectionError("this channel's broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Poller(kombu_redis.MultiChannelPoller):
    """kombu's poller, which also reads the lane waiters' connections."""

    def on_readable(self, fileno: int) -> None:
        """A waiter's reply is read whatever the credit: what it moved is already in flight here."""
        chan_type = self._fd_to_chan.get(fileno)
        if chan_type is not None and chan_type[1].startswith(WAITER):
            chan_type[0].waiter_readable(chan_type[1])
            return
        super().on_readable(fileno)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel` and :class:`Poller`."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.cycle = Poller()  # type: ignore[assignment]


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (the master found through the sentinels) with the same changes."""

    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.SentinelChannel.from_transport_options,
        *WAIT_OPTIONS,
        *FETCH_OPTIONS,
    )


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with :class:`SentinelChannel` and :class:`Poller`."""

    Channel = SentinelChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.cycle = Poller()  # type: ignore[assignment]


#: The ``broker_transport`` value that selects this transport.
TRANSPORT: Final = "recstop.worker.broker.transport:Transport"
#: The ``broker_transport`` value for ``sentinel://`` broker URLs.
SENTINEL_TRANSPORT: Final = "recstop.worker.broker.transport:SentinelTransport"


def transport_for(url: str) -> str:
    """The ``broker_transport`` for a broker URL: the Sentinel variant for ``sentinel://``."""
    return SENTINEL_TRANSPORT if url.startswith("sentinel://") else TRANSPORT


class Connection(KombuConnection):
    """kombu's connection, which keeps the transport it was configured with when it fails over.

    On a connection error kombu switches to the next broker URL (``switch``) and takes the
    transport from that URL's scheme, dropping the one ``broker_transport`` named: after the first
    reconnect every connection would be kombu's stock transport, without the changes above. (A
    ``sentinel://a;sentinel://b`` URL list switches on every failover; a single URL switches to
    itself.) Here the configured transport stays.
    """

    def switch(self, conn_str: str) -> None:
        """Switch to another broker URL, keeping the configured transport."""
        super().switch(conn_str)
        configured = self._initial_params.get("transport")
        if configured:
            self.transport_cls = configured


class AMQP(celery.app.amqp.AMQP):  # type: ignore[misc]
    """Celery's messaging helpers with :class:`Connection` (``Celery(amqp=AMQP)``)."""

    Connection = Connection
