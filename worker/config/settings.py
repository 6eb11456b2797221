"""The settings model: frozen dataclasses, each default written once, beside its environment variable.

``Settings`` holds one group per concern; ``config.environment`` reads the environment into it once,
at a process's entry point. Where Redis is: ``config.redis``; the Vobiz accounts: ``config.credentials``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import unquote

from recstop.worker.config import parsers
from recstop.worker.config.confirm import ConfirmSettings
from recstop.worker.config.credentials import Accounts
from recstop.worker.config.fields import setting
from recstop.worker.config.ratelimit import RateLimitSettings
from recstop.worker.config.redis import RedisSettings
from recstop.worker.config.secrets import mask_url, url_password

DEFAULT_API_BASE: Final = "https://api.vobiz.ai/api/v1"
Jitter = Literal["full", "equal", "none"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["auto", "json", "console"]
#: Seconds between a worker's heartbeats in ``recstop:workers`` (``recstop health``, metrics): a
#: fixed interval, which ``HealthThresholds.max_heartbeat_age_s`` must exceed.
WORKER_HEARTBEAT_S: Final = 2.0


@dataclass(frozen=True)
class ApiSettings:
    """How to reach the Vobiz API, and how long a key's lock outlasts a call."""

    base_url: str = setting(
        DEFAULT_API_BASE, env="VOBIZ_API_BASE", parse=parsers.base_url, help="Vobiz API base URL."
    )
    connect_timeout_s: float = setting(
        3.05, env="RECSTOP_CONNECT_TIMEOUT_S", parse=parsers.positive_float, help="HTTP connect timeout."
    )
    read_timeout_s: float = setting(
        10.0, env="RECSTOP_READ_TIMEOUT_S", parse=parsers.positive_float, help="HTTP read timeout."
    )
    lock_margin_s: float = setting(
        10.0,
        env="RECSTOP_LOCK_MARGIN_S",
        parse=parsers.positive_float,
        help="A key's lock lives this much longer than the longest API call (connect + read timeout).",
    )


@dataclass(frozen=True)
class RetryPolicy:
    """When a transient failure is tried again, and when the stop is given up."""

    max_attempts: int = setting(
        12,
        env="RECSTOP_MAX_ATTEMPTS",
        parse=parsers.positive_int,
        help="Attempts before a stop is dead-lettered.",
    )
    backoff_base_s: float = setting(
        1.0,
        env="RECSTOP_BACKOFF_BASE_S",
        parse=parsers.positive_float,
        help="First retry delay (doubles each time).",
    )
    backoff_cap_s: float = setting(
        300.0, env="RECSTOP_BACKOFF_CAP_S", parse=parsers.positive_float, help="Largest retry delay."
    )
    jitter: Jitter = setting(  # noqa: RUF009 - a field; ruff does not see the alias is a str
        "full",
        env="RECSTOP_BACKOFF_JITTER",
        parse=parsers.one_of(Jitter),
        help="Jitter: `full` = uniform(0, d), `equal` = uniform(d/2, d), `none` = d.",
    )
    retry_after_cap_s: float = setting(
        600.0,
        env="RECSTOP_RETRY_AFTER_CAP_S",
        parse=parsers.positive_float,
        help="Largest Retry-After honoured.",
    )
    deadline_s: float = setting(
        3600.0,
        env="RECSTOP_DEADLINE_S",
        parse=parsers.positive_float,
        help="Default give-up deadline after the stop is due (`not_after` overrides it).",
    )


@dataclass(frozen=True)
class Retention:
    """How long records are kept."""

    status_s: int = setting(
        7 * 86400,
        env="RECSTOP_STATUS_RETENTION_S",
        parse=parsers.positive_int,
        help="How long status records live.",
    )
    dlq_max_entries: int = setting(
        10_000, env="RECSTOP_DLQ_MAX_ENTRIES", parse=parsers.positive_int, help="Dead letters kept at most."
    )
    dlq_max_age_s: int = setting(
        180 * 86400,
        env="RECSTOP_DLQ_MAX_AGE_S",
        parse=parsers.positive_int,
        help="Dead letters older are dropped.",
    )
    result_s: int = setting(
        86_400,
        env="RECSTOP_RESULT_EXPIRES_S",
        parse=parsers.non_negative_int,
        help="How long a stop's Celery result (`celery-task-meta-<task_id>`, read by `AsyncResult`) "
        "lives in Redis; 0 = no results written.",
    )


@dataclass(frozen=True)
class HealthThresholds:
    """When ``recstop health`` calls a deployment unhealthy, and when a worker counts as dead."""

    max_dead_letters: int = setting(
        100,
        env="RECSTOP_HEALTH_MAX_DEAD_LETTERS",
        parse=parsers.positive_int,
        help="`recstop health` fails with more dead letters than this (`--max-dead-letters`).",
    )
    max_overdue_s: float = setting(
        60.0,
        env="RECSTOP_HEALTH_MAX_OVERDUE_S",
        parse=parsers.positive_float,
        help="`recstop health` fails when a schedule entry is due for longer than this (`--max-overdue-s`).",
    )
    max_heartbeat_age_s: float = setting(
        10.0,
        env="RECSTOP_HEALTH_MAX_HEARTBEAT_AGE_S",
        parse=parsers.positive_float,
        help=f"A worker whose heartbeat (every {WORKER_HEARTBEAT_S:g} s) is older counts as dead, in "
        "`recstop health` and the `recstop_workers` metric (`--max-heartbeat-age-s`).",
    )
    max_audit_age_s: float | None = setting(
        None,
        env="RECSTOP_HEALTH_MAX_AUDIT_AGE_S",
        parse=parsers.positive_float,
        help="`recstop health` fails when the oldest audit event no sink has committed is older than this "
        "(unset: the audit lag is reported, never failed on; set it on the audit sink's own probe).",
    )
    max_audit_dropped: int | None = setting(
        None,
        env="RECSTOP_HEALTH_MAX_AUDIT_DROPPED",
        parse=parsers.non_negative_int,
        help="`recstop health` fails when more audit events than this were dropped unread "
        "(`audit:dropped` of `recstop:metrics`; unset: reported, never failed on).",
    )


