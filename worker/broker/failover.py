"""A reconnect keeps recstop's transport: kombu's ``Connection`` and Celery's ``AMQP`` that use it."""

from __future__ import annotations

import celery.app.amqp
from kombu.connection import Connection as KombuConnection


class Connection(KombuConnection):
    """kombu's connection, which keeps the transport it was configured with when it fails over.

    On a connection error kombu switches to the next broker URL (``switch``) and takes the
    transport from that URL's scheme, dropping the one ``broker_transport`` named: after the first
    reconnect every connection would be kombu's stock transport, without recstop's reliable fetch.
    (A ``sentinel://a;sentinel://b`` URL list switches on every failover; a single URL switches to
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
