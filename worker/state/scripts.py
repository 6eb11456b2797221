"""The Lua scripts, each loaded once per client with the shared prelude: named JSON in, JSON out.

Every script takes its keys in ``KEYS`` (built by ``worker.keys``) and its arguments as one JSON
object in ``ARGV[1]``, which it binds to named locals at its top; some take one more ``ARGV``
entry per item (a task message). Fields that are None are left out, so a script sees them as nil
(a JSON null would arrive as a truthy ``cjson.null``). Each caller parses the JSON reply into its
own typed result (``worker.store``, ``worker.deadletters``, ``worker.ratelimit``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

NAMES: Final = (
    "enqueue",
    "begin",
    "finish",
    "cancel",
    "claim",
    "publish",
    "deadletter",
    "dlq_remove",
    "ratelimit",
    "fetch",
    "beat",
    "reap",
    "requeue",
)


def _read(name: str) -> str:
    return (resources.files("recstop.worker.state") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@functools.cache
def source(name: str) -> str:
    """A script's full text: the ``common.lua`` prelude, then the script."""
    return _read("common") + "\n" + _read(name)


def encode(args: Mapping[str, Any]) -> str:
    """The JSON argument of a script: None values left out, at every depth."""
    return json.dumps(_compact(args), separators=(",", ":"))


def _compact(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    if isinstance(value, Mapping):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_compact(v) for v in value]
    return value


def decode(reply: object) -> Any:  # noqa: ANN401 - the script's JSON reply
    """A script's JSON reply (an integer or array reply is returned as it is)."""
    return json.loads(reply) if isinstance(reply, str | bytes) else reply


class Scripts:
    """The scripts registered on one client (EVALSHA, with EVAL when Redis does not know them yet)."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {name: client.register_script(source(name)) for name in NAMES}

    def run(
        self, name: str, keys: Sequence[str], args: Mapping[str, Any], extra: Sequence[str | bytes] = ()
    ) -> Any:  # noqa: ANN401 - the script's JSON reply, parsed by the caller
        """Run one script atomically and return its decoded reply."""
        return decode(self._scripts[name](keys=list(keys), args=[encode(args), *extra], client=self.client))

    def sha(self, name: str) -> str:
        """The SHA1 a script is called by (``EVALSHA``)."""
        return str(self._scripts[name].sha)

    def load(self, name: str) -> None:
        """Load a script into Redis (after a restart forgot it: ``NOSCRIPT``)."""
        self.client.script_load(self._scripts[name].script)

    def queue(
        self,
        pipe: Pipeline,
        name: str,
        keys: Sequence[str],
        args: Mapping[str, Any],
        extra: Sequence[str | bytes] = (),
    ) -> None:
        """Add one script call to a pipeline; :func:`decode` its reply from ``pipe.execute()``."""
        self._scripts[name](keys=list(keys), args=[encode(args), *extra], client=pipe)
