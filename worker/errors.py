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


class ApiError(RecstopError):
    """The Vobiz API did not stop the recording."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.retry_after_s = retry_after_s


class RetryableApiError(ApiError):
    """Transient: rate limited, server side, timeout or connection error. Tried again later."""


class PermanentApiError(ApiError):
    """Trying again cannot help (bad request, credentials, forbidden): dead-lettered at once."""

    @property
    def is_credentials_problem(self) -> bool:
        """401 and 403 mean the account or token is wrong, not the stop."""
        return self.http_status in {401, 403}
