"""Settings are parsed once from an environment mapping into frozen objects."""

from __future__ import annotations

import dataclasses
import json

import pytest

from worker.errors import ConfigError
from worker.settings import ENV_SPECS, Settings


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
