"""The Lua scripts: named JSON in, one typed reply out, each loaded once per client with the preludes.

Every script takes its keys in ``KEYS`` (built by ``state.keys``) and its arguments as one JSON
object in ``ARGV[1]``, which it binds to named locals at its top; some take one more ``ARGV``
entry per item (a task message). Fields that are None are left out, so a script sees them as nil
(a JSON null would arrive as a truthy ``cjson.null``).

A script is declared once, as a :class:`LuaScript`: its file and the one parser of its reply,
defined next to the code that calls it. :meth:`Scripts.run` returns what that parser returns, so
the parser is the only reader of the reply, and whoever changes a reply finds every reader by the
parser's name. Every script answers JSON (``reply_json``), except ``fetch``, whose reply carries the
messages byte for byte (``lua/fetch.lua`` says how).

:class:`AsyncScripts` runs the same scripts, arguments and parsers on a ``redis.asyncio`` client.

The text Redis runs is the generated constants (``state.prelude``: the vocabulary and the key
layout) and the helpers of ``lua/common.lua`` that the script uses, then the script.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from recstop.worker.state.arguments import encode
from recstop.worker.state.prelude import lua_prelude

if TYPE_CHECKING:  # only an asyncio producer loads redis.asyncio
    from redis.asyncio import Redis as AsyncRedis
    from redis.asyncio.client import Pipeline as AsyncPipeline
    from redis.commands.core import AsyncScript

R = TypeVar("R")


@dataclass(frozen=True)
class LuaScript(Generic[R]):
    """One script of ``lua/``: its file name (without ``.lua``) and the parser of its raw reply."""

    name: str
    parse: Callable[[Any], R]


def _read(name: str) -> str:
    return (resources.files("recstop.worker.state") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@functools.cache
def source(name: str) -> str:
    """A script's full text: the generated constants and ``common.lua`` it uses, then the script.

    Redis runs the whole text on every call, so every table and function of the shared part costs
    each call (about half a bare ``EVALSHA``'s CPU here): only the definitions the script uses,
    directly or through another definition, are kept, in their order.
    """
    script = _read(name)
    shared = _units(f"{lua_prelude()}\n{_read('common')}")
    wanted = _words(script)
    kept: list[str] = []
    for defines, text in reversed(shared):  # a definition uses only those before it
        if defines & wanted:
            kept.append(text)
            wanted |= _words(text)
    return "\n".join([*reversed(kept), script])


_DEFINES: Final = re.compile(r"^local (?:function )?([\w, ]+?)\s*(?:=|\()")


def _units(text: str) -> list[tuple[frozenset[str], str]]:
    """Top-level definitions (``local NAME = ...``, ``local function NAME``), each with its comments."""
    units: list[tuple[frozenset[str], list[str]]] = []
    pending: list[str] = []
    for line in text.splitlines():
        found = _DEFINES.match(line)
        if found is not None:
            names = frozenset(word.strip() for word in found.group(1).split(","))
            units.append((names, [*pending, line]))
            pending = []
        elif line.startswith("--") or not line.strip() or not units:
            pending.append(line)
        else:
            units[-1][1].extend([*pending, line])
            pending = []
    return [(names, "\n".join(lines)) for names, lines in units]


def _words(text: str) -> set[str]:
    """The identifiers Lua code uses (comments left out)."""
    return set(re.findall(r"[A-Za-z_]\w*", re.sub(r"--[^\n]*", "", text)))


def reply_json(reply: object) -> Any:  # noqa: ANN401 - the JSON a script answered, for its parser
    """The JSON text a script answered, decoded (what every parser but ``fetch``'s starts with)."""
    if not isinstance(reply, str | bytes):
        raise TypeError(f"a script answered {type(reply).__name__}, not JSON text")
    return json.loads(reply)


@functools.cache
def sha1(name: str) -> str:
    """The SHA1 a script is called by (``EVALSHA``): of its full text (:func:`source`)."""
    return hashlib.sha1(source(name).encode(), usedforsecurity=False).hexdigest()


class Scripts:
    """The scripts registered on one client (EVALSHA, with EVAL when Redis does not know them yet).

    :meth:`run` sends ``EVALSHA`` itself, and loads the script only when Redis answers ``NOSCRIPT``
    (a restart, a new server): one command per call, where redis-py's ``Script`` goes through
    its own checks on every call. A pipeline (:meth:`queue`) uses redis-py's ``Script``, which makes
    sure the scripts are loaded before the pipeline runs.
    """

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()

    def _script(self, script: LuaScript[Any]) -> Script:
        found = self._scripts.get(script.name)
        if found is None:
            with self._lock:
                found = self._scripts.setdefault(
                    script.name, self.client.register_script(source(script.name))
                )
        return found

    def run(
        self,
        script: LuaScript[R],
        keys: Sequence[str],
        args: Mapping[str, Any],
        extra: Sequence[str | bytes] = (),
    ) -> R:
        """Run one script atomically; its reply as the script's parser reads it."""
        sha, call = sha1(script.name), (*keys, encode(args), *extra)
        try:
            raw = self.client.evalsha(sha, len(keys), *call)
        except NoScriptError:
            self.load(script)
            raw = self.client.evalsha(sha, len(keys), *call)
        return script.parse(raw)

    def queue(
        self,
        pipe: Pipeline,
        script: LuaScript[Any],
        keys: Sequence[str],
        args: Mapping[str, Any],
        extra: Sequence[str | bytes] = (),
    ) -> None:
        """Add one script call to a pipeline; ``script.parse`` reads its reply from ``pipe.execute()``."""
        self._script(script)(keys=list(keys), args=[encode(args), *extra], client=pipe)

    def sha(self, script: LuaScript[Any]) -> str:
        """The SHA1 a script is called by (``EVALSHA``)."""
        return sha1(script.name)

    def load(self, script: LuaScript[Any]) -> None:
        """Load a script into Redis (after a restart forgot it: ``NOSCRIPT``)."""
        self.client.script_load(source(script.name))


class AsyncScripts:
    """The scripts registered on one ``redis.asyncio`` client: the same texts, arguments and parsers."""

    def __init__(self, client: AsyncRedis) -> None:
        self.client = client
        self._scripts: dict[str, AsyncScript] = {}

    def _script(self, script: LuaScript[Any]) -> AsyncScript:
        found = self._scripts.get(script.name)
        if found is None:  # one event loop: no other coroutine runs between the get and the set
            found = self._scripts[script.name] = self.client.register_script(source(script.name))
        return found

    async def run(
        self,
        script: LuaScript[R],
        keys: Sequence[str],
        args: Mapping[str, Any],
        extra: Sequence[str | bytes] = (),
    ) -> R:
        """Run one script atomically (``EVALSHA``, loaded on ``NOSCRIPT``); its reply, parsed."""
        sha, call = sha1(script.name), (*keys, encode(args), *extra)
        try:
            raw = await self.client.evalsha(sha, len(keys), *call)
        except NoScriptError:
            await self.client.script_load(source(script.name))
            raw = await self.client.evalsha(sha, len(keys), *call)
        return script.parse(raw)

    async def queue(
        self,
        pipe: AsyncPipeline,
        script: LuaScript[Any],
        keys: Sequence[str],
        args: Mapping[str, Any],
        extra: Sequence[str | bytes] = (),
    ) -> None:
        """Add one script call to a pipeline; ``script.parse`` reads its reply from ``pipe.execute()``."""
        await self._script(script)(keys=list(keys), args=[encode(args), *extra], client=pipe)
