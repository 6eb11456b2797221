"""The Lua scripts say recstop's words through the generated prelude, and each script has one typed reply."""

from __future__ import annotations

import importlib
import pkgutil
import re
from importlib import resources

import pytest

import recstop.worker
from recstop.worker.model import vocabulary
from recstop.worker.state import keys
from recstop.worker.state.prelude import lua_prelude
from recstop.worker.state.scripts import LuaScript, source

LUA = resources.files("recstop.worker.state") / "lua"
SCRIPTS = sorted(p.name.removesuffix(".lua") for p in LUA.iterdir() if p.name.endswith(".lua"))
#: Words that are also JSON field names or message texts of the scripts, never compared as words.
NOT_WORDS = {"e"}


def _words() -> set[str]:
    words = {m.value for enum in vocabulary.LUA_TABLES.values() for m in enum}
    words |= {c.value for c in keys.Counter}
    words |= {keys.ALL_TARGET}
    return words - NOT_WORDS


def _literals(text: str) -> list[str]:
    """Every quoted string literal of a Lua text, comments left out."""
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return [single or double for single, double in re.findall(r"'([^'\n]*)'|\"([^\"\n]*)\"", code)]


@pytest.mark.parametrize("name", [*SCRIPTS])
def test_no_script_spells_a_vocabulary_word_as_a_literal(name):
    """A script writes STATE.QUEUED, never 'queued': the word is said once, in Python."""
    text = (LUA / f"{name}.lua").read_text(encoding="utf-8")
    spelled = sorted(set(_literals(text)) & _words())
    assert spelled == [], f"{name}.lua spells {spelled}: use the prelude's tables (state/prelude.py)"


def test_the_check_above_finds_a_spelled_word():
    """The literal finder sees a word in code and ignores one in a comment."""
    found = set(_literals("local s = 'queued' -- 'dead' in a comment\nlocal t = \"retry\""))
    assert found & _words() == {"queued", "retry"}


def test_prelude_defines_every_vocabulary_table_with_the_python_values():
    """Each enum becomes a Lua table whose entries are the enum's names and values."""
    prelude = lua_prelude()
    for name, enum in vocabulary.LUA_TABLES.items():
        line = next(row for row in prelude.splitlines() if row.startswith(f"local {name} = "))
        for member in enum:
            assert f'{member.name} = "{member.value}"' in line


def _declared() -> dict[str, list[str]]:
    """Every LuaScript constant in recstop.worker, by script name: where each is declared."""
    found: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(recstop.worker.__path__, "recstop.worker."):
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if isinstance(value, LuaScript) and getattr(module, attr) is value and attr.isupper():
                where = f"{info.name}.{attr}"
                if where not in found.get(value.name, []) and _home(value) == info.name:
                    found.setdefault(value.name, []).append(where)
    return found


def _home(script: LuaScript[object]) -> str:
    """The module whose parser reads the script's reply: where the script is declared."""
    return getattr(script.parse, "__module__", "")


def test_every_script_is_declared_once_with_its_parser_beside_it():
    """Each lua/*.lua but the shared one has exactly one LuaScript, in the module of its parser."""
    declared = _declared()
    assert sorted(declared) == [name for name in SCRIPTS if name != "common"]
    assert {name: len(where) for name, where in declared.items() if len(where) != 1} == {}


def _defined(text: str) -> list[str]:
    """The names a Lua text defines at its top level, in order."""
    found = re.findall(r"^local (?:function )?([\w, ]+?)\s*(?:=|\()", text, flags=re.MULTILINE)
    return [name.strip() for names in found for name in names.split(",")]


@pytest.mark.parametrize("name", [n for n in SCRIPTS if n != "common"])
def test_every_script_loads_with_the_shared_definitions_it_uses(name):
    """The text Redis runs has each prelude and common.lua name the script uses, and no other."""
    script = (LUA / f"{name}.lua").read_text()
    text = source(name)
    assert text.endswith(script)
    shared = _defined(f"{lua_prelude()}\n{(LUA / 'common.lua').read_text()}")
    kept = _defined(text.removesuffix(script))
    assert kept == [n for n in shared if n in kept]  # in their order
    code = re.sub(r"--[^\n]*", "", text)
    code = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", "''", code)
    used = set(re.findall(r"(?<![.\w])([A-Za-z_]\w*)", code))
    assert used & set(shared) <= set(kept) | set(_defined(script)), f"{name}.lua misses a definition"
