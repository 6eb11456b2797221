"""The producer library's surface: one import for everything, typed results, and its own settings."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import subprocess
import sys

import pytest

import recstop.producers
from recstop.producers import (
    AsyncProducer,
    BrokerMisconfiguredError,
    BrokerUnavailableError,
    ConfigError,
    InvalidBulkItem,
    InvalidStopRequest,
    Producer,
    ProducerSettings,
    RecstopError,
    Settings,
    StopHandle,
    StopNotStoredError,
    StopOutcomeUnknownError,
    UnknownAccountError,
)
from recstop.worker.config.environment import ENV_SPECS
from recstop.worker.config.producer import PRODUCER_VARIABLES
from recstop.worker.model.vocabulary import State

#: A value each variable's parser refuses (the producer's must fail on it, the others must not matter).
BAD = "not-a-value"


def test_everything_a_service_uses_is_exported_from_one_place():
    """``recstop.producers.__all__`` names the producers, results, settings and every error; all resolve."""
    expected = {
        "Producer",
        "AsyncProducer",
        "StopHandle",
        "StopSpec",
        "CancelResult",
        "ReplayResult",
        "StatusRecord",
        "State",
        "ProducerSettings",
        "Settings",
        "RecstopError",
        "InvalidStopRequest",
        "InvalidBulkItem",
        "UnknownAccountError",
        "BrokerUnavailableError",
        "StopNotStoredError",
        "StopOutcomeUnknownError",
        "BrokerMisconfiguredError",
        "ConfigError",
        "redis_client",
        "async_redis_client",
    }
    assert expected <= set(recstop.producers.__all__)
    assert all(getattr(recstop.producers, name) is not None for name in recstop.producers.__all__)


def test_the_error_hierarchy_is_the_documented_contract():
    """Two broker outcomes under BrokerUnavailableError; a misconfigured Redis is a ConfigError."""
    assert issubclass(StopNotStoredError, BrokerUnavailableError)
    assert issubclass(StopOutcomeUnknownError, BrokerUnavailableError)
    assert issubclass(BrokerMisconfiguredError, ConfigError)
    assert not issubclass(BrokerMisconfiguredError, BrokerUnavailableError)
    assert issubclass(InvalidBulkItem, InvalidStopRequest)
    assert issubclass(UnknownAccountError, InvalidStopRequest)
    for error in (BrokerUnavailableError, ConfigError, InvalidStopRequest):
        assert issubclass(error, RecstopError)


def test_results_are_typed_and_both_producers_offer_the_same_operations():
    """StopHandle.state is a State; AsyncProducer has Producer's operations, as coroutines."""
    assert dataclasses.fields(StopHandle)[2].type in {"State", State}
    operations = ("stop_recording", "stop_recordings", "cancel", "status", "replay")
    for name in operations:
        sync, coroutine = getattr(Producer, name), getattr(AsyncProducer, name)
        assert inspect.iscoroutinefunction(coroutine), name
        assert inspect.signature(sync).parameters.keys() == inspect.signature(coroutine).parameters.keys()


