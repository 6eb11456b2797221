"""`make run`: the whole local stack in one terminal; Ctrl-C stops every part cleanly.

Starts, as needed: a private redis-server (when RECSTOP_BROKER_URL is unset), the Vobiz sandbox
(when no Vobiz credentials are set), one recstop worker, Flower and the audit sink (SQLite). Writes
`.run/env.sh` so another terminal can point the `recstop` CLI at this stack. Every part runs in a
session of its own, so the terminal's Ctrl-C (SIGINT to its foreground process group) reaches only
this process, which stops the worker, Flower, the audit sink, the sandbox and Redis, in that order.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Final

from harness.procs import ROOT, wait_for
from harness.stack import RedisOptions, SandboxOptions, Stack
from recstop.worker.config.secrets import mask_url
from recstop.worker.state.acl import Role

RUN: Final = ROOT / ".run"  # RECSTOP_RUN_DIR overrides it (tests run the stack in a temp dir)
DEMO_AUTH_ID: Final = "MA_DEMO0001"
DEMO_TOKEN: Final = "demo-token"  # noqa: S105 - the sandbox's demo account, not a real credential
REDIS: Final = RedisOptions(port=6390, args=("--maxmemory-policy", "noeviction"))
SANDBOX: Final = SandboxOptions({DEMO_AUTH_ID: DEMO_TOKEN}, port=8765)
FLOWER_PORT: Final = 5555
WATCH_S: Final = 0.5


def real_credentials(env: Mapping[str, str]) -> bool:
    """Whether the environment names a Vobiz account with a token (or a credentials file)."""
    return bool(
        env.get("VOBIZ_AUTH_ID") and (env.get("VOBIZ_AUTH_TOKEN") or env.get("RECSTOP_CREDENTIALS_FILE"))
    )


def run_dir(env: Mapping[str, str]) -> Path:
    """Where the stack keeps its data, logs and ``env.sh``: ``.run/`` unless RECSTOP_RUN_DIR says."""
    return Path(env["RECSTOP_RUN_DIR"]) if env.get("RECSTOP_RUN_DIR") else RUN


def build(env: Mapping[str, str]) -> Stack:
    """The stack in .run/: Redis unless RECSTOP_BROKER_URL is set, the sandbox unless credentials are."""
    return Stack(
        "run",
        directory=run_dir(env),
        redis=env.get("RECSTOP_BROKER_URL") or REDIS,
        sandbox=None if real_credentials(env) else SANDBOX,
        # An audit database of your own (PostgreSQL) instead of the stack's SQLite file.
        env={"RECSTOP_AUDIT_DB": env["RECSTOP_AUDIT_DB"]} if env.get("RECSTOP_AUDIT_DB") else None,
    )


def describe(stack: Stack, env: Mapping[str, str]) -> list[str]:
    """The banner lines for Redis and the API."""
    if env.get("RECSTOP_BROKER_URL"):
        lines = [f"redis      {mask_url(stack.broker_url)}   (from RECSTOP_BROKER_URL)"]
    else:
        lines = [f"redis      {mask_url(stack.broker_url)}   (private, AOF in {run_dir(env)}/redis)"]
    if real_credentials(env):
        return [
            *lines,
            f"vobiz      {env.get('VOBIZ_API_BASE', 'https://api.vobiz.ai/api/v1')}   (real credentials)",
        ]
    base_url = stack.sandbox.base_url
    return [
        *lines,
        f"sandbox    {stack.sandbox.api_base}   (demo account {DEMO_AUTH_ID}; every call is live)",
        f"           requests it received: curl {base_url}/_sandbox/requests",
    ]


def serve(stack: Stack, env: Mapping[str, str]) -> list[str]:
    """Start the worker and Flower, print the banner, and return the parts that exited."""
    stack.start()
    lines = describe(stack, env)
    stack.start_worker("recstop", wait=False, foreground=True)
    lines.append("worker     celery -A recstop.worker worker   (logs below)")
    flower = stack.start_flower(port=FLOWER_PORT)
    lines.append(f"flower     {flower.base_url}   (log in {run_dir(env)}/flower.log)")
    stack.start_audit_sink("--retention")  # SQLite, one user: the sink prunes (docs/audit.md)
    audit_db = stack.env["RECSTOP_AUDIT_DB"]
    lines.append(
        f"audit      recstop audit sink -> {mask_url(audit_db)}   (log in {run_dir(env)}/audit-sink.log)"
    )
    exports = {
        # The quick start's commands are a producer's (enqueue, status, dlq): its Redis user.
        "RECSTOP_BROKER_URL": stack.url(Role.PRODUCER),
        "VOBIZ_AUTH_ID": {**env, **stack.env}["VOBIZ_AUTH_ID"],
        "RECSTOP_AUDIT_DB": audit_db,  # `recstop audit show` reads the stack's trail
    }
    if not real_credentials(env):
        exports["VOBIZ_API_BASE"] = stack.sandbox.api_base  # `recstop sandbox call` finds the sandbox by it
    (run_dir(env) / "env.sh").write_text(
        "".join(f"export {k}={v}\n" for k, v in exports.items()), encoding="utf-8"
    )
    print("\nrecstop local stack\n" + "\n".join("  " + line for line in lines))
    print(f"\nIn another terminal:\n  source .venv/bin/activate && source {run_dir(env)}/env.sh")
    print("  recstop enqueue $(python -c 'import uuid; print(uuid.uuid4())')   # then: recstop status <uuid>")
    if not real_credentials(env):
        print("  recstop sandbox call --recordings 2   # a call with two recordings, to stop one by --url")
    print("\nCtrl-C stops everything.\n", flush=True)
    return wait_for(stack.exited, timeout_s=math.inf, interval_s=WATCH_S, what="a part of the stack to exit")


def on_signal(_signum: int, _frame: FrameType | None) -> None:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) stop the stack and everything it started."""
    raise KeyboardInterrupt


def main() -> int:
    """Start the stack and wait for Ctrl-C (exit 0) or for a part to exit (exit 1)."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started from a shell that ignores SIGINT
    signal.signal(signal.SIGHUP, on_signal)  # every part runs in a session of its own (harness.stack)
    env = dict(os.environ)
    stack = build(env)
    try:
        dead = serve(stack, env)
        print(f"stopping: {', '.join(dead)} exited")
        code = 1
    except KeyboardInterrupt:
        print("\nstopping the stack ...")
        code = 0
    except AssertionError as exc:  # a part did not start (harness waits fail with AssertionError)
        print(f"could not start the stack: {exc}\nlogs are in {run_dir(env)}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping is bounded (SIGKILL after a timeout)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        stack.stop()
    print("stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
