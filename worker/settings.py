"""Settings: read once from the environment at an entry point, then passed around frozen."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from worker.errors import ConfigError
from worker.validation import validate_auth_id

DEFAULT_API_BASE: Final = "https://api.vobiz.ai/api/v1"
DEFAULT_BROKER_URL: Final = "redis://localhost:6379/0"
MASK_TEXT: Final = "***"
Jitter = Literal["full", "equal", "none"]
CertReqs = Literal["required", "optional", "none"]
_CERT_REQS: Final[Mapping[str, ssl.VerifyMode]] = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


class Secret:
    """A string that never shows itself in a repr, a log line or an exception text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is sent to the API."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class RedisSettings:
    """Where the broker and the state store live, how to reach them (TLS), and how long to wait.

    A password or an ACL user comes in the URL (``redis://user:password@host:6379/0``); it never
    shows in a repr (see ``safe_url``). The ``tls_*`` options apply to ``rediss://`` URLs only.
    High availability: ``sentinel://h1:26379;sentinel://h2:26379;...`` (kombu's format) with
    ``sentinel_master``; the Redis password then goes in the first URL, the sentinels' own in
    ``sentinel_password``.
    """

    url: str = DEFAULT_BROKER_URL
    socket_timeout_s: float = 5.0
    visibility_timeout_s: int = 120
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_cert_reqs: CertReqs = "required"
    sentinel_master: str | None = None
    sentinel_password: str | None = None
    #: A published stop message waits until this many replicas hold it (``WAIT``); 0: no wait.
    wait_replicas: int = 0
    wait_timeout_ms: int = 500

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
        return settings

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
            password = _url_password(part)
            if password:
                found |= {password, unquote(password)}
        if self.sentinel_password:
            found.add(self.sentinel_password)
        return frozenset(found - {""})

    def __repr__(self) -> str:
        return (
            f"RedisSettings(url={self.safe_url!r}, socket_timeout_s={self.socket_timeout_s!r}, "
            f"visibility_timeout_s={self.visibility_timeout_s!r}, tls_ca_file={self.tls_ca_file!r}, "
            f"tls_cert_file={self.tls_cert_file!r}, tls_key_file={self.tls_key_file!r}, "
            f"tls_cert_reqs={self.tls_cert_reqs!r}, sentinel_master={self.sentinel_master!r}, "
            f"sentinel_password={MASK_TEXT if self.sentinel_password else None!r}, "
            f"wait_replicas={self.wait_replicas!r}, wait_timeout_ms={self.wait_timeout_ms!r})"
        )


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:  # an unparsable port: no password can be told apart
        return None


