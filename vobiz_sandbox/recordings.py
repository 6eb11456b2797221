"""A recording's life (started, ended, finalized) and how the Recordings API and its callback show it.

A recording ends when it is stopped, when its call hangs up, or when its ``time_limit_s`` has passed since
it started, whichever comes first. Its end is only shown (``recording_end_ms``, durations) once it is
finalized, some time after it ended (see :class:`recstop.sandbox.state.SandboxState`).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

#: Where the sandbox's recordings "live".
MEDIA_BASE: Final = "https://media.sandbox.vobiz.test/rec"
FILE_FORMATS: Final = ("mp3", "wav")
#: The ``recording_type`` values of the Recordings API; the sandbox only records calls.
RECORDING_TYPES: Final = ("call", "conference", "trunk")
CALL_RECORDING: Final = "call"
#: The offset of Vobiz's ``add_time`` (India Standard Time).
ADD_TIME_ZONE: Final = timezone(timedelta(hours=5, minutes=30))
#: File size per millisecond of audio: mp3 at 32 kbit/s, wav as 8 kHz 16-bit mono.
BYTES_PER_MS: Final = {"mp3": 4, "wav": 16}
DEFAULT_FROM_NUMBER: Final = "918045678901"
DEFAULT_TO_NUMBER: Final = "919812345678"


def media_url(recording_id: str, file_format: str = FILE_FORMATS[0]) -> str:
    """Return the URL of a recording's file in the sandbox's media domain."""
    return f"{MEDIA_BASE}/{recording_id}.{file_format}"


def new_recording_id() -> str:
    """Return a fresh recording id."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Recording:
    """One recording of a call.

    ``stopped_ms`` is set when a stop or the hang-up ends it, with ``finalize_delay_ms``, the finalization
    delay in force then.
    """

    recording_id: str
    url: str
    call_uuid: str
    auth_id: str
    start_us: int
    file_format: str = FILE_FORMATS[0]
    time_limit_s: int | None = None
    callback_url: str | None = None
    callback_method: str = "POST"
    from_number: str = DEFAULT_FROM_NUMBER
    to_number: str = DEFAULT_TO_NUMBER
    stopped_ms: int | None = None
    finalize_delay_ms: int = 0

    @property
    def start_ms(self) -> int:
        """When it started, epoch milliseconds."""
        return self.start_us // 1000

    @property
    def end_ms(self) -> int | None:
        """When it ends or ended: the stop or hang-up, else its time limit; ``None``: nothing ends it yet."""
        if self.stopped_ms is not None:
            return self.stopped_ms
        return None if self.time_limit_s is None else self.start_ms + self.time_limit_s * 1000

    def active(self, now_ms: int) -> bool:
        """Whether it is still recording at ``now_ms``."""
        end = self.end_ms
        return end is None or end > now_ms


@dataclass(frozen=True, slots=True)
class Shown:
    """A recording as the API shows it at one instant: ``end_ms`` only once it is finalized."""

    recording: Recording
    end_ms: int | None

    @property
    def duration_ms(self) -> int | None:
        """Its length once finalized."""
        return None if self.end_ms is None else self.end_ms - self.recording.start_ms


def rounded_s(duration_ms: int) -> int:
    """Whole seconds, rounded up, as ``rounded_recording_duration`` counts them."""
    return math.ceil(duration_ms / 1000)


def decimal(value: float) -> str:
    """A number as the API's decimal strings read: ``7880`` -> ``"7880.00000"``."""
    return f"{value:.5f}"


def add_time(epoch_us: int) -> str:
    """``add_time`` as Vobiz writes it: ``"2026-05-07 09:45:35.79276+05:30"`` (trailing zeros dropped)."""
    moment = datetime.fromtimestamp(epoch_us // 1_000_000, ADD_TIME_ZONE)
    fraction = f"{epoch_us % 1_000_000:06d}".rstrip("0")
    offset = moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S}{'.' + fraction if fraction else ''}{offset[:3]}:{offset[3:]}"


def created_at(epoch_us: int) -> str:
    """The older page's ``created_at``: ISO 8601 in UTC, with a ``T`` and a ``Z``."""
    moment = datetime.fromtimestamp(epoch_us // 1_000_000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_us % 1_000_000:06d}Z"


def resource_uri(auth_id: str, recording_id: str) -> str:
    """The recording's ``resource_uri``."""
    return f"/v1/Account/{auth_id}/Recording/{recording_id}/"


def current_object(shown: Shown) -> dict[str, object]:
    """The recording in the Recordings API's current shape."""
    rec, duration = shown.recording, shown.duration_ms
    return {
        "recording_id": rec.recording_id,
        "recording_url": rec.url,
        "call_uuid": rec.call_uuid,
        "conference_name": None,
        "recording_type": CALL_RECORDING,
        "recording_format": rec.file_format,
        "add_time": add_time(rec.start_us),
        "recording_start_ms": rec.start_ms,
        "recording_end_ms": shown.end_ms,
        "recording_duration_ms": None if duration is None else decimal(duration),
        "rounded_recording_duration": None if duration is None else rounded_s(duration),
        "from_number": rec.from_number,
        "to_number": rec.to_number,
        "resource_uri": resource_uri(rec.auth_id, rec.recording_id),
        "recording_storage_duration": 0,
        "recording_storage_rate": 0.0,
        "monthly_recording_storage_amount": 0.0,
    }


def old_object(shown: Shown) -> dict[str, object]:
    """The recording in the older page's shape (``call_id``, ``url``, ``duration`` in seconds ...)."""
    rec, duration = shown.recording, shown.duration_ms
    return {
        "recording_id": rec.recording_id,
        "call_id": rec.call_uuid,
        "recording_type": CALL_RECORDING,
        "url": rec.url,
        "download_path": f"/v1/Account/{rec.auth_id}/Recording/{rec.recording_id}/download/",
        "duration": None if duration is None else rounded_s(duration),
        "created_at": created_at(rec.start_us),
        "file_size": None if duration is None else duration * BYTES_PER_MS[rec.file_format],
        "format": rec.file_format,
    }


def callback_params(shown: Shown) -> dict[str, str]:
    """The form fields of the recording callback, sent once the recording is finalized."""
    rec, duration = shown.recording, shown.duration_ms
    assert shown.end_ms is not None
    assert duration is not None
    return {
        "api_id": str(uuid.uuid4()),
        "record_url": rec.url,
        "recording_id": rec.recording_id,
        "call_uuid": rec.call_uuid,
        "recording_format": rec.file_format,
        "recording_start_ms": str(rec.start_ms),
        "recording_end_ms": str(shown.end_ms),
        "recording_duration_ms": decimal(duration),
        "recording_duration": str(rounded_s(duration)),
    }
