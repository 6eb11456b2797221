"""kombu's Redis transport (and its Sentinel variant) with reliable fetch, selected by ``broker_transport``.

The channel (``broker.channel``) moves each message into its consumer's in-flight list; the
poller (``broker.poller``) also reads the lane waiters; a reconnect keeps this transport
(``broker.failover``). Where recstop differs from kombu on purpose: docs/architecture.md.
"""

from __future__ import annotations

from typing import Any, Final

from kombu.transport import redis as kombu_redis

from recstop.worker.broker.channel import Channel
from recstop.worker.broker.failover import AMQP, Connection
from recstop.worker.broker.options import DEFAULTS, FETCH_OPTIONS, WAIT_OPTIONS
from recstop.worker.broker.poller import Poller

__all__ = [
    "AMQP",
    "SENTINEL_TRANSPORT",
    "TRANSPORT",
    "Connection",
    "SentinelChannel",
    "SentinelTransport",
    "Transport",
    "transport_for",
]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel` and :class:`Poller`."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self.cycle = Poller()  # type: ignore[assignment]

    @property
    def supports_batch_publish(self) -> bool:
        """Kombu's answer, unless publishes wait for replicas (a batch would skip the ``WAIT``)."""
        options = self.client.transport_options if self.client is not None else {}
        wait_replicas = options.get("wait_replicas", DEFAULTS.wait_replicas)
        return int(wait_replicas) <= 0 and bool(super().supports_batch_publish)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:  # noqa: ANN401
        """kombu's, and from now on a read delivers all a fetch moved (``Poller.in_event_loop``)."""
        poller: Any = self.cycle
        poller.in_event_loop = True
        super().register_with_event_loop(connection, loop)


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (the master found through the sentinels) with the same changes."""

    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.SentinelChannel.from_transport_options,
        *WAIT_OPTIONS,
        *FETCH_OPTIONS,
    )


class SentinelTransport(Transport, kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with :class:`SentinelChannel` and :class:`Poller`."""

    Channel = SentinelChannel


#: The ``broker_transport`` value that selects this transport.
TRANSPORT: Final = "recstop.worker.broker.transport:Transport"
#: The ``broker_transport`` value for ``sentinel://`` broker URLs.
SENTINEL_TRANSPORT: Final = "recstop.worker.broker.transport:SentinelTransport"


def transport_for(url: str) -> str:
    """The ``broker_transport`` for a broker URL: the Sentinel variant for ``sentinel://``."""
    return SENTINEL_TRANSPORT if url.startswith("sentinel://") else TRANSPORT
