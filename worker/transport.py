"""kombu's Redis transport (and its Sentinel variant) with two holes closed, selected by ``broker_transport``.

1. A list item that is not a kombu envelope (not JSON, headers that are not an object, no
   properties...) makes kombu raise inside the worker's event loop: the worker exits and the
   item is gone. Here such an item is wrapped in an envelope of content type ``BAD_ENVELOPE``,
   keeping its raw bytes, so the consumer dead-letters it like any other poison message.
2. When Redis goes away, a channel of the closed connection is still used to ack, reject or
   restore messages, and kombu fails with ``AttributeError`` (its connection info is gone), which
   Celery treats as unrecoverable. Here that is a Redis ``ConnectionError``: Celery logs it and
   reconnects, and the unacked message comes back after the visibility timeout.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from queue import Empty
from typing import Any, Final

import celery.app.amqp
from kombu.connection import Connection as KombuConnection
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis import exceptions as redis_errors

from worker.connection import ReplicaShortfall, check_wait, queue_wait
from worker.keys import URGENT_QUEUE
from worker.settings import RedisSettings

#: Transport options of recstop's channels beyond kombu's: replicas a publish waits for, and how long.
WAIT_OPTIONS: Final = ("wait_replicas", "wait_timeout_ms")
#: Content type of an envelope made for a list item that was not a kombu message.
BAD_ENVELOPE: Final = "application/x-recstop-bad-envelope"


def envelope(item: bytes | str, routing_key: str) -> dict[str, Any]:
    """Decode a list item into kombu's envelope, or wrap it as a ``BAD_ENVELOPE`` one."""
    try:
        payload = loads(bytes_to_str(item))  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - any decoding failure means "not an envelope"
        payload = None
    if _is_envelope(payload):
        return payload  # type: ignore[no-any-return]
    raw = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": "binary",
        "content-type": BAD_ENVELOPE,
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "priority": 0,
        },
    }


def _is_envelope(payload: object) -> bool:
    """Whether ``payload`` has the shape kombu's virtual transport reads without failing."""
    if not isinstance(payload, Mapping):
        return False
    properties = payload.get("properties")
    headers = payload.get("headers", {})
    if not isinstance(properties, Mapping) or not isinstance(headers, Mapping | None):
        return False
    info = properties.get("delivery_info")
    return (
        isinstance(info, Mapping)
        and isinstance(properties.get("delivery_tag"), str | int)
        and isinstance(payload.get("body", ""), str | bytes)
        and isinstance(payload.get("content-type", ""), str | None)
        and isinstance(payload.get("content-encoding", ""), str | None)
        and isinstance(properties.get("body_encoding", "base64"), str)
        and isinstance(properties.get("priority", 0), int | None)
    )


class Channel(kombu_redis.Channel):
    """The Redis channel, tolerant of foreign list items and of a closed connection.

    With the ``wait_replicas`` transport option (> 0), a published message also waits until that
    many replicas hold it (``WAIT``, at most ``wait_timeout_ms``); a shortfall is a Redis
    ``ConnectionError``, so the producer refuses the enqueue instead of reporting it accepted.
    """

    from_transport_options = (*kombu_redis.Channel.from_transport_options, *WAIT_OPTIONS)  # type: ignore[assignment]
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    #: BRPOP names the queues in a fixed order (kombu's default rotates them for fairness) ...
    queue_order_strategy = "priority"

    def _create_client(self, asynchronous: bool = False) -> Any:  # noqa: ANN401, FBT001, FBT002
        """One client per connection pool, not one per operation.

        kombu builds a new ``redis.Redis`` for every publish, unacked bookkeeping and ack: three
        per message. redis-py 8 spends about 60 µs building each (its callback table), which made
        this the largest single cost of the consumer thread. A client is thread-safe; every
        command still takes its own connection from the pool.
        """
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        cached = getattr(self, "_sync_client", None)
        if cached is None or cached.connection_pool is not pool:
            cached = self._sync_client = super()._create_client(asynchronous=False)  # type: ignore[no-untyped-call]
        return cached

    def _update_queue_cycle(self) -> None:
        """... and the urgent lane first: Redis pops from the first non-empty list it is given."""
        self._queue_cycle.update(sorted(self.active_queues, key=lambda name: (name != URGENT_QUEUE, name)))

    def _put(self, queue: str, message: Mapping[str, Any], **kwargs: Any) -> None:  # noqa: ANN401
        if self.wait_replicas <= 0 or kwargs.get("_publish_batch") is not None:
            super()._put(queue, message, **kwargs)  # type: ignore[no-untyped-call]
            return
        # kombu's LPUSH (and queue expiry), then WAIT on the same connection: WAIT counts the
        # replicas that acknowledged this connection's writes (and, the stream being ordered, the
        # producer's earlier status record too).
        pri = self._get_message_priority(message, reverse=False)  # type: ignore[no-untyped-call]
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            pipe.lpush(self._q_for_pri(queue, pri), dumps(message))  # type: ignore[no-untyped-call]
            if self._expires and queue in self._expires:
                for step in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, step), self._expires[queue])  # type: ignore[no-untyped-call]
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
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params

    def _brpop_read(self, **options: Any) -> bool:  # noqa: ANN401
        # kombu 5.7's method, with ``envelope`` in place of a bare ``loads``.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]  # type: ignore[no-untyped-call]
                self._queue_cycle.rotate(dest)
                self.connection._deliver(envelope(item, dest), dest)  # noqa: SLF001
                return True
            raise Empty
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (the master found through the sentinels) with the same two fixes.

    The fixes come first in the method order; kombu's Sentinel channel then builds its connection
    pool from the sentinels (``_get_pool``) on top of the same ``_connparams``.
    """

    from_transport_options = (*kombu_redis.SentinelChannel.from_transport_options, *WAIT_OPTIONS)  # type: ignore[assignment]


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel


#: The ``broker_transport`` value that selects this transport.
TRANSPORT: Final = "worker.transport:Transport"
#: The ``broker_transport`` value for ``sentinel://`` broker URLs.
SENTINEL_TRANSPORT: Final = "worker.transport:SentinelTransport"


def transport_for(url: str) -> str:
    """The ``broker_transport`` for a broker URL: the Sentinel variant for ``sentinel://``."""
    return SENTINEL_TRANSPORT if url.startswith("sentinel://") else TRANSPORT


class Connection(KombuConnection):
    """kombu's connection, which keeps the transport it was configured with when it fails over.

    On a connection error kombu switches to the next broker URL (``switch``) and takes the
    transport from that URL's scheme, dropping the one ``broker_transport`` named: after the first
    reconnect every connection would be kombu's stock transport, without the fixes above. (A
    ``sentinel://a;sentinel://b`` URL list switches on every failover; a single URL switches to
    itself.) Here the configured transport stays.
    """

    def switch(self, conn_str: str) -> None:
        """Switch to another broker URL, keeping the configured transport."""
        super().switch(conn_str)  # type: ignore[no-untyped-call]
        configured = self._initial_params.get("transport")
        if configured:
            self.transport_cls = configured


class AMQP(celery.app.amqp.AMQP):  # type: ignore[misc]
    """Celery's messaging helpers with :class:`Connection` (``Celery(amqp=AMQP)``)."""

    Connection = Connection
