"""How a channel reaches Redis: one client per pool, a clear error once closed, publishes that WAIT.

A closed connection is a Redis error, and publishes can wait for replicas. These change kombu's
Redis channel without touching how it fetches (``broker.channel`` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis import exceptions as redis_errors

from recstop.worker.broker.options import DEFAULTS, WAIT_OPTIONS
from recstop.worker.config.redis import RedisSettings
from recstop.worker.state.redisclient import ReplicaShortfall, check_wait, queue_wait


class ClientChannel(kombu_redis.Channel):
    """kombu's Redis channel with a cached client, a clear closed-connection error, and ``WAIT``.

    With the ``wait_replicas`` transport option (> 0), a published message also waits until that
    many replicas hold it (``WAIT``, at most ``wait_timeout_ms``); a shortfall is a Redis
    ``ConnectionError``, so the producer refuses the enqueue instead of reporting it accepted.
    kombu's batched publishing sends no ``WAIT``, so with replicas asked for the channel does not
    offer it: a batch then publishes each message at once, each waiting.
    """

    from_transport_options = (*kombu_redis.Channel.from_transport_options, *WAIT_OPTIONS)  # type: ignore[assignment]
    wait_replicas: int = DEFAULTS.wait_replicas
    wait_timeout_ms: int = DEFAULTS.wait_timeout_ms

    @property
    def supports_batch_publish(self) -> bool:
        """Kombu's answer, unless publishes wait for replicas (a batch would skip the ``WAIT``)."""
        return self.wait_replicas <= 0 and bool(super().supports_batch_publish)

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

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:  # noqa: FBT001, FBT002
        """Kombu's, but a closed connection is a Redis ``ConnectionError`` (Celery reconnects).

        kombu raises an ``AttributeError`` there.
        """
        if self.connection.client is None:
            raise redis_errors.ConnectionError("this channel's broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params

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
