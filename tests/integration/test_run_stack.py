"""`make run` as a newcomer meets it: the whole stack up, the quick start works, and it all goes away."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from harness.procs import ROOT, wait_for
from recstop.producers.exitcodes import DEAD

pytestmark = pytest.mark.timeout(180)

#: What the stack must not inherit: it would use them instead of its own Redis and sandbox.
OUTSIDE = (
    "RECSTOP_BROKER_URL",
    "VOBIZ_AUTH_ID",
    "VOBIZ_AUTH_TOKEN",
    "RECSTOP_CREDENTIALS_FILE",
    "VOBIZ_API_BASE",
)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recstop.producers.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _exports(path: Path) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if line)
    return dict(pairs)


def test_make_run_stack_stops_a_recording_and_a_closed_terminal_stops_every_part(tmp_path):
    """env.sh drives the quick start (a stop, a replayed dead letter, the audit trail); SIGHUP ends it."""
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE}
    env["RECSTOP_RUN_DIR"] = str(tmp_path)
    with (tmp_path / "stdout.log").open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "scripts.run_stack"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    parts: list[psutil.Process] = []
    try:
        wait_for(
            lambda: (
                stack.poll() is None and "Ctrl-C stops everything" in (tmp_path / "stdout.log").read_text()
            ),
            timeout_s=90,
            interval_s=0.2,
            what="make run's banner",
        )
        cli_env = {**env, **_exports(tmp_path / "env.sh")}
        made = _cli(cli_env, "sandbox", "call", "--recordings", "2", "--json")
        assert made.returncode == 0, made.stderr
        call = json.loads(made.stdout)
        first = call["recordings"][0]
        queued = _cli(cli_env, "enqueue", call["call_uuid"], "--url", first)
        assert queued.returncode == 0, queued.stderr
        wait_for(
            lambda: _cli(cli_env, "status", call["call_uuid"], "--url", first).returncode == 0,
            timeout_s=60,
            interval_s=0.3,
            what="the stop to be done",
        )
        shown = _cli(cli_env, "status", call["call_uuid"], "--url", first, "--json")
        assert json.loads(shown.stdout)["last_http_status"] == 204
        # The quick start ends with the finished recording, as Vobiz confirms it: its URL and end.
        wait_for(
            lambda: "recording         " in _cli(cli_env, "status", call["call_uuid"], "--url", first).stdout,
            timeout_s=30,
            interval_s=0.3,
            what="the recording's confirmation",
        )
        finished = _cli(cli_env, "status", call["call_uuid"], "--url", first).stdout
        assert "confirmation      confirmed" in finished
        assert f"recording         {first} ended " in finished
        # A permanent failure is dead-lettered, then replayed to success.
        sandbox = cli_env["VOBIZ_API_BASE"].removesuffix("/api/v1")
        fault = {"rules": [{"kind": "status", "status": 403, "times": 1}]}
        requests.put(f"{sandbox}/_sandbox/faults", json=fault, timeout=10).raise_for_status()
        second = str(uuid.uuid4())
        assert _cli(cli_env, "enqueue", second).returncode == 0
        wait_for(lambda: _cli(cli_env, "status", second).returncode == DEAD, timeout_s=60, what="a dead stop")
        assert "http_403" in _cli(cli_env, "dlq", "list").stdout
        assert _cli(cli_env, "dlq", "replay", "--all").returncode == 0
        wait_for(lambda: _cli(cli_env, "status", second).returncode == 0, timeout_s=60, what="the replay")
        # The stack's audit sink wrote the stop's whole life to its SQLite trail.
        life = ["accepted", "attempt", "dead", "replayed", "attempt", "stopped", "recording_confirmed"]

        def trail() -> list[str]:
            shown = _cli(cli_env, "audit", "show", second, "--json")
            return [e["event"] for e in json.loads(shown.stdout)] if shown.returncode == 0 else []

        wait_for(lambda: trail() == life, timeout_s=30, interval_s=0.5, what=lambda: f"audit trail {trail()}")
        assert _cli(cli_env, "audit", "verify").returncode == 0
        parts = psutil.Process(stack.pid).children(recursive=True)
        assert len(parts) >= 5, [p.cmdline() for p in parts]  # redis-server, sandbox, worker, Flower, sink
        stack.send_signal(signal.SIGHUP)
        assert stack.wait(timeout=60) == 0
        wait_for(
            lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in parts),
            timeout_s=30,
            interval_s=0.2,
            what="every part of the stack to exit",
        )
    finally:
        if stack.poll() is None:
            parts = parts or psutil.Process(stack.pid).children(recursive=True)
            stack.kill()
        for part in parts:
            with contextlib.suppress(psutil.NoSuchProcess):
                part.kill()
        stack.wait()
