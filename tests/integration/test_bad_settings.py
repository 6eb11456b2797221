"""A bad setting stops every entry point with the one line that names it, and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from recstop.producers import exitcodes

pytestmark = pytest.mark.integration

REFUSAL = "recstop: error: RECSTOP_CONCURRENCY: must be an integer > 0, got 'abc'\n"
RECSTOP = str(Path(sys.executable).parent / "recstop")
CELERY = [sys.executable, "-m", "celery", "-A", "recstop.worker"]


@pytest.mark.parametrize(
    "argv",
    [
        [*CELERY, "worker", "--loglevel", "INFO"],
        [*CELERY, "flower", "--address=127.0.0.1", "--port=0"],
        [RECSTOP, "health"],
        [RECSTOP, "status", "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"],
    ],
    ids=["celery-worker", "celery-flower", "recstop-health", "recstop-status"],
)
def test_a_bad_setting_is_one_line_on_stderr_and_exit_2(argv):
    """The worker, Flower and recstop commands print only the setting's refusal and exit 2: no traceback."""
    env = {**os.environ, "RECSTOP_CONCURRENCY": "abc", "RECSTOP_BROKER_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (exitcodes.USAGE, REFUSAL, "")
