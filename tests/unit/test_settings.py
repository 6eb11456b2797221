"""Settings are parsed once from an environment mapping into frozen objects."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import ssl

import pytest
from redis.connection import SSLConnection

from recstop.producers import cli
from recstop.worker.celeryapp.celeryconf import celery_config
from recstop.worker.config import parsers
from recstop.worker.config.credentials import Accounts
from recstop.worker.config.environment import ENV_SPECS, EnvSpec
from recstop.worker.config.fields import ENV
from recstop.worker.config.settings import LogLevel, Settings
from recstop.worker.model.errors import ConfigError
from recstop.worker.observability.logs import configure_logging, reset_logging
from recstop.worker.state.redisclient import redis_client


def test_defaults():
    """An empty environment gives the documented defaults."""
    settings = Settings.from_env({})
    assert settings.api.base_url == "https://api.vobiz.ai/api/v1"
    assert settings.redis.url == "redis://localhost:6379/0"
    assert settings.retry.deadline_s == 3600
    assert settings.retention.status_s == 7 * 86400
    assert settings.retention.dlq_max_entries == 10_000
    assert settings.retention.dlq_max_age_s == 180 * 86400


def test_settings_are_frozen():
    """Settings cannot be changed after they are read."""
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.concurrency = 3  # type: ignore[misc]


def test_credentials_file_adds_accounts(tmp_path):
    """The credentials file maps more auth_ids to tokens; tokens stay hidden in reprs."""
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"SA_SUB00001": "tok-sub"}))
    settings = Settings.from_env(
        {
            "VOBIZ_AUTH_ID": "MA_MAIN0001",
            "VOBIZ_AUTH_TOKEN": "tok-main",
            "RECSTOP_CREDENTIALS_FILE": str(path),
        }
    )
    accounts = settings.accounts
    assert accounts.auth_ids == {"MA_MAIN0001", "SA_SUB00001"}
    assert accounts.token_for("SA_SUB00001").reveal() == "tok-sub"
    assert "tok-" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECSTOP_MAX_ATTEMPTS": "0"}, "RECSTOP_MAX_ATTEMPTS"),
        ({"RECSTOP_READ_TIMEOUT_S": "fast"}, "RECSTOP_READ_TIMEOUT_S"),
        ({"RECSTOP_BACKOFF_JITTER": "lots"}, "RECSTOP_BACKOFF_JITTER"),
        ({"RECSTOP_LOG_LEVEL": "loud"}, "RECSTOP_LOG_LEVEL"),
        ({"RECSTOP_BROKER_URL": "amqp://x"}, "RECSTOP_BROKER_URL"),
        ({"VOBIZ_AUTH_TOKEN": "t"}, "VOBIZ_AUTH_ID"),
        ({"VOBIZ_AUTH_ID": "bad id"}, "auth_id"),
        ({"RECSTOP_CREDENTIALS_FILE": "/nonexistent/creds.json"}, "RECSTOP_CREDENTIALS_FILE"),
    ],
)
def test_bad_values_fail_with_the_variable_name(env, message):
    """A bad value names the variable at fault and never echoes a token."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_bad_credentials_file_does_not_echo_tokens(tmp_path):
    """A malformed credentials file is rejected without printing its content."""
    path = tmp_path / "creds.json"
    path.write_text('{"MA_MAIN0001": "tok-leak", }')
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RECSTOP_CREDENTIALS_FILE": str(path)})
    assert "tok-leak" not in str(info.value)


def test_every_setting_is_documented():
    """Every environment variable has a help text (the README table is built from these)."""
    assert all(spec.help for spec in ENV_SPECS)
    assert len({spec.name for spec in ENV_SPECS}) == len(ENV_SPECS)


def _at(obj, path):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def test_every_default_comes_from_the_model():
    """Each variable's table default is its field's default; an empty environment gives ``Settings()``."""
    defaults = Settings()
    for spec in ENV_SPECS:
        expected = _at(defaults, spec.path) if spec.path else None
        assert spec.default == expected, spec.name
    assert Settings.from_env({}) == defaults


