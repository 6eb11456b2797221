"""The Lua scripts that make every state transition atomic, loaded once per Redis client."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from redis import Redis
from redis.commands.core import Script

NAMES: Final = (
    "enqueue",
    "confirm",
    "claim",
    "cancel",
    "begin",
    "finish",
    "deadletter",
    "dlq_remove",
)


def _source(name: str) -> str:
    return (resources.files("worker") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


_COMMON: Final = _source("common")
SOURCES: Final = {name: _COMMON + "\n" + _source(name) for name in NAMES}


@dataclass(frozen=True)
class Scripts:
    """Registered scripts, called as ``scripts.begin(keys=[...], args=[...])``."""

    client: Redis
    registered: dict[str, Script]

    @classmethod
    def register(cls, client: Redis) -> Scripts:
        """Register every script on a client (EVALSHA with an automatic EVAL fallback)."""
        return cls(client, {name: client.register_script(src) for name, src in SOURCES.items()})

    def run(self, name: str, keys: list[str], args: list[Any]) -> Any:  # noqa: ANN401 - Lua reply
        """Run one script atomically."""
        return self.registered[name](keys=keys, args=args, client=self.client)