def mask_url(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``; user, host and path stay."""
    if not _url_password(url):
        return url
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK_TEXT}@{hostport}"))


@dataclass(frozen=True)
class ApiSettings:
    """How to reach the Vobiz API."""

    base_url: str = DEFAULT_API_BASE
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """When a transient failure is tried again, and when the stop is given up."""

    max_attempts: int = 12
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    jitter: Jitter = "full"
    retry_after_cap_s: float = 600.0
    deadline_s: float = 3600.0


@dataclass(frozen=True)
class Retention:
    """How long records are kept."""

    status_s: int = 7 * 86400
    dlq_max_entries: int = 10_000
    dlq_max_age_s: int = 180 * 86400


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
    """Everything a worker or producer process needs, read once at its entry point."""

    redis: RedisSettings = field(default_factory=RedisSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retention: Retention = field(default_factory=Retention)
    accounts: Accounts = field(default_factory=Accounts)
    concurrency: int = 32
    #: Requests per second per account, shared by every worker through Redis (0 = no limit).
    rate_limit_rps: float = 0.0
    scheduler_poll_s: float = 0.2
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @property
    def lock_ttl_s(self) -> float:
        """How long a key's lock lives: the longest possible API call, plus a margin."""
        return self.api.connect_timeout_s + self.api.read_timeout_s + 10.0

    @property
    def watchdog_s(self) -> float:
        """When a published stop that nothing settled is published again (first firing).

        Later than both ordinary ways back for a message a dead worker held (the visibility
        timeout, then the key's lock expiring), so it only acts on a message that got lost.
        """
        return 2.0 * self.redis.visibility_timeout_s + self.lock_ttl_s

    def secrets(self) -> frozenset[str]:
        """Every secret this process holds (API tokens, the Redis password), for log redaction."""
        return self.accounts.secrets() | self.redis.secrets()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse settings from an environment mapping (``os.environ`` when omitted)."""
        env = os.environ if environ is None else environ
        values = {spec.name: spec.read(env) for spec in ENV_SPECS}
        return cls(
            redis=RedisSettings.from_dsn(
                values["RECSTOP_BROKER_URL"],
                socket_timeout_s=values["RECSTOP_REDIS_SOCKET_TIMEOUT_S"],
                visibility_timeout_s=values["RECSTOP_VISIBILITY_TIMEOUT_S"],
                tls_ca_file=values["RECSTOP_REDIS_TLS_CA_FILE"],
                tls_cert_file=values["RECSTOP_REDIS_TLS_CERT_FILE"],
                tls_key_file=values["RECSTOP_REDIS_TLS_KEY_FILE"],
                tls_cert_reqs=values["RECSTOP_REDIS_TLS_CERT_REQS"],
                sentinel_master=values["RECSTOP_REDIS_SENTINEL_MASTER"],
                sentinel_password=values["RECSTOP_REDIS_SENTINEL_PASSWORD"],
                wait_replicas=values["RECSTOP_REDIS_WAIT_REPLICAS"],
                wait_timeout_ms=values["RECSTOP_REDIS_WAIT_TIMEOUT_MS"],
            ),
            api=ApiSettings(
                base_url=values["VOBIZ_API_BASE"].rstrip("/"),
                connect_timeout_s=values["RECSTOP_CONNECT_TIMEOUT_S"],
                read_timeout_s=values["RECSTOP_READ_TIMEOUT_S"],
            ),
            retry=RetryPolicy(
                max_attempts=values["RECSTOP_MAX_ATTEMPTS"],
                backoff_base_s=values["RECSTOP_BACKOFF_BASE_S"],
                backoff_cap_s=values["RECSTOP_BACKOFF_CAP_S"],
                jitter=values["RECSTOP_BACKOFF_JITTER"],
                retry_after_cap_s=values["RECSTOP_RETRY_AFTER_CAP_S"],
                deadline_s=values["RECSTOP_DEADLINE_S"],
            ),
            retention=Retention(
                status_s=values["RECSTOP_STATUS_RETENTION_S"],
                dlq_max_entries=values["RECSTOP_DLQ_MAX_ENTRIES"],
                dlq_max_age_s=values["RECSTOP_DLQ_MAX_AGE_S"],
            ),
            accounts=load_accounts(
                values["VOBIZ_AUTH_ID"], values["VOBIZ_AUTH_TOKEN"], values["RECSTOP_CREDENTIALS_FILE"]
            ),
            concurrency=values["RECSTOP_CONCURRENCY"],
            rate_limit_rps=values["RECSTOP_RATE_LIMIT_RPS"],
            scheduler_poll_s=values["RECSTOP_SCHEDULER_POLL_S"],
            log_level=values["RECSTOP_LOG_LEVEL"].upper(),
            log_format=values["RECSTOP_LOG_FORMAT"],
        )


def load_accounts(auth_id: str | None, token: str | None, credentials_file: str | None) -> Accounts:
    """Combine the default account with the credentials file (a JSON object auth_id → token)."""
    tokens: dict[str, Secret] = {}
    if credentials_file:
        path = Path(credentials_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read RECSTOP_CREDENTIALS_FILE {path}: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
        ):
            raise ConfigError(f"{path} must be a JSON object mapping auth_id to a non-empty token")
        for key, value in data.items():
            tokens[_checked_auth_id(key)] = Secret(value)
    if token and not auth_id:
        raise ConfigError("VOBIZ_AUTH_TOKEN is set but VOBIZ_AUTH_ID is not")
    if auth_id:
        auth_id = _checked_auth_id(auth_id)
        if token:
            tokens[auth_id] = Secret(token)
    return Accounts(default_auth_id=auth_id or None, tokens=tokens)


def _checked_auth_id(auth_id: str) -> str:
    try:
        return validate_auth_id(auth_id)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class EnvSpec:
    """One environment variable: its name, parser, default and meaning (the README table)."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str

    def read(self, env: Mapping[str, str]) -> Any:  # noqa: ANN401 - each spec has its own type
        """Return the parsed value, or the default when unset or empty."""
        raw = env.get(self.name, "")
        if raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:  # noqa: ANN401 - int or float
        value = kind(raw)
        if value <= 0:
            raise ValueError(f"must be > 0, got {raw!r}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return raw.lower()

    return parse


def _str(raw: str) -> str:
    return raw


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"must be a finite number >= 0, got {raw!r}")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"must be >= 0, got {raw!r}")
    return value


