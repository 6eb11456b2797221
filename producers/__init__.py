"""recstop producers: enqueue stop-recording tasks from Python code or the ``recstop`` CLI.

Everything a service uses is here (``from recstop.producers import ...``): the two producers, what
they return, the settings they read, and every error they raise. ``AsyncProducer`` (and
``redis.asyncio``) is imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recstop.producers.plan import CancelResult, ReplayResult, StopHandle, StopSpec
from recstop.producers.producer import Producer
from recstop.worker.config.producer import ProducerSettings
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import (
    BrokerMisconfiguredError,
    BrokerUnavailableError,
    ConfigError,
    InvalidBulkItem,
    InvalidStopRequest,
    RecstopError,
    StopNotStoredError,
    StopOutcomeUnknownError,
    UnknownAccountError,
)
from recstop.worker.model.status import StatusRecord
from recstop.worker.model.vocabulary import NotFound, State
from recstop.worker.state.redisclient import redis_client

if TYPE_CHECKING:
    from recstop.producers.aio import AsyncProducer
    from recstop.worker.state.asyncclient import async_redis_client

__all__ = [
    "AsyncProducer",
    "BrokerMisconfiguredError",
    "BrokerUnavailableError",
    "CancelResult",
    "ConfigError",
    "InvalidBulkItem",
    "InvalidStopRequest",
    "NotFound",
    "Producer",
    "ProducerSettings",
    "RecstopError",
    "ReplayResult",
    "Settings",
    "State",
    "StatusRecord",
    "StopHandle",
    "StopNotStoredError",
    "StopOutcomeUnknownError",
    "StopSpec",
    "UnknownAccountError",
    "async_redis_client",
    "redis_client",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - the lazily imported asyncio names
    """``AsyncProducer`` and ``async_redis_client``, imported on first use (they load redis.asyncio)."""
    if name == "AsyncProducer":
        from recstop.producers.aio import AsyncProducer  # noqa: PLC0415

        return AsyncProducer
    if name == "async_redis_client":
        from recstop.worker.state.asyncclient import async_redis_client  # noqa: PLC0415

        return async_redis_client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
