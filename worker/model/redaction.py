"""Secret redaction: tokens are replaced before text reaches a log line or the store."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"


class Redactor:
    """Replaces every known secret value in strings, recursively in containers."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def text(self, value: str) -> str:
        """Return ``value`` with each secret masked."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def value(self, value: object) -> object:
        """Mask secrets inside strings, lists, tuples and dicts."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
