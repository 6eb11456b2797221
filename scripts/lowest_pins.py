"""Print the lowest version of each range the transport and the scripts build on: ``name==version`` lines.

``make test-lowest`` installs these as constraints over the pinned set, then runs the transport's
tests and kombu's own suite against them. The ranges themselves are pyproject.toml's (said once).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
#: The distributions whose lowest supported version is tested (the others are pinned).
RANGED = ("celery", "kombu", "redis")


def lowest_pins() -> dict[str, str]:
    """Map each of :data:`RANGED` to the lower bound of its range in pyproject.toml (``>=``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"].values()
    declared = [*project["dependencies"], *(d for ds in extras for d in ds)]
    found: dict[str, str] = {}
    for text in declared:
        requirement = Requirement(text)
        if requirement.name in RANGED:
            lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            if lows:
                found[requirement.name] = lows[0]
    missing = set(RANGED) - set(found)
    if missing:
        raise SystemExit(f"no lower bound in pyproject.toml for {sorted(missing)}")
    return found


def main() -> int:
    """Print the pins, one per line."""
    sys.stdout.writelines(f"{name}=={version}\n" for name, version in sorted(lowest_pins().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
