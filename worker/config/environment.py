"""Reads the environment once into ``Settings`` by walking the model's fields; lists every variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, fields, is_dataclass
from typing import Any, Final, TypeVar

from recstop.worker.config import parsers
from recstop.worker.config.credentials import Accounts, load_accounts
from recstop.worker.config.fields import ENV, EnvVar, InvalidSettingError
from recstop.worker.config.redis import RedisSettings
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import ConfigError

#: A settings dataclass: a field whose default factory is one is read as a group of variables.
Group = type[Any]
M = TypeVar("M")


@dataclass(frozen=True)
class EnvSpec:
    """One environment variable: its name, parser, default and help text (a row of docs/configuration.md)."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    #: The model field it sets (``"retry.max_attempts"``); "" for a variable that is not one field.
    path: str = ""

    def read(self, env: Mapping[str, str]) -> Any:  # noqa: ANN401 - each variable has its own type
        """Return the parsed value, or the default when unset or empty.

        A value the parser refuses, whatever it raises, is a ConfigError naming the variable, the
        form expected and the value: ``RECSTOP_MAX_ATTEMPTS: must be an integer > 0, got 'abc'``.
        """
        raw = env.get(self.name, "")
        if raw == "":
            return self.default
        try:
            return self.parse(raw)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ConfigError(f"{self.name}: {parsers.refusal(self.parse, raw, exc)}") from None


#: The accounts' variables: no field of their own, they are the inputs of ``load_accounts``.
AUTH_ID, AUTH_TOKEN, CREDENTIALS_FILE = (
    EnvSpec("VOBIZ_AUTH_ID", parsers.text, None, "Default Vobiz account (`MA_...` or `SA_...`)."),
    EnvSpec("VOBIZ_AUTH_TOKEN", parsers.text, None, "Token of the default account (worker only)."),
    EnvSpec(
        "RECSTOP_CREDENTIALS_FILE", parsers.text, None, "JSON file `{auth_id: token}` for more accounts."
    ),
)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``environ`` (``os.environ`` when omitted) into frozen ``Settings``."""
    return read_model(Settings, environ)


def read_model(
    cls: type[M], environ: Mapping[str, str] | None = None, *, reads: frozenset[str] | None = None
) -> M:
    """Read a settings model (``Settings``, ``ProducerSettings``) from ``environ`` by walking its fields.

    ``reads`` names the only variables read (None: all of them); a variable left out is not looked
    at, and its field keeps its default.
    """
    env = os.environ if environ is None else environ
    return cls(**_values(cls, _Env(env, reads), ""))


class _Env:
    """The environment as one model reads it: only the variables it reads."""

    def __init__(self, env: Mapping[str, str], reads: frozenset[str] | None) -> None:
        self.env = env
        self.reads = reads

    def read(self, spec: EnvSpec) -> Any:  # noqa: ANN401 - each variable has its own type
        """The variable's value, or its default when this model does not read it."""
        if self.reads is not None and spec.name not in self.reads:
            return spec.default
        return spec.read(self.env)


def _values(cls: Group, env: _Env, prefix: str) -> dict[str, Any]:
    """The keyword arguments of ``cls``: each field read from its variable, each group built."""
    values: dict[str, Any] = {}
    for field in fields(cls):
        spec, group = _spec(field, prefix), _group(field)
        if spec is not None:
            values[field.name] = env.read(spec)
        elif group is Accounts:
            values[field.name] = load_accounts(
                env.read(AUTH_ID), env.read(AUTH_TOKEN), env.read(CREDENTIALS_FILE)
            )
        elif group is not None:
            values[field.name] = _build(group, env, f"{prefix}{field.name}.")
    return values


def _build(cls: Group, env: _Env, prefix: str) -> object:
    """One group, checked (``RedisSettings`` by ``from_dsn``); a value out of range names its variable."""
    values = _values(cls, env, prefix)
    if cls is RedisSettings:
        return RedisSettings.from_dsn(values.pop("url"), **values)
    try:
        return cls(**values)
    except InvalidSettingError as exc:
        var = _env_var(next(field for field in fields(cls) if field.name == exc.field_name))
        name = var.name if var is not None else f"{prefix}{exc.field_name}"
        raise ConfigError(f"{name}: {exc.reason}") from None


def _env_var(field: Field[Any]) -> EnvVar | None:
    var = field.metadata.get(ENV)
    return var if isinstance(var, EnvVar) else None


def _spec(field: Field[Any], prefix: str) -> EnvSpec | None:
    var = _env_var(field)
    if var is None:
        return None
    return EnvSpec(var.name, var.parse, field.default, var.help, f"{prefix}{field.name}")


def _group(field: Field[Any]) -> Group | None:
    factory = field.default_factory
    return factory if isinstance(factory, type) and is_dataclass(factory) else None


def _specs(cls: Group, prefix: str) -> Iterator[EnvSpec]:
    for field in fields(cls):
        spec, group = _spec(field, prefix), _group(field)
        if spec is not None:
            yield spec
        elif group is Accounts:
            yield from (AUTH_ID, AUTH_TOKEN, CREDENTIALS_FILE)
        elif group is not None:
            yield from _specs(group, f"{prefix}{field.name}.")


#: Every variable, in the model's field order: docs/configuration.md's table.
ENV_SPECS: Final[tuple[EnvSpec, ...]] = tuple(_specs(Settings, ""))