def test_importing_the_producers_does_not_load_asyncio_redis_until_asked():
    """``import recstop.producers`` leaves redis.asyncio's producer out; ``AsyncProducer`` brings it."""
    code = (
        "import sys, recstop.producers\n"
        "print('recstop.producers.aio' in sys.modules)\n"
        "recstop.producers.AsyncProducer\n"
        "print('recstop.producers.aio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_every_producer_variable_is_a_setting():
    """PRODUCER_VARIABLES names only variables the settings model defines."""
    assert {spec.name for spec in ENV_SPECS} >= PRODUCER_VARIABLES


@pytest.mark.parametrize("name", sorted({spec.name for spec in ENV_SPECS} - PRODUCER_VARIABLES))
def test_a_bad_worker_setting_does_not_stop_a_producer(name):
    """A variable the producer does not read, set to garbage, changes nothing for it."""
    settings = ProducerSettings.from_env({"RECSTOP_BROKER_URL": "redis://127.0.0.1:1/0", name: BAD})
    assert settings == ProducerSettings.from_env({"RECSTOP_BROKER_URL": "redis://127.0.0.1:1/0"})
    if name == "RECSTOP_CONCURRENCY":
        with pytest.raises(ConfigError, match="RECSTOP_CONCURRENCY"):
            Settings.from_env({name: BAD})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECSTOP_BROKER_URL", "http://nope"),
        ("RECSTOP_REDIS_SOCKET_TIMEOUT_S", BAD),
        ("RECSTOP_REDIS_MAX_CONNECTIONS", "0"),
        ("RECSTOP_REDIS_POOL_TIMEOUT_S", "-1"),
        ("RECSTOP_DEADLINE_S", BAD),
        ("RECSTOP_STATUS_RETENTION_S", BAD),
        ("RECSTOP_WATCHDOG_S", BAD),
        ("RECSTOP_AUDIT_STREAM_MAX", BAD),
        ("VOBIZ_AUTH_ID", "nobody"),
    ],
)
def test_a_bad_producer_setting_is_named(name, value):
    """A variable the producer reads, set wrong, is a ConfigError naming it (the account by its field)."""
    with pytest.raises(ConfigError, match="auth_id" if name == "VOBIZ_AUTH_ID" else name):
        ProducerSettings.from_env({"RECSTOP_BROKER_URL": "redis://127.0.0.1:1/0", name: value})


def test_producer_settings_read_the_same_values_as_the_workers():
    """Every variable a producer reads means the same in ``ProducerSettings`` and in ``Settings``."""
    env = {
        "RECSTOP_BROKER_URL": "redis://127.0.0.1:7/3",
        "RECSTOP_REDIS_MAX_CONNECTIONS": "7",
        "RECSTOP_REDIS_POOL_TIMEOUT_S": "2.5",
        "VOBIZ_AUTH_ID": "MA_ACCT0001",
        "RECSTOP_DEADLINE_S": "99",
        "RECSTOP_WATCHDOG_S": "12",
        "RECSTOP_AUDIT_STREAM_MAX": "5",
    }
    assert ProducerSettings.from_env(env) == ProducerSettings.of(Settings.from_env(env))
    assert ProducerSettings.from_env(env).redis.max_connections == 7


def test_an_unset_broker_url_is_said_once(caplog):
    """Without RECSTOP_BROKER_URL the producer warns once per process, naming the URL it uses."""
    import recstop.worker.config.producer as module  # noqa: PLC0415

    module._said_default_url.clear()
    with caplog.at_level(logging.WARNING, logger="recstop.producers"):
        ProducerSettings.from_env({})
        ProducerSettings.from_env({})
        ProducerSettings.from_env({"RECSTOP_BROKER_URL": "redis://127.0.0.1:9/0"})
    messages = [r.getMessage() for r in caplog.records if r.name == "recstop.producers"]
    assert messages == [
        "RECSTOP_BROKER_URL is not set: recstop enqueues into Redis at redis://localhost:6379/0"
    ]


def test_a_sentinel_failover_readonly_is_transient_and_a_plain_replica_is_misconfigured():
    """redis-py's "previous master is now a slave" (a READONLY as its context) is transient, not config."""
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415
    from redis.exceptions import ReadOnlyError  # noqa: PLC0415

    from recstop.producers.failures import broker_error  # noqa: PLC0415
    from recstop.worker.config.redis import RedisSettings  # noqa: PLC0415

    def failover() -> Exception:
        error = RedisConnectionError("The previous master is now a slave")
        error.__context__ = ReadOnlyError(
            "You can't write against a read only replica."
        )  # as redis-py raises it
        return error

    redis = RedisSettings()
    assert isinstance(broker_error(redis, "could not store", failover(), marks=True), StopNotStoredError)
    replica = broker_error(redis, "could not store", ReadOnlyError("READONLY"), marks=True)
    assert isinstance(replica, BrokerMisconfiguredError)
