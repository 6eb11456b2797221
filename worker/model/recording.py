"""A recording as the Recordings API reports it, with the API's field names: what a stop confirms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Recording:
    """One recording of a call; times are epoch milliseconds, None where the API gave none."""

    recording_id: str | None
    recording_url: str | None
    recording_start_ms: int | None = None
    recording_end_ms: int | None = None
    recording_duration_ms: float | None = None

    @property
    def ended(self) -> bool:
        """Vobiz reports its end: the recording is finalized."""
        return self.recording_end_ms is not None

    def ended_after_ms(self, asked_at_s: float) -> float | None:
        """How long it kept running after the stop was asked for (``asked_at_s``: epoch seconds)."""
        if self.recording_end_ms is None:
            return None
        return round(self.recording_end_ms - asked_at_s * 1000, 1)

    def to_dict(self) -> dict[str, Any]:
        """The JSON view (the status record, the Celery result and the audit events use it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recording:
        """Read one back from a stop record."""
        return cls(
            data.get("recording_id"),
            data.get("recording_url"),
            data.get("recording_start_ms"),
            data.get("recording_end_ms"),
            data.get("recording_duration_ms"),
        )