#: The audit database of ``make run`` and of any process without ``RECSTOP_AUDIT_DB``: a SQLite file
#: under the working directory's ``.run/`` (created on first use).
DEFAULT_AUDIT_DB: Final = "sqlite:///.run/audit.db"


@dataclass(frozen=True)
class AuditSettings:
    """The audit trail: where ``recstop audit sink`` writes it, how long it is kept, the stream's bound.

    A password in ``db_url`` never shows in a repr (see ``safe_url``).
    """

    db_url: str = setting(
        DEFAULT_AUDIT_DB,
        env="RECSTOP_AUDIT_DB",
        parse=parsers.database_url,
        help="SQL database of the audit trail (docs/audit.md): `sqlite:///PATH` (relative to the working "
        "directory; `sqlite:////abs/path` for an absolute one) or `postgresql://user:password@host:5432/db`.",
    )
    retention_days: int = setting(
        400,
        env="RECSTOP_AUDIT_RETENTION_DAYS",
        parse=parsers.positive_int,
        help="Audit events recorded longer ago are deleted by `recstop audit retention` (oldest first, a "
        "whole chain prefix).",
    )
    stream_max: int = setting(
        1_000_000,
        env="RECSTOP_AUDIT_STREAM_MAX",
        parse=parsers.non_negative_int,
        help="Longest the audit stream `recstop:audit` grows while no sink reads it; older events are then "
        "trimmed and counted as dropped (`recstop_audit_dropped_total`, `recstop health`). 0 turns the "
        "audit outbox off (no events are written).",
    )

    @property
    def safe_url(self) -> str:
        """The database URL with its password masked, for messages and logs."""
        return mask_url(self.db_url)

    def secrets(self) -> frozenset[str]:
        """The database password (as written and decoded), for log redaction."""
        password = url_password(self.db_url)
        return frozenset({password, unquote(password)} - {""}) if password else frozenset()

    def __repr__(self) -> str:
        return (
            f"AuditSettings(db_url={self.safe_url!r}, retention_days={self.retention_days!r}, "
            f"stream_max={self.stream_max!r})"
        )


@dataclass(frozen=True)
class Settings:
    """Everything a worker or producer process needs, read once at its entry point.

    The fields' order is the order of docs/configuration.md's table.
    """

    accounts: Accounts = field(default_factory=Accounts)
    redis: RedisSettings = field(default_factory=RedisSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retention: Retention = field(default_factory=Retention)
    concurrency: int = setting(
        64,
        env="RECSTOP_CONCURRENCY",
        parse=parsers.positive_int,
        help="Worker threads per process (each holds one API call). Run two processes per core: "
        "`make bench` shows why.",
    )
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    confirm: ConfirmSettings = field(default_factory=ConfirmSettings)
    task_events: bool = setting(
        True,  # noqa: FBT003 - a field's default
        env="RECSTOP_TASK_EVENTS",
        parse=parsers.boolean,
        help="The worker sends Celery's task events (received, started, succeeded ...: what Flower and "
        "`celery events` show); off saves their CPU (`make bench` scenario 8), `celery control "
        "enable_events` turns them on at run time.",
    )
    scheduler_poll_s: float = setting(
        0.2, env="RECSTOP_SCHEDULER_POLL_S", parse=parsers.positive_float, help="Scheduler poll interval."
    )
    watchdog_s: float = setting(
        300.0,
        env="RECSTOP_WATCHDOG_S",
        parse=parsers.positive_float,
        help="A published stop that nothing settled within this is published again (each firing doubles "
        "the wait): the net under a message acknowledged without its outcome recorded.",
    )
    health: HealthThresholds = field(default_factory=HealthThresholds)
    audit: AuditSettings = field(default_factory=AuditSettings)
    log_level: str = setting(
        "INFO", env="RECSTOP_LOG_LEVEL", parse=parsers.one_of(LogLevel), help="Log level."
    )
    log_format: LogFormat = setting(  # noqa: RUF009 - a field; ruff does not see the alias is a str
        "auto",
        env="RECSTOP_LOG_FORMAT",
        parse=parsers.one_of(LogFormat),
        help="`auto`: console on a TTY, JSON lines otherwise.",
    )

    @property
    def lock_ttl_s(self) -> float:
        """How long a key's lock lives: the longest possible API call, plus the margin."""
        return self.api.connect_timeout_s + self.api.read_timeout_s + self.api.lock_margin_s

    def secrets(self) -> frozenset[str]:
        """Every secret this process holds (API tokens, Redis and database passwords), for log redaction."""
        return self.accounts.secrets() | self.redis.secrets() | self.audit.secrets()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from an environment mapping (``os.environ`` when omitted): ``worker.environment``."""
        from recstop.worker.config.environment import settings_from_env  # noqa: PLC0415 - environment imports this module

        return settings_from_env(environ)
