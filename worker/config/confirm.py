"""Confirmation after a stop: whether recstop looks up the recordings a stop covered, and how long.

After a successful stop, a worker looks the call's recordings up in the Recordings API until every
recording the stop covered reports its end (``recording_end_ms``), or the deadline passes. The
lookups never delay a DELETE: they run on threads of their own and take only a rate-limit slot
that is free at once (``run.confirmer``).
"""

from __future__ import annotations

from dataclasses import dataclass

from recstop.worker.config import parsers
from recstop.worker.config.fields import require, setting


@dataclass(frozen=True)
class ConfirmSettings:
    """When and how a stop's recordings are confirmed ended."""

    enabled: bool = setting(
        True,  # noqa: FBT003 - a field's default
        env="RECSTOP_CONFIRM",
        parse=parsers.boolean,
        help="After a successful stop, look up the call's recordings until each one the stop covered "
        "reports its end (`confirmation` in `recstop status`, the Celery result and the audit trail).",
    )
    deadline_s: float = setting(
        300.0,
        env="RECSTOP_CONFIRM_DEADLINE_S",
        parse=parsers.positive_float,
        help="A stop whose recordings have not all reported their end this long after it stopped is "
        "`unconfirmed` (reason `deadline`); the stop itself stays stopped.",
    )
    backoff_base_s: float = setting(
        0.5,
        env="RECSTOP_CONFIRM_BACKOFF_BASE_S",
        parse=parsers.positive_float,
        help="The first lookup comes this long after the stop; each later one waits twice as long.",
    )
    backoff_cap_s: float = setting(
        30.0,
        env="RECSTOP_CONFIRM_BACKOFF_CAP_S",
        parse=parsers.positive_float,
        help="Longest wait between two lookups of one stop's recordings.",
    )
    concurrency: int = setting(
        8,
        env="RECSTOP_CONFIRM_CONCURRENCY",
        parse=parsers.positive_int,
        help="Lookups in flight at once per worker process (threads of their own, beside the stops').",
    )

    def __post_init__(self) -> None:
        require(
            self.backoff_base_s <= self.backoff_cap_s,
            type(self),
            "backoff_base_s",
            f"must not exceed backoff_cap_s ({self.backoff_cap_s:g}), got {self.backoff_base_s:g}",
        )
