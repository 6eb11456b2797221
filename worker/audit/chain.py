r"""The hash chain of the audit table, as pure functions: each row's hash covers the row and the one before.

``hash(row) = sha256(prev_hash + "\\n" + canonical(row))``, where ``canonical`` is a JSON array of
the row's position (``seq``), its stream id, when it was recorded and every event column, in a
fixed order, typed as the table types them (so a value read back from either database encodes to
the same bytes). The first row ever has ``prev_hash`` :data:`GENESIS`. One chain runs over the whole
table in ``seq`` order; each UTC day's last hash is its digest (docs/audit.md: what this proves).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from recstop.worker.audit.event import COLUMNS

GENESIS: Final = "0" * 64
#: The encoding's version: the first element of every canonical array.
VERSION: Final = "recstop-audit/1"
#: Every chained column, in the order ``canonical`` encodes them.
CHAINED: Final = ("seq", "recorded_at", *COLUMNS)
_FLOATS: Final = frozenset({"recorded_at", "at", "duration_ms", "retry_in_s", "due_at"})
_INTS: Final = frozenset({"seq", "attempt", "http_status"})


def _typed(name: str, value: Any) -> Any:  # noqa: ANN401 - a column value of any of the table's types
    if value is None:
        return None
    if name in _FLOATS:
        return float(value)
    if name in _INTS:
        return int(value)
    if name == "urgent":
        return bool(value)
    return str(value)


def canonical(row: Mapping[Any, Any]) -> bytes:
    """The bytes a row's hash covers: its chained columns as a compact JSON array."""
    values = [VERSION, *(_typed(name, row[name]) for name in CHAINED)]
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def link(prev_hash: str, row: Mapping[Any, Any]) -> str:
    """The hash of ``row`` chained after the row whose hash is ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(row)).hexdigest()


def day_of(epoch: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of an epoch time: the span of one digest."""
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()
