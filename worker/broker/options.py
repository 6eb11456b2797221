"""The transport options of recstop's channels, their defaults, and kombu's options they refuse.

recstop's own options take their defaults from the settings model (``RedisSettings``), so a
channel built without them (a plain ``kombu.Connection``) behaves as a worker with the shipped
settings. kombu's ack-emulation options configure what reliable fetch replaces (the ``unacked``
hash, its restore sweeps, the visibility timeout): honouring them is impossible and ignoring them
would be a silent difference, so a channel refuses them when it is created, before any declare or
consume (docs/architecture.md, "Where recstop differs from kombu").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from recstop.worker.config.redis import RedisSettings

#: The shipped settings: every default of the options below.
DEFAULTS: Final = RedisSettings()
#: Transport options of recstop's channels beyond kombu's: replicas a publish waits for, and how long.
WAIT_OPTIONS: Final = ("wait_replicas", "wait_timeout_ms")
#: Transport options of the reliable fetch: when a silent consumer counts as gone, how often to beat.
FETCH_OPTIONS: Final = ("consumer_timeout_s", "consumer_heartbeat_s")

_INFLIGHT = (
    "unacknowledged messages are kept in per-consumer in-flight lists (recstop:inflight:*), "
    "not in kombu's unacked hash"
)
_HEARTBEAT = (
    "a consumer's messages come back when its heartbeat stops (consumer_timeout_s), "
    "not after a visibility timeout"
)
_NO_SWEEP = "there is no restore sweep: a live consumer reaps a silent one's in-flight lists"
#: kombu's options that recstop refuses, and why.
REFUSED: Final[Mapping[str, str]] = {
    "visibility_timeout": _HEARTBEAT,
    "unacked_key": _INFLIGHT,
    "unacked_index_key": _INFLIGHT,
    "unacked_mutex_key": _INFLIGHT,
    "unacked_mutex_expire": _INFLIGHT,
    "unacked_restore_limit": _NO_SWEEP,
    "unacked_restore_interval": _NO_SWEEP,
    "unacked_restore_throttle": _NO_SWEEP,
    "ack_emulation": "a fetched message stays in Redis until it is acked; consume with no_ack instead",
    "queue_order_strategy": (
        "queues are taken from in the order they are consumed (kombu's 'priority'), the urgent lane "
        "first, so that an urgent stop is never behind a routine one"
    ),
}
#: A refused option given with this value asks for what recstop does anyway.
_HARMLESS: Final[Mapping[str, object]] = {"ack_emulation": True, "queue_order_strategy": "priority"}


class UnsupportedTransportOptionError(ValueError):
    """A kombu transport option recstop's Redis transport cannot honour (raised at channel creation)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"recstop's Redis transport does not support the transport option {name!r}: {reason} "
            "(docs/architecture.md, 'Where recstop differs from kombu')"
        )
        self.option = name


def refuse_unsupported(options: Mapping[str, Any]) -> None:
    """Raise :class:`UnsupportedTransportOptionError` for the first refused option in ``options``."""
    for name, reason in REFUSED.items():
        if name in options and not (name in _HARMLESS and options[name] == _HARMLESS[name]):
            raise UnsupportedTransportOptionError(name, reason)
