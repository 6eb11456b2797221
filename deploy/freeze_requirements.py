# ruff: noqa: INP001 - a standalone script run by path, not part of a package
"""Write deploy/requirements.txt: recstop's runtime dependencies, pinned to the versions installed here.

Run it with the virtualenv the tests passed in: ``.venv/bin/python deploy/freeze_requirements.py``.
It walks recstop's ``[project] dependencies`` (extras such as ``celery[redis]`` included) through the
installed distributions' metadata, for Linux and this Python, and pins each one with ``==`` to the
version ``pip freeze`` reports. Dev tools (pytest, ruff, mypy, ...) are not runtime dependencies and
never appear. ``tests/unit/test_deploy.py`` fails when the file and this closure disagree on names.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "recstop"
OUT = Path(__file__).resolve().parent / "requirements.txt"
HEADER = """\
# recstop's runtime dependencies, pinned (==) to the versions the test suite ran with.
# Generated: .venv/bin/python deploy/freeze_requirements.py  (after `pip install -e '.[dev]'`)
# Regenerate after any change to [project] dependencies in pyproject.toml or an upgrade in .venv;
# tests/unit/test_deploy.py checks that every runtime dependency is pinned here, and nothing else.
"""


def runtime_closure(project: str = PROJECT) -> dict[str, tuple[str, str]]:
    """Every distribution ``project`` needs at run time: canonical name -> (name, installed version)."""
    found: dict[str, tuple[str, str]] = {}
    visited: set[tuple[str, frozenset[str]]] = set()

    def walk(name: str, extras: frozenset[str]) -> None:
        key = canonicalize_name(name)
        if (key, extras) in visited:
            return
        visited.add((key, extras))
        dist = metadata.distribution(name)
        found[key] = (dist.metadata["Name"], dist.version)
        environments = [{"extra": extra} for extra in sorted(extras)] or [{"extra": ""}]
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                walk(requirement.name, frozenset(requirement.extras))

    walk(project, frozenset())
    found.pop(canonicalize_name(project))
    return found


def render() -> str:
    """The text of requirements.txt for what is installed in this interpreter's environment."""
    pins = sorted(runtime_closure().values(), key=lambda item: canonicalize_name(item[0]))
    return HEADER + "".join(f"{name}=={version}\n" for name, version in pins)


def main() -> int:
    """Write the file and say how many pins it holds."""
    text = render()
    OUT.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {OUT} ({text.count(chr(10)) - HEADER.count(chr(10))} pins)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