def test_every_plain_field_has_a_variable():
    """Every field of the model is a group or carries its variable (the accounts come from three)."""

    def leaves(cls, prefix=""):
        for field in dataclasses.fields(cls):
            group = field.default_factory
            if dataclasses.is_dataclass(group) and group is not Accounts:
                yield from leaves(group, f"{prefix}{field.name}.")
            elif group is not Accounts:
                assert ENV in field.metadata, f"{prefix}{field.name} has no variable"
                yield f"{prefix}{field.name}"

    assert sorted(leaves(Settings)) == sorted(spec.path for spec in ENV_SPECS if spec.path)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("RECSTOP_MAX_ATTEMPTS", "abc", "RECSTOP_MAX_ATTEMPTS: must be an integer > 0, got 'abc'"),
        ("RECSTOP_MAX_ATTEMPTS", "2.5", "RECSTOP_MAX_ATTEMPTS: must be an integer > 0, got '2.5'"),
        ("RECSTOP_REDIS_WAIT_REPLICAS", "x", "RECSTOP_REDIS_WAIT_REPLICAS: must be an integer >= 0, got 'x'"),
        ("RECSTOP_READ_TIMEOUT_S", "fast", "RECSTOP_READ_TIMEOUT_S: must be a finite number > 0, got 'fast'"),
        ("RECSTOP_READ_TIMEOUT_S", "inf", "RECSTOP_READ_TIMEOUT_S: must be a finite number > 0, got 'inf'"),
        ("RECSTOP_RATE_LIMIT_RPS", "lots", "RECSTOP_RATE_LIMIT_RPS: must be a finite number, got 'lots'"),
        ("RECSTOP_LOCK_MARGIN_S", "soon", "RECSTOP_LOCK_MARGIN_S: must be a finite number > 0, got 'soon'"),
    ],
)
def test_a_non_numeric_number_names_the_variable_and_the_form(name, raw, message):
    """A bad number names its variable and the expected form, not Python's parser error."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: raw})
    assert str(info.value) == message


def test_a_parser_failing_in_its_own_words_still_names_the_variable_and_the_form():
    """Whatever a parser raises, the reader reports the variable, the form its docstring names, the value."""

    def even(raw: str) -> int:
        """An even integer."""
        value = int(raw)  # raises "invalid literal for int() ..." for "abc"
        if value % 2:
            raise TypeError("odd")
        return value

    for raw in ("abc", "3"):
        spec = EnvSpec("RECSTOP_EVEN", even, None, "")
        with pytest.raises(ConfigError) as info:
            spec.read({"RECSTOP_EVEN": raw})
        assert str(info.value) == f"RECSTOP_EVEN: must be an even integer, got {raw!r}"


def test_every_variable_names_the_form_it_expects():
    """Every variable's parser documents the form it accepts, so any refused value can name it."""
    for spec in ENV_SPECS:
        assert parsers.expected(spec.parse) != "a valid value", spec.name
    assert parsers.expected(parsers.one_of(LogLevel)) == "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"


def test_lock_margin_is_read_and_sets_the_lock_ttl():
    """RECSTOP_LOCK_MARGIN_S adds to connect + read timeout; by default the TTL is as before (23.05 s)."""
    assert Settings.from_env({}).lock_ttl_s == pytest.approx(3.05 + 10.0 + 10.0)
    env = {"RECSTOP_CONNECT_TIMEOUT_S": "1", "RECSTOP_READ_TIMEOUT_S": "4", "RECSTOP_LOCK_MARGIN_S": "2.5"}
    settings = Settings.from_env(env)
    assert settings.api.lock_margin_s == 2.5
    assert settings.lock_ttl_s == pytest.approx(7.5)


def test_health_thresholds_are_read():
    """The RECSTOP_HEALTH_* variables fill ``Settings.health``."""
    health = Settings.from_env(
        {
            "RECSTOP_HEALTH_MAX_DEAD_LETTERS": "7",
            "RECSTOP_HEALTH_MAX_OVERDUE_S": "1.5",
            "RECSTOP_HEALTH_MAX_HEARTBEAT_AGE_S": "3",
        }
    ).health
    assert (health.max_dead_letters, health.max_overdue_s, health.max_heartbeat_age_s) == (7, 1.5, 3.0)


