# ruff: noqa: INP001 - a standalone script run by path, not part of a package
"""Write the pinned sets: deploy/requirements.txt (runtime) and requirements-dev.txt (tests and lint).

Run it with the virtualenv the tests passed in: ``.venv/bin/python deploy/freeze_requirements.py``.
It walks recstop's dependencies (every extra but ``dev``, and the extras they name, such as
``celery[redis]``) through the installed distributions' metadata, for Linux and this Python, and
pins each one with ``==`` to the installed version: that is deploy/requirements.txt, what an image
installs. The ``dev`` extra's closure, less the runtime pins, is requirements-dev.txt. ``make
install`` and CI install with both as constraints, so a new release on PyPI changes nothing until
someone upgrades on purpose and regenerates. ``tests/unit/test_deploy.py`` fails when a file and its
closure disagree on names.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "recstop"
DEV_EXTRA = "dev"
OUT = Path(__file__).resolve().parent / "requirements.txt"
DEV_OUT = Path(__file__).resolve().parents[1] / "requirements-dev.txt"
HEADER = """\
# recstop's runtime dependencies, pinned (==) to the versions the test suite ran with.
# Generated: .venv/bin/python deploy/freeze_requirements.py  (after `make install`)
# Regenerate after any change to the dependencies in pyproject.toml or an upgrade in .venv;
# tests/unit/test_deploy.py checks that every runtime dependency is pinned here, and nothing else.
"""
DEV_HEADER = """\
# recstop's test and lint toolchain (the `dev` extra), pinned (==); the runtime pins are in
# deploy/requirements.txt. `make install` and CI install with both files as constraints.
# Generated: .venv/bin/python deploy/freeze_requirements.py  (after `make install`)
"""


def runtime_extras(project: str = PROJECT) -> frozenset[str]:
    """The extras of ``project`` a deployment installs: all of them but ``dev``."""
    provided = metadata.distribution(project).metadata.get_all("Provides-Extra") or []
    return frozenset(extra for extra in provided if extra != DEV_EXTRA)


def closure(project: str, extras: frozenset[str]) -> dict[str, tuple[str, str]]:
    """Every distribution ``project[extras]`` needs: canonical name -> (name, installed version)."""
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

    walk(project, extras)
    found.pop(canonicalize_name(project))
    return found


def runtime_closure(project: str = PROJECT) -> dict[str, tuple[str, str]]:
    """Every distribution a deployment of ``project`` runs with."""
    return closure(project, runtime_extras(project))


def dev_closure(project: str = PROJECT) -> dict[str, tuple[str, str]]:
    """What the ``dev`` extra adds to the runtime closure: the test and lint toolchain."""
    runtime = runtime_closure(project)
    dev = closure(project, runtime_extras(project) | {DEV_EXTRA})
    return {key: pin for key, pin in dev.items() if key not in runtime}


def render(pins: dict[str, tuple[str, str]], header: str) -> str:
    """The text of a pinned requirements file."""
    ordered = sorted(pins.values(), key=lambda item: canonicalize_name(item[0]))
    return header + "".join(f"{name}=={version}\n" for name, version in ordered)


def main() -> int:
    """Write both files and say how many pins each holds."""
    for path, pins, header in ((OUT, runtime_closure(), HEADER), (DEV_OUT, dev_closure(), DEV_HEADER)):
        path.write_text(render(pins, header), encoding="utf-8")
        sys.stdout.write(f"wrote {path} ({len(pins)} pins)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