ENV_SPECS: Final[tuple[EnvSpec, ...]] = (
    EnvSpec("VOBIZ_AUTH_ID", _str, None, "Default Vobiz account (`MA_...` or `SA_...`)."),
    EnvSpec("VOBIZ_AUTH_TOKEN", _str, None, "Token of the default account (worker only)."),
    EnvSpec("RECSTOP_CREDENTIALS_FILE", _str, None, "JSON file `{auth_id: token}` for more accounts."),
    EnvSpec("VOBIZ_API_BASE", _str, DEFAULT_API_BASE, "Vobiz API base URL."),
    EnvSpec(
        "RECSTOP_BROKER_URL",
        _str,
        DEFAULT_BROKER_URL,
        "Redis URL: broker and state store. A password or ACL user goes in the URL "
        "(`redis://user:password@host:6379/0`); `rediss://` for TLS; "
        "`sentinel://h1:26379;sentinel://h2:26379;sentinel://h3:26379` for Redis Sentinel.",
    ),
    EnvSpec(
        "RECSTOP_REDIS_SENTINEL_MASTER",
        _str,
        None,
        "Master name the sentinels monitor (required with `sentinel://`).",
    ),
    EnvSpec(
        "RECSTOP_REDIS_SENTINEL_PASSWORD",
        _str,
        None,
        "Password of the sentinels themselves (`requirepass` in sentinel.conf); the Redis password "
        "goes in the first `sentinel://` URL.",
    ),
    EnvSpec(
        "RECSTOP_REDIS_WAIT_REPLICAS",
        _non_negative_int,
        0,
        "Replicas that must hold a published stop message (`WAIT`) before the enqueue counts as accepted; "
        "0: none (asynchronous replication: a failover can lose the last acknowledged writes).",
    ),
    EnvSpec(
        "RECSTOP_REDIS_WAIT_TIMEOUT_MS",
        _positive(int),
        500,
        "Longest `WAIT` per publish; fewer replicas by then refuses the enqueue "
        "(`BrokerUnavailableError`). Below the socket timeout.",
    ),
    EnvSpec("RECSTOP_REDIS_SOCKET_TIMEOUT_S", _positive(float), 5.0, "Redis socket timeout."),
    EnvSpec(
        "RECSTOP_REDIS_TLS_CA_FILE",
        _str,
        None,
        "PEM file of the CA(s) that sign the Redis server certificate (`rediss://`; default: system CAs).",
    ),
    EnvSpec(
        "RECSTOP_REDIS_TLS_CERT_FILE",
        _str,
        None,
        "PEM client certificate, for a Redis server with `tls-auth-clients yes` (`rediss://`).",
    ),
    EnvSpec(
        "RECSTOP_REDIS_TLS_KEY_FILE",
        _str,
        None,
        "PEM private key of the client certificate (`rediss://`).",
    ),
    EnvSpec(
        "RECSTOP_REDIS_TLS_CERT_REQS",
        _choice("required", "optional", "none"),
        "required",
        "Verify the Redis server certificate and host name: `required`, `optional`, `none` (insecure).",
    ),
    EnvSpec(
        "RECSTOP_VISIBILITY_TIMEOUT_S",
        _positive(int),
        120,
        "Seconds before a message held by a dead worker is delivered again.",
    ),
    EnvSpec("RECSTOP_CONNECT_TIMEOUT_S", _positive(float), 3.05, "HTTP connect timeout."),
    EnvSpec("RECSTOP_READ_TIMEOUT_S", _positive(float), 10.0, "HTTP read timeout."),
    EnvSpec("RECSTOP_MAX_ATTEMPTS", _positive(int), 12, "Attempts before a stop is dead-lettered."),
    EnvSpec("RECSTOP_BACKOFF_BASE_S", _positive(float), 1.0, "First retry delay (doubles each time)."),
    EnvSpec("RECSTOP_BACKOFF_CAP_S", _positive(float), 300.0, "Largest retry delay."),
    EnvSpec(
        "RECSTOP_BACKOFF_JITTER",
        _choice("full", "equal", "none"),
        "full",
        "Jitter: `full` = uniform(0, d), `equal` = uniform(d/2, d), `none` = d.",
    ),
    EnvSpec("RECSTOP_RETRY_AFTER_CAP_S", _positive(float), 600.0, "Largest Retry-After honoured."),
    EnvSpec(
        "RECSTOP_DEADLINE_S",
        _positive(float),
        3600.0,
        "Default give-up deadline after the stop is due (`not_after` overrides it).",
    ),
    EnvSpec("RECSTOP_STATUS_RETENTION_S", _positive(int), 7 * 86400, "How long status records live."),
    EnvSpec("RECSTOP_DLQ_MAX_ENTRIES", _positive(int), 10_000, "Dead letters kept at most."),
    EnvSpec("RECSTOP_DLQ_MAX_AGE_S", _positive(int), 180 * 86400, "Dead letters older are dropped."),
    EnvSpec(
        "RECSTOP_CONCURRENCY",
        _positive(int),
        32,
        "Worker threads per process (each holds one API call). Run two processes per core: `make bench` "
        "shows why.",
    ),
    EnvSpec(
        "RECSTOP_RATE_LIMIT_RPS",
        _non_negative_float,
        0.0,
        "API requests per second per account, shared by every worker process and host through "
        "Redis; slows down on 429s and recovers (0 = no limit).",
    ),
    EnvSpec("RECSTOP_SCHEDULER_POLL_S", _positive(float), 0.2, "Scheduler poll interval."),
    EnvSpec(
        "RECSTOP_HEALTH_MAX_DEAD_LETTERS",
        _positive(int),
        100,
        "`recstop health` fails with more dead letters than this (`--max-dead-letters`).",
    ),
    EnvSpec(
        "RECSTOP_HEALTH_MAX_OVERDUE_S",
        _positive(float),
        60.0,
        "`recstop health` fails when a schedule entry is due for longer than this (`--max-overdue-s`).",
    ),
    EnvSpec(
        "RECSTOP_HEALTH_MAX_HEARTBEAT_AGE_S",
        _positive(float),
        10.0,
        "A worker whose heartbeat (every 2 s) is older counts as dead, in `recstop health` and the "
        "`recstop_workers` metric (`--max-heartbeat-age-s`).",
    ),
    EnvSpec(
        "RECSTOP_LOG_LEVEL", _choice("debug", "info", "warning", "error", "critical"), "info", "Log level."
    ),
    EnvSpec(
        "RECSTOP_LOG_FORMAT",
        _choice("auto", "json", "console"),
        "auto",
        "`auto`: console on a TTY, JSON lines otherwise.",
    ),
)
