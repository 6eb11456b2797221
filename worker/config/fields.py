"""How a setting is declared: its default, its environment variable, its parser and help text.

A field made by :func:`setting` carries an :class:`EnvVar` in its metadata; ``config.environment``
reads the environment into the model by walking these fields and lists every variable
(docs/configuration.md). A group checks its own ranges and raises :class:`InvalidSettingError`,
which the reader turns into an error naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar

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


def env_name(owner: type, field_name: str) -> str:
    """The environment variable of a setting (``env_name(RetryPolicy, "deadline_s")``), for messages."""
    (spec,) = [f.metadata[ENV] for f in fields(owner) if f.name == field_name]
    name: str = spec.name
    return name


class InvalidSettingError(ValueError):
    """A field's value is out of its range; the environment reader names the field's variable."""

    def __init__(self, owner: type, field_name: str, reason: str) -> None:
        super().__init__(f"{owner.__name__}: {field_name} {reason}")
        self.field_name = field_name
        self.reason = reason


def require(ok: bool, owner: type, field_name: str, reason: str) -> None:  # noqa: FBT001 - predicate first
    """Raise :class:`InvalidSettingError` for ``owner.field_name`` unless ``ok``."""
    if not ok:
        raise InvalidSettingError(owner, field_name, reason)