def test_health_flags_override_the_settings():
    """``recstop health``'s --max-* flags win over the settings; a flag not given keeps the setting."""
    settings = Settings.from_env(
        {"RECSTOP_HEALTH_MAX_DEAD_LETTERS": "7", "RECSTOP_HEALTH_MAX_OVERDUE_S": "5"}
    )
    args = argparse.Namespace(max_dead_letters=1, max_overdue_s=None, max_heartbeat_age_s=2.0)
    thresholds = cli._thresholds(settings, args)
    assert (thresholds.max_dead_letters, thresholds.max_overdue_s, thresholds.max_heartbeat_age_s) == (
        1,
        5.0,
        2.0,
    )


def test_rate_limit_settings_are_read():
    """Every RECSTOP_RATE_LIMIT_* variable fills its field of ``Settings.rate_limit``."""
    values = {
        "rate_rps": 12.5,
        "max_reserve_s": 0.5,
        "decrease_factor": 0.25,
        "floor_fraction": 0.2,
        "recover_fraction_per_s": 0.05,
        "cooldown_s": 2.0,
        "retry_after_cap_s": 10.0,
        "max_wait_s": 4.0,
    }
    env = {f"RECSTOP_RATE_LIMIT_{name.upper()}": str(value) for name, value in values.items()}
    env["RECSTOP_RATE_LIMIT_RPS"] = env.pop("RECSTOP_RATE_LIMIT_RATE_RPS")
    assert dataclasses.asdict(Settings.from_env(env).rate_limit) == values


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "RECSTOP_RATE_LIMIT_RPS",
            "-1",
            r"^RECSTOP_RATE_LIMIT_RPS: must be >= 0 \(0 = no limit\), got -1.0$",
        ),
        (
            "RECSTOP_RATE_LIMIT_DECREASE_FACTOR",
            "1",
            r"^RECSTOP_RATE_LIMIT_DECREASE_FACTOR: must be in \(0, 1\)",
        ),
        (
            "RECSTOP_RATE_LIMIT_FLOOR_FRACTION",
            "0",
            r"^RECSTOP_RATE_LIMIT_FLOOR_FRACTION: must be in \(0, 1\]",
        ),
        ("RECSTOP_RATE_LIMIT_MAX_WAIT_S", "-2", r"^RECSTOP_RATE_LIMIT_MAX_WAIT_S: must be >= 0"),
    ],
)
def test_rate_limit_out_of_range_names_the_variable(name, raw, message):
    """The rate limit's own range checks surface as a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: raw})


# --- Redis: password and TLS -----------------------------------------------------------------


@pytest.fixture
def pem_files(tmp_path):
    """Three existing files standing in for the CA, client certificate and key (not parsed here)."""
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    return {name: str(path) for name, path in files.items()}


def test_tls_files_become_redis_py_and_kombu_ssl_options(pem_files):
    """The TLS files reach redis-py's client and Celery's broker_use_ssl, verification required."""
    settings = Settings.from_env(
        {
            "RECSTOP_BROKER_URL": "rediss://recstop:pw@redis.internal:6380/0",
            "RECSTOP_REDIS_TLS_CA_FILE": pem_files["ca"],
            "RECSTOP_REDIS_TLS_CERT_FILE": pem_files["cert"],
            "RECSTOP_REDIS_TLS_KEY_FILE": pem_files["key"],
        }
    )
    expected = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": pem_files["ca"],
        "ssl_certfile": pem_files["cert"],
        "ssl_keyfile": pem_files["key"],
    }
    assert settings.redis.tls_options() == expected
    assert celery_config(settings)["broker_use_ssl"] == expected
    pool = redis_client(settings.redis).connection_pool
    assert issubclass(pool.connection_class, SSLConnection)
    assert {k: pool.connection_kwargs[k] for k in expected} == expected
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == ("recstop", "pw")


@pytest.mark.parametrize(("reqs", "mode"), [("required", ssl.CERT_REQUIRED), ("optional", ssl.CERT_OPTIONAL)])
def test_rediss_without_files_still_verifies_the_server(reqs, mode):
    """rediss:// alone verifies against the system CAs: kombu's own default would be CERT_NONE."""
    settings = Settings.from_env(
        {"RECSTOP_BROKER_URL": "rediss://redis.internal:6380/0", "RECSTOP_REDIS_TLS_CERT_REQS": reqs}
    )
    assert celery_config(settings)["broker_use_ssl"] == {"ssl_cert_reqs": mode}


