"""kombu's Redis poller, which also reads the lane waiters' connections and knows its driver."""

from __future__ import annotations

from typing import Final

from kombu.transport import redis as kombu_redis

#: Poller registration type of a lane waiter's connection: ``WAIT:<list>``.
WAITER: Final = "WAIT:"


class Poller(kombu_redis.MultiChannelPoller):
    """kombu's poller, which also reads the lane waiters' connections.

    ``in_event_loop`` is set once an event loop drives the transport (a Celery worker's hub): a
    read may then deliver every message one fetch moved (up to the free prefetch credit). Without
    one, ``drain_events`` delivers one message per call, as kombu's ``BRPOP`` does.
    """

    in_event_loop = False

    def on_readable(self, fileno: int) -> None:
        """A waiter's reply is read whatever the credit: what it moved is already in flight here."""
        chan_type = self._fd_to_chan.get(fileno)
        if chan_type is not None and chan_type[1].startswith(WAITER):
            chan_type[0].waiter_readable(chan_type[1])
            return
        super().on_readable(fileno)
