"""recstop producers: enqueue stop-recording tasks from Python code or the ``recstop`` CLI."""

from producers.producer import CancelResult, Producer, ReplayResult, StopHandle, StopSpec
from worker.errors import BrokerUnavailableError, InvalidStopRequest, RecstopError, UnknownAccountError
from worker.settings import Settings

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