def test_plain_redis_has_no_ssl_options():
    """A redis:// URL sets no ssl options anywhere."""
    settings = Settings.from_env({"RECSTOP_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert settings.redis.tls_options() is None
    assert celery_config(settings)["broker_use_ssl"] is None
    assert not issubclass(redis_client(settings.redis).connection_pool.connection_class, SSLConnection)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RECSTOP_REDIS_TLS_CA_FILE": "{ca}"},
            r"RECSTOP_REDIS_TLS_CA_FILE set, but RECSTOP_BROKER_URL is not a rediss://",
        ),
        (
            {"RECSTOP_REDIS_TLS_CERT_REQS": "none"},
            r"RECSTOP_REDIS_TLS_CERT_REQS set, but RECSTOP_BROKER_URL is not a rediss://",
        ),
        ({"RECSTOP_REDIS_TLS_CERT_REQS": "maybe"}, r"RECSTOP_REDIS_TLS_CERT_REQS: must be one of"),
        (
            {"RECSTOP_BROKER_URL": "rediss://h:6380/0", "RECSTOP_REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"},
            r"RECSTOP_REDIS_TLS_CA_FILE: no such file /nonexistent/ca.pem",
        ),
        (
            {"RECSTOP_BROKER_URL": "rediss://h:6380/0", "RECSTOP_REDIS_TLS_KEY_FILE": "{key}"},
            r"RECSTOP_REDIS_TLS_KEY_FILE is set but RECSTOP_REDIS_TLS_CERT_FILE is not",
        ),
        (
            {
                "RECSTOP_BROKER_URL": "rediss://h:6380/0",
                "RECSTOP_REDIS_TLS_CA_FILE": "{ca}",
                "RECSTOP_REDIS_TLS_CERT_REQS": "none",
            },
            r"RECSTOP_REDIS_TLS_CERT_REQS=none turns verification off",
        ),
    ],
)
def test_bad_tls_settings_fail_with_the_variable_name(pem_files, env, message):
    """TLS options without rediss://, missing files, a key without its certificate → ConfigError."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({k: v.format(**pem_files) for k, v in env.items()})


def test_redis_password_stays_out_of_reprs_and_errors(pem_files):
    """The URL's password is masked in the settings repr and config errors, and is a redaction secret."""
    url = "redis://recstop:hunter2-Pw%40x@redis.internal:6379/0"
    settings = Settings.from_env(
        {"RECSTOP_BROKER_URL": url, "VOBIZ_AUTH_ID": "MA_MAIN0001", "VOBIZ_AUTH_TOKEN": "tok-m"}
    )
    assert "hunter2" not in repr(settings)
    assert settings.redis.safe_url == "redis://recstop:***@redis.internal:6379/0"
    assert settings.secrets() == {"tok-m", "hunter2-Pw%40x", "hunter2-Pw@x"}
    for env in (
        {"RECSTOP_BROKER_URL": "amqp://recstop:hunter2@mq/"},
        {"RECSTOP_BROKER_URL": url, "RECSTOP_REDIS_TLS_CA_FILE": pem_files["ca"]},
    ):
        with pytest.raises(ConfigError) as info:
            Settings.from_env(env)
        assert "hunter2" not in str(info.value)
        assert "recstop:***@" in str(info.value)


def test_worker_log_lines_mask_the_redis_password():
    """The worker's log redaction (Settings.secrets) masks the Redis password like a token."""
    settings = Settings.from_env({"RECSTOP_BROKER_URL": "redis://:s3cr3t-redis-pw@h:6379/0"})
    out = io.StringIO()
    configure_logging(log_level="INFO", log_format="json", secrets=settings.secrets(), stream=out)
    try:
        logging.getLogger("kombu").error("cannot connect to redis://:s3cr3t-redis-pw@h:6379/0")
    finally:
        reset_logging()
    assert "s3cr3t-redis-pw" not in out.getvalue()
    assert "redis://:***@h:6379/0" in out.getvalue()


@pytest.mark.parametrize(("raw", "sent"), [(None, True), ("0", False), ("true", True)])
def test_task_events_follow_their_setting(raw, sent):
    """RECSTOP_TASK_EVENTS (on unless set off) decides whether the worker sends Celery's task events."""
    env = {"RECSTOP_BROKER_URL": "redis://127.0.0.1:6379/0"} | (
        {} if raw is None else {"RECSTOP_TASK_EVENTS": raw}
    )
    assert celery_config(Settings.from_env(env))["worker_send_task_events"] is sent
