"""recstop producers: enqueue stop-recording tasks from Python code or the ``recstop`` CLI."""

from producers.producer import CancelResult, Producer, ReplayResult, StopHandle
from worker.errors import BrokerUnavailable, InvalidStopRequest, RecstopError, UnknownAccount
from worker.settings import Settings

__all__ = [
    "BrokerUnavailable",
    "CancelResult",
    "InvalidStopRequest",
    "Producer",
    "RecstopError",
    "ReplayResult",
    "Settings",
    "StopHandle",
    "UnknownAccount",
]
