"""A script's JSON argument (``ARGV[1]``): None values left out, pre-encoded parts spliced in as they are.

Most of what a script is given is the same on every call (the results record's template, the
latency buckets, the audit bound, the settings): such a part is encoded once, as :class:`Raw`,
and spliced into each call's text, so a call encodes only what changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

_SEPARATORS: Final = (",", ":")
#: One encoder for every call (``json.dumps`` with separators builds a new one each time).
_dumps: Final = json.JSONEncoder(separators=_SEPARATORS).encode


class Raw(str):
    """JSON text, put into a script's argument as it is (encoded once, see :func:`raw`)."""

    __slots__ = ()


def raw(value: object) -> Raw:
    """``value`` encoded as a script argument encodes it (None left out, at every depth), once."""
    return Raw(_dumps(_compact(value)))


def encode(args: Mapping[str, Any]) -> str:
    """The JSON argument of a script: None values left out, at every depth; :class:`Raw` spliced."""
    plain = {k: _compact(v) for k, v in args.items() if v is not None and not isinstance(v, Raw)}
    text = _dumps(plain)
    spliced = [f"{json.dumps(k)}:{v}" for k, v in args.items() if isinstance(v, Raw)]
    if not spliced:
        return text
    return f"{text[:-1]}{',' if plain else ''}{','.join(spliced)}}}"


def _compact(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    # The common types first: an ABC check (Mapping) costs several times a plain one.
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, dict | Mapping):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_compact(v) for v in value]
    return value
