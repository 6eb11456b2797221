"""Where Redis is and how to reach it: the URL (TLS, Sentinel), timeouts, replicas, the fetch's heartbeat.

The broker and the state store are one Redis. Passwords never show in a repr (``safe_url``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from recstop.worker.config import parsers
from recstop.worker.config.fields import setting
from recstop.worker.config.secrets import MASK_TEXT, mask_url, url_password
from recstop.worker.model.errors import ConfigError

DEFAULT_BROKER_URL: Final = "redis://localhost:6379/0"
CertReqs = Literal["required", "optional", "none"]
#: ``RECSTOP_REDIS_TLS_CERT_REQS`` → the name of its ``ssl`` verify mode (``ssl`` is imported only
#: by a process that uses TLS: a producer's start-up is measured in milliseconds).
_CERT_REQS: Final[Mapping[str, str]] = {
    "required": "CERT_REQUIRED",
    "optional": "CERT_OPTIONAL",
    "none": "CERT_NONE",
}


@dataclass(frozen=True)
class RedisSettings:
    """Where the broker and the state store live, how to reach them (TLS), and how long to wait.

    A password or an ACL user comes in the URL (``redis://user:password@host:6379/0``); it never
    shows in a repr (see ``safe_url``). The ``tls_*`` options apply to ``rediss://`` URLs only.
    High availability: ``sentinel://h1:26379;sentinel://h2:26379;...`` (kombu's format) with
    ``sentinel_master``; the Redis user and password then go in the first URL, the sentinels' own in
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
        help="Password of the sentinels themselves (`requirepass` in sentinel.conf); the part's Redis "
        "user and password go in the first `sentinel://` URL.",
    )
    wait_replicas: int = setting(
        0,
        env="RECSTOP_REDIS_WAIT_REPLICAS",
        parse=parsers.non_negative_int,
        help="Replicas that must hold a published stop message (`WAIT`) before the enqueue counts as "
        "accepted; 0: none (asynchronous replication: a failover can lose the last acknowledged writes). "
        "0 suits the default, a single Redis; deploy/'s Sentinel layout (two replicas) sets 1 "
        "(docs/operations.md).",
    )
    wait_timeout_ms: int = setting(
        500,
        env="RECSTOP_REDIS_WAIT_TIMEOUT_MS",
        parse=parsers.positive_int,
        help="Longest `WAIT` per publish; fewer replicas by then fails the enqueue with "
        "`StopOutcomeUnknownError` (the stop is on the master, not yet on a replica). Below the socket "
        "timeout.",
    )
    socket_timeout_s: float = setting(
        5.0, env="RECSTOP_REDIS_SOCKET_TIMEOUT_S", parse=parsers.positive_float, help="Redis socket timeout."
    )
    max_connections: int = setting(
        100,
        env="RECSTOP_REDIS_MAX_CONNECTIONS",
        parse=parsers.positive_int,
        help="Connections one process's Redis client opens at most (its pool); a caller finding every "
        "one busy waits for one (`RECSTOP_REDIS_POOL_TIMEOUT_S`).",
    )
    pool_timeout_s: float = setting(
        5.0,
        env="RECSTOP_REDIS_POOL_TIMEOUT_S",
        parse=parsers.positive_float,
        help="How long a caller waits for a free pooled connection before it gives up "
        "(`StopNotStoredError`: nothing was sent).",
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

    @property
    def broker_url(self) -> str:
        """The URL kombu connects with: ``url``, every ``sentinel://`` part with the first one's credentials.

        Kombu switches to the next ``;``-separated part when a sentinel is unreachable and takes that
        part's user and password for Redis: a part without them would lose the password the first
        one carries (the documented place for it) and fail authentication on the master.
        """
        if not self.sentinel:
            return self.url
        parts = self.url.split(";")
        userinfo, at, _ = urlsplit(parts[0].strip()).netloc.rpartition("@")
        if not at:
            return self.url
        filled = [
            p if "@" in urlsplit(p.strip()).netloc else p.replace("://", f"://{userinfo}@", 1) for p in parts
        ]
        return ";".join(filled)

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
        import ssl  # noqa: PLC0415 - only a TLS connection needs it

        options: dict[str, Any] = {"ssl_cert_reqs": getattr(ssl, _CERT_REQS[self.tls_cert_reqs])}
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
            f"max_connections={self.max_connections!r}, pool_timeout_s={self.pool_timeout_s!r}, "
            f"consumer_timeout_s={self.consumer_timeout_s!r}, "
            f"consumer_heartbeat_s={self.consumer_heartbeat_s!r}, "
            f"tls_ca_file={self.tls_ca_file!r}, "
            f"tls_cert_file={self.tls_cert_file!r}, tls_key_file={self.tls_key_file!r}, "
            f"tls_cert_reqs={self.tls_cert_reqs!r}, sentinel_master={self.sentinel_master!r}, "
            f"sentinel_password={MASK_TEXT if self.sentinel_password else None!r}, "
            f"wait_replicas={self.wait_replicas!r}, wait_timeout_ms={self.wait_timeout_ms!r})"
        )
