"""The error hierarchy: each class decides what happens to a stop that raised it."""

from __future__ import annotations


class RecstopError(Exception):
    """Base of every error recstop raises on purpose."""


class ConfigError(RecstopError):
    """The settings are unusable; the process must not start."""


class InvalidStopRequest(RecstopError, ValueError):  # noqa: N818 - reads as a noun, like ValueError
    """A stop request is malformed: rejected at the producer, dead-lettered at the worker."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownAccountError(InvalidStopRequest):
    """The stop names an auth_id this deployment holds no credentials for."""

    def __init__(self, auth_id: str | None) -> None:
        super().__init__("auth_id", f"no credentials configured for account {auth_id!r}")


class BrokerUnavailableError(RecstopError):
    """Redis could not be reached; the stop was not stored and the caller must retry."""
