"""The settings model: frozen dataclasses, each default written once, beside its environment variable.

A field made by ``setting`` carries its variable's name, parser and help text as metadata;
``worker.environment`` reads the environment into this model and lists the variables (docs/configuration.md).
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from recstop.worker.config import parsers
from recstop.worker.config.secrets import MASK_TEXT, Secret, mask_url, url_password
from recstop.worker.model.errors import ConfigError

DEFAULT_API_BASE: Final = "https://api.vobiz.ai/api/v1"
DEFAULT_BROKER_URL: Final = "redis://localhost:6379/0"
Jitter = Literal["full", "equal", "none"]
CertReqs = Literal["required", "optional", "none"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["auto", "json", "console"]
_CERT_REQS: Final[Mapping[str, ssl.VerifyMode]] = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
#: The field metadata key under which ``setting`` stores the field's ``EnvVar``.
ENV: Final = "recstop.env"
T = TypeVar("T")


@dataclass(frozen=True)
class EnvVar:
    """The environment variable a field is read from, the parser of its text, and its help text."""

    name: str
    parse: Callable[[str], Any]
    help: str


def setting(default: T, *, env: str, parse: Callable[[str], T], help: str) -> T:  # noqa: A002 - the column of docs/configuration.md
    """A dataclass field: its default, and the variable ``env`` that overrides it (read by ``parse``)."""
    return field(default=default, metadata={ENV: EnvVar(env, parse, help)})


class InvalidSettingError(ValueError):
    """A field's value is out of its range; the environment reader names the field's variable."""

    def __init__(self, owner: type, field_name: str, reason: str) -> None:
        super().__init__(f"{owner.__name__}: {field_name} {reason}")
        self.field_name = field_name
        self.reason = reason


@dataclass(frozen=True)
class RedisSettings:
    """Where the broker and the state store live, how to reach them (TLS), and how long to wait.

    A password or an ACL user comes in the URL (``redis://user:password@host:6379/0``); it never
    shows in a repr (see ``safe_url``). The ``tls_*`` options apply to ``rediss://`` URLs only.
    High availability: ``sentinel://h1:26379;sentinel://h2:26379;...`` (kombu's format) with
    ``sentinel_master``; the Redis password then goes in the first URL, the sentinels' own in
    ``sentinel_password``.
    """

    url: str = setting(
        DEFAULT_BROKER_URL,
        env="RECSTOP_BROKER_URL",
        parse=parsers.text,
        help="Redis URL: broker and state store. A password or ACL user goes in the URL "
        "(`redis://user:password@host:6379/0`); `rediss://` for TLS; "
        "`sentinel://h1:26379;sentinel://h2:26379;sentinel://h3:26379` for Redis Sentinel.",
    )
    sentinel_master: str | None = setting(
        None,
        env="RECSTOP_REDIS_SENTINEL_MASTER",
        parse=parsers.text,
        help="Master name the sentinels monitor (required with `sentinel://`).",
    )
    sentinel_password: str | None = setting(
        None,
        env="RECSTOP_REDIS_SENTINEL_PASSWORD",
        parse=parsers.text,
        help="Password of the sentinels themselves (`requirepass` in sentinel.conf); the Redis password "
        "goes in the first `sentinel://` URL.",
    )
    wait_replicas: int = setting(
        0,
        env="RECSTOP_REDIS_WAIT_REPLICAS",
        parse=parsers.non_negative_int,
        help="Replicas that must hold a published stop message (`WAIT`) before the enqueue counts as "
        "accepted; 0: none (asynchronous replication: a failover can lose the last acknowledged writes).",
    )
    wait_timeout_ms: int = setting(
        500,
        env="RECSTOP_REDIS_WAIT_TIMEOUT_MS",
        parse=parsers.positive_int,
        help="Longest `WAIT` per publish; fewer replicas by then refuses the enqueue "
        "(`BrokerUnavailableError`). Below the socket timeout.",
    )
    socket_timeout_s: float = setting(
        5.0, env="RECSTOP_REDIS_SOCKET_TIMEOUT_S", parse=parsers.positive_float, help="Redis socket timeout."
    )
    tls_ca_file: str | None = setting(
        None,
        env="RECSTOP_REDIS_TLS_CA_FILE",
        parse=parsers.text,
        help="PEM file of the CA(s) that sign the Redis server certificate "
        "(`rediss://`; default: system CAs).",
    )
    tls_cert_file: str | None = setting(
        None,
        env="RECSTOP_REDIS_TLS_CERT_FILE",
        parse=parsers.text,
        help="PEM client certificate, for a Redis server with `tls-auth-clients yes` (`rediss://`).",
    )
    tls_key_file: str | None = setting(
        None,
        env="RECSTOP_REDIS_TLS_KEY_FILE",
        parse=parsers.text,
        help="PEM private key of the client certificate (`rediss://`).",
    )
    tls_cert_reqs: CertReqs = setting(  # noqa: RUF009 - a field; ruff does not see the alias is a str
        "required",
        env="RECSTOP_REDIS_TLS_CERT_REQS",
        parse=parsers.one_of(CertReqs),
        help="Verify the Redis server certificate and host name: `required`, `optional`, `none` (insecure).",
    )
    consumer_timeout_s: float = setting(
        5.0,
        env="RECSTOP_CONSUMER_TIMEOUT_S",
        parse=parsers.positive_float,
        help="A worker connection silent for this long (killed, OOM, host or network lost) is gone: a live "
        "worker moves the messages it held back to the head of their lanes. A slow worker keeps beating.",
    )
    consumer_heartbeat_s: float = setting(
        1.0,
        env="RECSTOP_CONSUMER_HEARTBEAT_S",
        parse=parsers.positive_float,
        help="How often each worker connection heartbeats (and reaps silent ones). Below the timeout.",
    )

    @classmethod
    def from_dsn(cls, url: str, **overrides: Any) -> RedisSettings:  # noqa: ANN401 - dataclass kwargs
        """Build checked settings for a Redis URL (``redis://``, ``rediss://``, ``unix://`` or ``sentinel://``)."""
        if not url.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
            raise ConfigError(
                "RECSTOP_BROKER_URL must be a redis://, rediss://, unix:// or sentinel:// URL, "
                f"got {mask_url(url)!r}"
            )
        settings = cls(url=url, **overrides)
        settings._check_tls()
        settings._check_sentinel()
        settings._check_wait()
        settings._check_fetch()
        return settings

    def _check_fetch(self) -> None:
        if self.consumer_heartbeat_s >= self.consumer_timeout_s:
            raise ConfigError(
                f"RECSTOP_CONSUMER_HEARTBEAT_S ({self.consumer_heartbeat_s:g} s) must be shorter than "
                f"RECSTOP_CONSUMER_TIMEOUT_S ({self.consumer_timeout_s:g} s)"
            )

    def _check_wait(self) -> None:
        if self.wait_replicas < 0:
            raise ConfigError(f"RECSTOP_REDIS_WAIT_REPLICAS must be >= 0, got {self.wait_replicas}")
        if self.wait_replicas and self.wait_timeout_ms / 1000 >= self.socket_timeout_s:
            raise ConfigError(
                f"RECSTOP_REDIS_WAIT_TIMEOUT_MS ({self.wait_timeout_ms}) must be shorter than "
                f"RECSTOP_REDIS_SOCKET_TIMEOUT_S ({self.socket_timeout_s:g} s)"
            )

    def _check_sentinel(self) -> None:
        if not self.sentinel:
            for name, value in (
                ("RECSTOP_REDIS_SENTINEL_MASTER", self.sentinel_master),
                ("RECSTOP_REDIS_SENTINEL_PASSWORD", self.sentinel_password),
            ):
                if value:
                    raise ConfigError(f"{name} set, but RECSTOP_BROKER_URL is not a sentinel:// URL")
            return
        if not self.sentinel_master:
            raise ConfigError(
                "RECSTOP_BROKER_URL is a sentinel:// URL but RECSTOP_REDIS_SENTINEL_MASTER (the master name) "
                "is not set"
            )
        self.sentinels()  # raises on a bad part

    @property
    def sentinel(self) -> bool:
        """Whether the URL names Redis Sentinels (``sentinel://``) rather than one server."""
        return self.url.startswith("sentinel://")

    def sentinels(self) -> list[tuple[str, int]]:
        """The (host, port) of every sentinel in a ``sentinel://a:26379;sentinel://b:26379`` URL."""
        found: list[tuple[str, int]] = []
        for part in self.url.split(";"):
            try:
                parts = urlsplit(part.strip())
                port = parts.port or 26379
            except ValueError:
                raise ConfigError(f"RECSTOP_BROKER_URL: bad sentinel address {mask_url(part)!r}") from None
            if parts.scheme != "sentinel" or not parts.hostname:
                raise ConfigError(
                    "RECSTOP_BROKER_URL: every ';'-separated part must be sentinel://host:port, "
                    f"got {mask_url(part)!r}"
                )
            found.append((parts.hostname, port))
        return found

    def sentinel_db(self) -> int:
        """The database number in the first sentinel URL's path (``sentinel://h:26379/0``), default 0."""
        path = urlsplit(self.url.split(";", 1)[0]).path.strip("/")
        try:
            return int(path or 0)
        except ValueError:
            raise ConfigError(f"RECSTOP_BROKER_URL: bad database number {path!r}") from None

    def _check_tls(self) -> None:
        files = {
            "RECSTOP_REDIS_TLS_CA_FILE": self.tls_ca_file,
            "RECSTOP_REDIS_TLS_CERT_FILE": self.tls_cert_file,
            "RECSTOP_REDIS_TLS_KEY_FILE": self.tls_key_file,
        }
        given = [name for name, value in files.items() if value]
        if self.tls_cert_reqs not in _CERT_REQS:
            choices = ", ".join(_CERT_REQS)
            raise ConfigError(
                f"RECSTOP_REDIS_TLS_CERT_REQS must be one of {choices}, got {self.tls_cert_reqs!r}"
            )
        if self.tls_cert_reqs != "required":
            given.append("RECSTOP_REDIS_TLS_CERT_REQS")
        if given and not self.tls:
            names = ", ".join(given)
            raise ConfigError(
                f"{names} set, but RECSTOP_BROKER_URL is not a rediss:// URL: {self.safe_url!r}"
            )
        for name, value in files.items():
            if value and not Path(value).is_file():
                raise ConfigError(f"{name}: no such file {value}")
        if self.tls_key_file and not self.tls_cert_file:
            raise ConfigError("RECSTOP_REDIS_TLS_KEY_FILE is set but RECSTOP_REDIS_TLS_CERT_FILE is not")
        if self.tls_ca_file and self.tls_cert_reqs == "none":
            raise ConfigError(
                "RECSTOP_REDIS_TLS_CA_FILE is set but RECSTOP_REDIS_TLS_CERT_REQS=none turns verification off"
            )

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS (``rediss://``)."""
        return self.url.startswith("rediss://")

    def tls_options(self) -> dict[str, Any] | None:
        """redis-py's ``ssl_*`` connection options for a ``rediss://`` URL (also kombu's ``broker_use_ssl``).

        Always explicit: without them kombu's Redis transport would not verify the server (CERT_NONE).
        """
        if not self.tls:
            return None
        options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[self.tls_cert_reqs]}
        if self.tls_ca_file:
            options["ssl_ca_certs"] = self.tls_ca_file
        if self.tls_cert_file:
            options["ssl_certfile"] = self.tls_cert_file
        if self.tls_key_file:
            options["ssl_keyfile"] = self.tls_key_file
        return options

    @property
    def safe_url(self) -> str:
        """The URL with its password(s) masked, for messages."""
        return ";".join(mask_url(part) for part in self.url.split(";"))

    def secrets(self) -> frozenset[str]:
        """The passwords in the URL (as written and decoded) and the sentinels', for log redaction."""
        found: set[str] = set()
        for part in self.url.split(";"):
            password = url_password(part)
            if password:
                found |= {password, unquote(password)}
        if self.sentinel_password:
            found.add(self.sentinel_password)
        return frozenset(found - {""})

    def __repr__(self) -> str:
        return (
            f"RedisSettings(url={self.safe_url!r}, socket_timeout_s={self.socket_timeout_s!r}, "
            f"consumer_timeout_s={self.consumer_timeout_s!r}, "
            f"consumer_heartbeat_s={self.consumer_heartbeat_s!r}, "
            f"tls_ca_file={self.tls_ca_file!r}, "
            f"tls_cert_file={self.tls_cert_file!r}, tls_key_file={self.tls_key_file!r}, "
            f"tls_cert_reqs={self.tls_cert_reqs!r}, sentinel_master={self.sentinel_master!r}, "
            f"sentinel_password={MASK_TEXT if self.sentinel_password else None!r}, "
            f"wait_replicas={self.wait_replicas!r}, wait_timeout_ms={self.wait_timeout_ms!r})"
        )


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


def env_name(owner: type, field_name: str) -> str:
    """The environment variable of a setting (``env_name(RetryPolicy, "deadline_s")``), for messages."""
    (spec,) = [f.metadata[ENV] for f in fields(owner) if f.name == field_name]
    name: str = spec.name
    return name


def _require(ok: bool, owner: type, field_name: str, reason: str) -> None:  # noqa: FBT001 - predicate first
    if not ok:
        raise InvalidSettingError(owner, field_name, reason)


@dataclass(frozen=True)
class RateLimitSettings:
    """The per-account rate shared through Redis (``rate_rps`` 0 = no limit) and how it adapts to 429s."""

    rate_rps: float = setting(
        0.0,
        env="RECSTOP_RATE_LIMIT_RPS",
        parse=parsers.finite_float,
        help="API requests per second per account, shared by every worker process and host through "
        "Redis; slows down on 429s and recovers (0 = no limit).",
    )
    max_reserve_s: float = setting(
        2.0,
        env="RECSTOP_RATE_LIMIT_MAX_RESERVE_S",
        parse=parsers.finite_float,
        help="A worker reserves the account's next slot only if it comes within this many seconds; "
        "a later one is asked for again.",
    )
    decrease_factor: float = setting(
        0.5,
        env="RECSTOP_RATE_LIMIT_DECREASE_FACTOR",
        parse=parsers.finite_float,
        help="A 429 multiplies the account's rate by this, in (0, 1).",
    )
    floor_fraction: float = setting(
        0.1,
        env="RECSTOP_RATE_LIMIT_FLOOR_FRACTION",
        parse=parsers.finite_float,
        help="429s never lower the rate below this fraction of `RECSTOP_RATE_LIMIT_RPS`, in (0, 1].",
    )
    recover_fraction_per_s: float = setting(
        0.1,
        env="RECSTOP_RATE_LIMIT_RECOVER_FRACTION_PER_S",
        parse=parsers.finite_float,
        help="After a 429 the rate grows back by this fraction of `RECSTOP_RATE_LIMIT_RPS` per second.",
    )
    cooldown_s: float = setting(
        1.0,
        env="RECSTOP_RATE_LIMIT_COOLDOWN_S",
        parse=parsers.finite_float,
        help="429s within this many seconds of the last decrease lower the rate only once.",
    )
    retry_after_cap_s: float = setting(
        30.0,
        env="RECSTOP_RATE_LIMIT_RETRY_AFTER_CAP_S",
        parse=parsers.finite_float,
        help="Longest Retry-After for which the limiter holds back every request of the account.",
    )
    max_wait_s: float = setting(
        30.0,
        env="RECSTOP_RATE_LIMIT_MAX_WAIT_S",
        parse=parsers.finite_float,
        help="Longest wait for a slot; a stop that would wait longer goes back to the queue.",
    )

    def __post_init__(self) -> None:
        cls = type(self)
        for name, value in vars(self).items():
            _require(math.isfinite(value), cls, name, f"must be a finite number, got {value!r}")
        _require(self.rate_rps >= 0, cls, "rate_rps", f"must be >= 0 (0 = no limit), got {self.rate_rps}")
        _require(self.max_reserve_s >= 0, cls, "max_reserve_s", f"must be >= 0, got {self.max_reserve_s}")
        _require(
            0 < self.decrease_factor < 1,
            cls,
            "decrease_factor",
            f"must be in (0, 1), got {self.decrease_factor}",
        )
        _require(
            0 < self.floor_fraction <= 1,
            cls,
            "floor_fraction",
            f"must be in (0, 1], got {self.floor_fraction}",
        )
        _require(
            self.recover_fraction_per_s > 0,
            cls,
            "recover_fraction_per_s",
            f"must be > 0, got {self.recover_fraction_per_s}",
        )
        _require(self.cooldown_s >= 0, cls, "cooldown_s", f"must be >= 0, got {self.cooldown_s}")
        _require(
            self.retry_after_cap_s >= 0,
            cls,
            "retry_after_cap_s",
            f"must be >= 0, got {self.retry_after_cap_s}",
        )
        _require(self.max_wait_s >= 0, cls, "max_wait_s", f"must be >= 0, got {self.max_wait_s}")


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
        help="A worker whose heartbeat (every 2 s) is older counts as dead, in `recstop health` and the "
        "`recstop_workers` metric (`--max-heartbeat-age-s`).",
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
        help="Audit events recorded longer ago are deleted by the sink (oldest first, whole chain prefix).",
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
class Accounts:
    """Vobiz credentials: the default account plus any from the credentials file."""

    default_auth_id: str | None = None
    tokens: Mapping[str, Secret] = field(default_factory=dict)

    def token_for(self, auth_id: str) -> Secret | None:
        """Return the token for an account, or None when the account is unknown."""
        return self.tokens.get(auth_id)

    @property
    def auth_ids(self) -> frozenset[str]:
        """Every account this process knows: those with a token, and the default account.

        A producer needs no tokens: ``VOBIZ_AUTH_ID`` alone names the default account.
        """
        known = set(self.tokens)
        if self.default_auth_id:
            known.add(self.default_auth_id)
        return frozenset(known)

    def secrets(self) -> frozenset[str]:
        """Every token value, for the log redaction processor."""
        return frozenset(token.reveal() for token in self.tokens.values())


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
