"""Scenario 8: the property tests (hypothesis) of validation, decoder and classifier, at chaos scale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.verify import Tally
from harness.procs import ROOT

PROPERTIES = "tests/unit/test_properties.py"


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Run the property tests with the profile's hypothesis settings; every property must hold."""
    del keep_dir
    started = time.monotonic()
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        PROPERTIES,
        "--hypothesis-show-statistics",
    ]
    env = {**os.environ, "HYPOTHESIS_PROFILE": profile.fuzz_profile}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = done.stdout + done.stderr
    passed = _count(r"(\d+) passed", out)
    failed = _count(r"(\d+) failed", out) + _count(r"(\d+) error", out)
    examples = sum(int(n) for n in re.findall(r"(\d+) passing, \d+ failing", out))
    result = ScenarioResult(f"fuzz: properties ({profile.fuzz_profile})", Tally())
    result.figures.update(properties_passed=passed, properties_failed=failed, examples=examples)
    result.check(
        "no input made validation, decoder or classifier raise an untyped error",
        done.returncode == 0 and passed > 0 and failed == 0,
        f"{passed} properties, {examples} examples, {failed} failed",
    )
    if done.returncode != 0:
        result.figures["output_tail"] = out[-2000:]
    result.elapsed_s = time.monotonic() - started
    return result


def _count(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else 0
