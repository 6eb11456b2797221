"""recstop producers: enqueue stop-recording tasks from Python code or the ``recstop`` CLI."""

from recstop.producers.producer import CancelResult, Producer, ReplayResult, StopHandle, StopSpec
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import (
    BrokerUnavailableError,
    InvalidStopRequest,
    RecstopError,
    UnknownAccountError,
)

__all__ = [
    "BrokerUnavailableError",
    "CancelResult",
    "InvalidStopRequest",
    "Producer",
    "RecstopError",
    "ReplayResult",
    "Settings",
    "StopHandle",
    "StopSpec",
    "UnknownAccountError",
]
