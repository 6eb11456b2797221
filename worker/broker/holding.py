"""What a consumer holds: each message it moved into an in-flight list, until it is settled.

A delivered message is held (``state.inflight.HELD``, by its delivery tag) until an ack drops it
from its in-flight list, or a reject or a hand-back requeues it, marked redelivered as kombu marks
it; when the channel closes, everything it still holds goes back to the head of its list. The
consumer beats before its first message moves, so one that dies holding messages is reaped.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import structlog
from kombu.transport import virtual
from redis import Redis
from redis import exceptions as redis_errors

from recstop.worker.broker.client import ClientChannel
from recstop.worker.broker.heartbeat import Heartbeat
from recstop.worker.broker.options import DEFAULTS, FETCH_OPTIONS
from recstop.worker.broker.queueitem import envelope, redelivered
from recstop.worker.policy.priority import URGENT_FIRST
from recstop.worker.state import keys
from recstop.worker.state.inflight import FETCH, HELD, Fetched, Inflight, new_consumer_id

log = structlog.get_logger("recstop.transport")


class HoldingChannel(ClientChannel):
    """The channel's side of what it holds: tags, acks, requeues, heartbeat, hand-back, release."""

    from_transport_options = (*ClientChannel.from_transport_options, *FETCH_OPTIONS)  # type: ignore[assignment]
    consumer_timeout_s: float = DEFAULTS.consumer_timeout_s
    consumer_heartbeat_s: float = DEFAULTS.consumer_heartbeat_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        self.consumer_id = new_consumer_id()
        self._tags = itertools.count()
        self._sources_seen: set[str] = set()  # lists this consumer may hold messages of (acked queues)
        self._inflight: Inflight | None = None
        self._heartbeat: Heartbeat | None = None
        super().__init__(*args, **kwargs)

    @property
    def inflight(self) -> Inflight:
        """The in-flight protocol of this consumer, on a pooled (thread-safe) client."""
        if self._inflight is None:
            # A plain client: kombu's prefixed one would prefix only some keys of a script call.
            client = Redis(connection_pool=self.pool)
            self._inflight = Inflight(
                client,
                self.consumer_id,
                timeout_s=float(self.consumer_timeout_s),
                prefix=self.global_keyprefix,
            )
            self._inflight.scripts.load(FETCH)  # sent with EVALSHA on the blocking connection
        return self._inflight

    def _queue_lists(self, queue: str) -> list[str]:
        """A queue's lists in the order they are taken from: the queue, then its priority lists."""
        return list(dict.fromkeys(self._q_for_pri(queue, pri) for pri in self.priority_steps))

    def _lane_lists(self) -> list[str]:
        """The lanes and their priority lists: reaped from any silent consumer, named or not."""
        return [name for lane in keys.LANES for name in self._queue_lists(lane)]

    def _take(self, item: Fetched, queue: str) -> dict[str, Any]:
        """The envelope of a fetched message, tagged, and held until acked (unless it was popped)."""
        payload = envelope(item.message, queue)
        tag = f"{self.consumer_id}:{next(self._tags)}"
        payload["properties"]["delivery_tag"] = tag  # the task finds its in-flight entry by it
        if item.popped:
            return payload
        HELD[tag] = item
        headers = payload.get("headers")
        if queue == keys.URGENT_QUEUE and not (isinstance(headers, dict) and headers.get("eta")):
            URGENT_FIRST.hold(tag)  # routine stops here pause until its task returns
        return payload

    def settle(self, delivery_tag: str, *, requeue: str | None) -> None:
        """Remove a delivered message from the in-flight list, or requeue it (``head``/``tail``)."""
        URGENT_FIRST.release(delivery_tag)
        item = HELD.get(delivery_tag)
        if item is None:  # acknowledged already, by the task that recorded its outcome
            return
        if requeue is None:
            self.inflight.ack(item)
        else:
            self.inflight.requeue(item, head=requeue == "head", back=redelivered(item.message))
        # Held until settled in Redis: a hand-back of undelivered messages meanwhile leaves it.
        HELD.pop(delivery_tag, None)

    def hand_back(self, delivery_tag: str) -> None:
        """A message that will not run here (its worker stops): back to the head of its list now."""
        self.settle(delivery_tag, requeue="head")
        virtual.QoS.ack(self.qos, delivery_tag)

    def _hold_from(self, sources: list[str]) -> None:
        """Before moving messages from ``sources`` into in-flight lists: beat, and remember them.

        A consumer that takes only from queues without acks (popped) holds nothing: no heartbeat.
        """
        if not sources:
            return
        self._sources_seen.update(sources)
        if self._heartbeat is None:
            # Listed before the first message moves, so that a crash right after is reaped.
            self.inflight.beat()
            self._heartbeat = Heartbeat(
                self.inflight, self._lane_lists(), interval_s=float(self.consumer_heartbeat_s)
            )
            self._heartbeat.start()

    def _held_here(self) -> dict[str, Fetched]:
        return {tag: item for tag, item in HELD.items() if tag.startswith(self.consumer_id + ":")}

    def _hand_back(self, *, delivered: bool) -> int:
        """Messages in the in-flight lists go back to the head of their lists, oldest first.

        Those never delivered always; those delivered and not acked only with ``delivered``, marked
        redelivered.
        """
        held = Counter(item.message for item in self._held_here().values())
        requeued = 0
        for source in sorted(self._sources_seen):
            key = self.inflight.inflight(source)
            # Newest first, each pushed to the head: the oldest ends up next to be taken.
            messages: list[bytes] = self.inflight.client.lrange(key, 0, -1)  # type: ignore[assignment]
            for message in messages:
                was_delivered = held[message] > 0
                if was_delivered:
                    held[message] -= 1
                    if not delivered:
                        continue
                back = redelivered(message) if was_delivered else message
                requeued += self.inflight.requeue(
                    self.inflight.fetched(source, message), head=True, back=back
                )
        return requeued

    def requeue_unacked(self) -> None:
        """Hand every delivered, unacked message back to the head of its list (kombu's restore)."""
        if self._heartbeat is None:
            return  # it never held a message
        held = self._held_here()
        try:
            requeued = sum(
                self.inflight.requeue(item, head=True, back=redelivered(item.message))
                for item in reversed(list(held.values()))
            )
        except redis_errors.RedisError as exc:
            log.warning("restore_failed", consumer=self.consumer_id, error=type(exc).__name__)
            return
        for tag in held:
            HELD.pop(tag, None)
            URGENT_FIRST.release(tag)
        if requeued:
            log.info("unacked_restored", consumer=self.consumer_id, requeued=requeued)

    def release(self) -> None:
        """Hand back every message this consumer holds (to the head of its list) and stop beating."""
        if self._heartbeat is None:
            return  # it never held a message
        self._heartbeat.stop()
        try:
            requeued = self._hand_back(delivered=True)
            requeued += self.inflight.release(sorted({*self._sources_seen, *self._lane_lists()}))
        except redis_errors.RedisError as exc:
            # Unreachable: once this consumer's heartbeat is older than the timeout, a live worker
            # moves these messages back (or this process, reconnected, does).
            log.warning("release_failed", consumer=self.consumer_id, error=type(exc).__name__)
            return
        finally:
            for tag in self._held_here():
                HELD.pop(tag, None)
                URGENT_FIRST.release(tag)
        if requeued:
            log.info("consumer_released", consumer=self.consumer_id, requeued=requeued)
