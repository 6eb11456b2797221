"""Settings a scenario changes from the shipped defaults, and why: printed beside the figures they made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Overrides:
    """Environment variables set on top of the shipped defaults, with the reason in one line."""

    env: Mapping[str, str] = field(default_factory=dict)
    why: str = ""

    def __bool__(self) -> bool:
        return bool(self.env)

    def __or__(self, other: Overrides) -> Overrides:
        """Both sets (``other`` wins on a clash), both reasons."""
        why = "; ".join(w for w in (self.why, other.why) if w)
        return Overrides({**self.env, **other.env}, why)

    def as_figure(self) -> dict[str, object]:
        """The JSON form the report prints: ``{"env": {...}, "why": "..."}``."""
        return {"env": dict(self.env), "why": self.why}

    def describe(self) -> str:
        """``NAME=value ...: why``, for the note under the table."""
        pairs = " ".join(f"{name}={value}" for name, value in sorted(self.env.items()))
        return f"{pairs}: {self.why}" if self.why else pairs


#: The shipped defaults, unchanged.
DEFAULTS = Overrides()
