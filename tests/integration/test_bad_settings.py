"""A bad setting stops every entry point with the one line that names it, and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import pytest
from support import ROOT

from recstop.worker.model import exitcodes

pytestmark = pytest.mark.integration

REFUSAL = "recstop: error: RECSTOP_CONCURRENCY: must be an integer > 0, got 'abc'\n"
RECSTOP = str(Path(sys.executable).parent / "recstop")
CELERY = [sys.executable, "-m", "celery", "-A", "recstop.worker"]


#: Each entry point that reads a worker's settings, as an operator runs it.
ENTRY_POINTS = {
    "celery worker": [*CELERY, "worker", "--loglevel", "INFO"],
    "celery flower": [*CELERY, "flower", "--address=127.0.0.1", "--port=0"],
    "recstop health": [RECSTOP, "health"],
}
#: A producer's own setting, refused by a producer command (a worker's setting never stops one).
PRODUCER_REFUSAL = "recstop: error: RECSTOP_REDIS_SOCKET_TIMEOUT_S: must be a finite number > 0, got 'abc'\n"


def test_a_bad_setting_is_one_line_on_stderr_and_exit_2():
    """The worker, Flower and recstop commands print only the setting's refusal and exit 2: no traceback."""
    status = [RECSTOP, "status", "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"]
    env = {**os.environ, "RECSTOP_CONCURRENCY": "abc", "RECSTOP_BROKER_URL": "redis://127.0.0.1:1/0"}
    producer_env = {**env, "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "abc"}
    started = {
        name: subprocess.Popen(argv, env=env, cwd=ROOT, stdout=PIPE, stderr=PIPE, text=True)
        for name, argv in ENTRY_POINTS.items()
    }  # at once: four interpreters starting one after the other would take four times as long
    started["recstop status"] = subprocess.Popen(
        status, env=producer_env, cwd=ROOT, stdout=PIPE, stderr=PIPE, text=True
    )
    done = {name: (*proc.communicate(timeout=60), proc.returncode) for name, proc in started.items()}
    assert {name: (code, err, out) for name, (out, err, code) in done.items()} == {
        **dict.fromkeys(ENTRY_POINTS, (exitcodes.USAGE, REFUSAL, "")),
        "recstop status": (exitcodes.USAGE, PRODUCER_REFUSAL, ""),
    }
