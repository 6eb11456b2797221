"""kombu's QoS (prefetch credit), with the acks kept in Redis as the consumer's in-flight lists."""

from __future__ import annotations

from typing import Any

from kombu.transport import virtual


class InflightQoS(virtual.QoS):
    """Acks, rejects and restores settle the message in Redis (``broker.channel.Channel.settle``).

    kombu's Redis QoS keeps unacked messages in a hash and sweeps it after a visibility timeout;
    here they are in the consumer's in-flight lists already, and a silent consumer's come back
    through the heartbeat.
    """

    restore_at_shutdown = True
    channel: Any

    def ack(self, delivery_tag: str) -> None:
        """The message is handled: drop it from the in-flight list."""
        self.channel.settle(delivery_tag, requeue=None)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:  # noqa: FBT001, FBT002 - kombu's signature
        """Drop the message, or (``requeue``) hand it back to the tail of its list, as kombu does."""
        self.channel.settle(delivery_tag, requeue="tail" if requeue else None)
        super().ack(delivery_tag)

    def restore_unacked(self, _client: object = None) -> list[Any]:
        """Hand every delivered, unacked message back to the head of its list (none unrestored)."""
        self.channel.requeue_unacked()
        self._delivered.clear()
        return []

    def restore_visible(self, *_args: object, **_kwargs: object) -> None:
        """Nothing to sweep: a dead consumer's messages come back through the heartbeat."""
