"""Parsers of environment variable text: each returns a value or raises ValueError with the expected form.

A parser's docstring names the form it accepts ("An integer > 0."): ``refusal`` falls back on it
when a parser fails with an error of its own, so every refused value names what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, TypeVar, get_args

N = TypeVar("N", int, float)


def text(raw: str) -> str:
    """Any text, as written."""
    return raw


def base_url(raw: str) -> str:
    """A URL prefix, without trailing slashes."""
    return raw.rstrip("/")


def database_url(raw: str) -> str:
    """A `sqlite:///PATH` or `postgresql://user:password@host:port/db` URL."""
    scheme = raw.partition("://")[0].lower()
    if scheme not in {"sqlite", "postgresql", "postgres", "postgresql+psycopg"} or "://" not in raw:
        shown = raw if "@" not in raw else scheme + "://..."  # never echo a password
        raise ValueError(f"must be a sqlite:///PATH or postgresql://... URL, got {shown!r}")
    if scheme == "sqlite" and (raw.rstrip("/") in {"sqlite:", "sqlite:/"} or raw.endswith(":memory:")):
        raise ValueError("must name a database file: sqlite:///PATH (an in-memory database keeps nothing)")
    return raw


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def boolean(raw: str) -> bool:
    """One of true, false (or 1, 0, yes, no, on, off)."""
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError(f"must be one of true, false (or 1, 0, yes, no, on, off), got {raw!r}")
    return word in _TRUE


def positive_int(raw: str) -> int:
    """An integer > 0."""
    return _number(int, raw, "an integer > 0", lambda value: value > 0)


def non_negative_int(raw: str) -> int:
    """An integer >= 0."""
    return _number(int, raw, "an integer >= 0", lambda value: value >= 0)


def positive_float(raw: str) -> float:
    """A finite number > 0."""
    return _number(float, raw, "a finite number > 0", lambda value: math.isfinite(value) and value > 0)


def non_negative_float(raw: str) -> float:
    """A finite number >= 0."""
    return _number(float, raw, "a finite number >= 0", lambda value: math.isfinite(value) and value >= 0)


def finite_float(raw: str) -> float:
    """Any finite number (the model checks its range)."""
    return _number(float, raw, "a finite number", math.isfinite)


def one_of(literal: object) -> Callable[[str], Any]:
    """One of a ``Literal``'s strings, in any case; returns it spelled as in the ``Literal``."""
    options: tuple[str, ...] = get_args(literal)
    by_lower = {option.lower(): option for option in options}

    def parse(raw: str) -> str:
        if raw.lower() not in by_lower:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return by_lower[raw.lower()]

    parse.__doc__ = f"One of {', '.join(options)}."
    return parse


def expected(parse: Callable[[str], Any]) -> str:
    """The form ``parse`` accepts, from the first line of its docstring: "an integer > 0"."""
    doc = (parse.__doc__ or "").strip().splitlines()
    first = doc[0].strip().rstrip(".") if doc else ""
    return first[:1].lower() + first[1:] if first else "a valid value"


def refusal(parse: Callable[[str], Any], raw: str, error: Exception) -> str:
    """Why ``raw`` was refused: the parser's own "must be ..., got ..." text, else the form it expects."""
    text = str(error)
    return text if text.startswith("must be ") else f"must be {expected(parse)}, got {raw!r}"


def _number(kind: Callable[[str], N], raw: str, form: str, ok: Callable[[N], bool]) -> N:
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise ValueError(f"must be {form}, got {raw!r}")
    return value
