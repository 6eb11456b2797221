"""`make run` as a newcomer meets it: the whole stack up, the quick start works, and it all goes away."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from harness.procs import ROOT, wait_for
from recstop.worker.model.exitcodes import DEAD

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


#: Each part of the stack and what names it on its command line, in the order they must stop.
STOP_ORDER = (
    ("worker", "recstop.worker worker"),
    ("flower", "recstop.worker flower"),
    ("audit sink", "audit sink"),
    ("sandbox", "recstop.sandbox"),
    ("redis", "redis-server"),
)
#: The logs of the parts (the worker's is the terminal's, stdout.log).
LOGS = ("stdout.log", "flower.log", "audit-sink.log", "sandbox.log", "redis.log")


def _part(process: psutil.Process) -> str:
    line = " ".join(process.cmdline())
    return next(name for name, marker in STOP_ORDER if marker in line)


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _errors(text: str) -> list[str]:
    """Error-level lines and tracebacks: recstop's JSON lines (Celery's included), Flower's ``[E ...]``."""
    return [
        line
        for line in text.splitlines()
        if "Traceback" in line
        or '"level": "error"' in line
        or '"level": "critical"' in line
        or line.startswith(("[E ", "[C "))
    ]


def _ctrl_c_stops_every_part_in_order(stack: subprocess.Popen[bytes], run_dir: Path) -> None:
    """SIGINT to the stack's process group: the parts stop in STOP_ORDER within 5 s, logging no error."""
    parts = psutil.Process(stack.pid).children(recursive=True)
    named = {_part(p): p for p in parts}
    assert sorted(named) == sorted(name for name, _ in STOP_ORDER), [p.cmdline() for p in parts]
    groups = {_part(p): os.getpgid(p.pid) for p in parts}
    assert stack.pid not in groups.values(), (stack.pid, groups)  # out of the terminal's group
    # What each part logs from now on (the quick start logged its 403 at error level on purpose).
    offsets = {log: (run_dir / log).stat().st_size for log in LOGS}
    os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C
    sent = time.monotonic()
    stopped_at: dict[str, float] = {}

    def all_gone() -> bool:
        for name, process in named.items():
            if name not in stopped_at and _gone(process):
                stopped_at[name] = time.monotonic() - sent
        return len(stopped_at) == len(named)

    wait_for(all_gone, timeout_s=5, interval_s=0.01, what=lambda: f"every part to stop: {stopped_at}")
    assert stack.wait(timeout=10) == 0
    assert sorted(stopped_at, key=stopped_at.__getitem__) == [name for name, _ in STOP_ORDER], stopped_at
    print("stopped after (s):", {name: round(t, 2) for name, t in stopped_at.items()})
    for log, offset in offsets.items():
        with (run_dir / log).open("rb") as text:
            text.seek(offset)
            assert _errors(text.read().decode(errors="replace")) == [], log
    assert "ready to exit, bye bye" in (run_dir / "redis.log").read_text()  # a clean SIGTERM, last


def test_make_run_stack_stops_a_recording_and_ctrl_c_stops_every_part_in_order(tmp_path):
    """env.sh drives the quick start (a stop, a replay, the audit trail); Ctrl-C stops it, Redis last.

    Ctrl-C is SIGINT to the terminal's whole foreground process group: every part runs in a session
    of its own, so only run_stack gets it, and stops the worker, Flower, the audit sink, the sandbox
    and Redis in that order, within 5 s, with no error line or traceback in any part's log.
    """
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE}
    env["RECSTOP_RUN_DIR"] = str(tmp_path)
    with (tmp_path / "stdout.log").open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "scripts.run_stack"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the foreground process group of a terminal, whose leader it is
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
        _ctrl_c_stops_every_part_in_order(stack, tmp_path)
    finally:
        if stack.poll() is None:
            parts = parts or psutil.Process(stack.pid).children(recursive=True)
            stack.kill()
        for part in parts:
            with contextlib.suppress(psutil.NoSuchProcess):
                part.kill()
        stack.wait()
