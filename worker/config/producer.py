"""What a producer reads: the settings it uses, and only those.

A producer (``Producer``, ``AsyncProducer``, the ``recstop`` commands that enqueue, cancel, read
status and dead letters) needs Redis, the accounts it may name, and what its enqueue script is given
(the default deadline, the retention, the watchdog, the audit outbox's bound). It never looks at the
worker's variables (``RECSTOP_CONCURRENCY``, the API's timeouts, the rate limit, logging ...), so
a bad one of those cannot stop it. Each setting is defined once, in ``Settings``' groups; a field
of a group that a producer does not read keeps its default and is never used by a producer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Final

from recstop.worker.config.credentials import Accounts
from recstop.worker.config.redis import DEFAULT_BROKER_URL, RedisSettings
from recstop.worker.config.settings import AuditSettings, Retention, RetryPolicy, Settings

#: The variables a producer reads; the model defines each (``config.environment.ENV_SPECS``).
PRODUCER_VARIABLES: Final = frozenset(
    {
        "RECSTOP_BROKER_URL",
        "RECSTOP_REDIS_SENTINEL_MASTER",
        "RECSTOP_REDIS_SENTINEL_PASSWORD",
        "RECSTOP_REDIS_WAIT_REPLICAS",
        "RECSTOP_REDIS_WAIT_TIMEOUT_MS",
        "RECSTOP_REDIS_SOCKET_TIMEOUT_S",
        "RECSTOP_REDIS_MAX_CONNECTIONS",
        "RECSTOP_REDIS_POOL_TIMEOUT_S",
        "RECSTOP_REDIS_TLS_CA_FILE",
        "RECSTOP_REDIS_TLS_CERT_FILE",
        "RECSTOP_REDIS_TLS_KEY_FILE",
        "RECSTOP_REDIS_TLS_CERT_REQS",
        "VOBIZ_AUTH_ID",
        "RECSTOP_CREDENTIALS_FILE",
        "RECSTOP_DEADLINE_S",
        "RECSTOP_STATUS_RETENTION_S",
        "RECSTOP_DLQ_MAX_ENTRIES",
        "RECSTOP_RESULT_EXPIRES_S",
        "RECSTOP_WATCHDOG_S",
        "RECSTOP_AUDIT_STREAM_MAX",
    }
)
_logger = logging.getLogger("recstop.producers")
_said_default_url: list[bool] = []


def _shared(owner: type, name: str) -> Any:  # noqa: ANN401 - a dataclass field, typed by its annotation
    """The declaration of ``owner.name`` (default, variable, parser, help) for this model too."""
    found: Field[Any] = next(f for f in fields(owner) if f.name == name)
    return field(default=found.default, metadata=found.metadata)


@dataclass(frozen=True)
class ProducerSettings:
    """A producer's settings: ``ProducerSettings.from_env()`` at the entry point, or ``of(settings)``.

    The groups are the worker's (``Settings``), so each variable means the same for both.
    """

    accounts: Accounts = field(default_factory=Accounts)
    redis: RedisSettings = field(default_factory=RedisSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retention: Retention = field(default_factory=Retention)
    watchdog_s: float = _shared(Settings, "watchdog_s")
    audit: AuditSettings = field(default_factory=AuditSettings)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, say_default_url: bool = True
    ) -> ProducerSettings:
        """Read the producer's variables (:data:`PRODUCER_VARIABLES`) from ``environ`` (``os.environ``).

        Without ``RECSTOP_BROKER_URL`` it uses ``redis://localhost:6379/0`` and says so once per
        process, as a warning of the ``recstop.producers`` logger (``say_default_url=False``: the
        caller says it its own way, as the ``recstop`` command does).
        """
        from recstop.worker.config.environment import read_model  # noqa: PLC0415 - environment imports settings

        env = os.environ if environ is None else environ
        settings = read_model(cls, env, reads=PRODUCER_VARIABLES)
        if say_default_url and not env.get("RECSTOP_BROKER_URL") and not _said_default_url:
            _said_default_url.append(True)
            _logger.warning(
                "RECSTOP_BROKER_URL is not set: recstop enqueues into Redis at %s", DEFAULT_BROKER_URL
            )
        return settings

    @classmethod
    def of(cls, settings: Settings | ProducerSettings) -> ProducerSettings:
        """The producer's part of a process's settings (a worker's ``Settings`` included)."""
        if isinstance(settings, ProducerSettings):
            return settings
        return cls(
            accounts=settings.accounts,
            redis=settings.redis,
            retry=settings.retry,
            retention=settings.retention,
            watchdog_s=settings.watchdog_s,
            audit=settings.audit,
        )

    def secrets(self) -> frozenset[str]:
        """Every secret this producer holds (Redis passwords), for redaction."""
        return self.redis.secrets()
