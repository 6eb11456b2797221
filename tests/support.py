"""Helpers shared by the tests: the harness re-exported, and the waits and probes tests repeat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.inprocess import InProcessWorker, LogCapture
from harness.poison import lpush_raw_message
from harness.procs import (
    REDIS_PASSWORDS,
    ROOT,
    RedisServer,
    WorkerProcess,
    free_port,
    publish_raw,
    redis_server_binary,
    terminate,
    wait_for,
    with_role,
)
from recstop.worker.state import keys
from recstop.worker.state.acl import COMMAND_ROLES, Role
from recstop.worker.state.inflight import inflight_messages

__all__ = [
    "REDIS_PASSWORDS",
    "ROOT",
    "InProcessWorker",
    "LogCapture",
    "RedisServer",
    "WorkerProcess",
    "as_role",
    "audit_event",
    "audit_life",
    "cli",
    "deletes",
    "final",
    "free_port",
    "in_flight",
    "lpush_raw_message",
    "publish_raw",
    "redis_server_binary",
    "stored_ids",
    "terminate",
    "wait_for",
    "with_role",
    "xadd_events",
]


def in_flight(client: Any) -> int:
    """How many messages some consumer has fetched and not acknowledged."""
    return len(inflight_messages(client))


def final(producer: Any, call_uuid: str, url: str | None = None, timeout_s: float = 20.0) -> Any:
    """Wait until the stop is no longer pending and return its status record."""

    def done() -> Any:
        record = producer.status(call_uuid, url)
        return record if record and not record.state.pending else None

    return wait_for(done, timeout_s=timeout_s, what=f"stop of {call_uuid} to finish")


def deletes(sandbox_client: Any, call_uuid: str) -> list[dict[str, Any]]:
    """The DELETE requests the sandbox received for a call."""
    return [r for r in sandbox_client.requests(call_uuid=call_uuid) if r["method"] == "DELETE"]


def as_role(env: Mapping[str, str], role: Role) -> dict[str, str]:
    """``env`` with ``RECSTOP_BROKER_URL`` as ``role``'s user (a URL of no harness user stays)."""
    url = env.get("RECSTOP_BROKER_URL")
    return dict(env) if url is None else {**env, "RECSTOP_BROKER_URL": with_role(url, role)}


def cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``recstop`` console script as a process, as the Redis user of its command.

    ``recstop health`` runs as ``monitor``, ``recstop enqueue`` as ``producer`` ... (``acl.COMMAND_ROLES``).
    """
    exe = str(Path(sys.executable).parent / "recstop")
    role = COMMAND_ROLES.get(args[0]) if args else None
    run_env = as_role(env, role) if role is not None else dict(env)
    return subprocess.run(  # noqa: PLW1510 - the exit code is what the tests assert
        [exe, *args], env={**os.environ, **run_env}, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def audit_event(call_uuid: str, event: str, **fields: Any) -> dict[str, Any]:
    """One audit event as the producers' scripts append it (docs/audit.md: the contract)."""
    base = {"event": event, "at": round(time.time(), 3), "call_uuid": call_uuid, "target": "all"}
    return {**base, "task_id": fields.pop("task_id", f"task-{call_uuid[:8]}"), "origin": "producer", **fields}


def audit_life(call_uuid: str | None = None) -> list[dict[str, Any]]:
    """The five events of a stop that retried once and succeeded, oldest first."""
    call = call_uuid or str(uuid.uuid4())
    start = round(time.time(), 3)
    return [
        audit_event(call, "accepted", at=start, request_id="req-1", auth_id="MA_TESTACCT01", urgent=False),
        audit_event(call, "attempt", at=start + 0.1, attempt=1, http_status=503, error="Service Unavailable"),
        audit_event(call, "retry_scheduled", at=start + 0.2, attempt=1, retry_in_s=0.5, due_at=start + 0.7),
        audit_event(call, "attempt", at=start + 0.8, attempt=2, http_status=204, duration_ms=12.5),
        audit_event(call, "stopped", at=start + 0.9, attempt=2, http_status=204, origin="celery"),
    ]


def xadd_events(client: Any, events: Iterable[Mapping[str, Any]]) -> list[str]:
    """XADD each event to the audit stream as the scripts do (field ``e``); their stream ids."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(keys.AUDIT_STREAM, {"e": json.dumps(event)})
    return [i.decode() if isinstance(i, bytes) else i for i in pipe.execute()]


def stored_ids(engine: Any) -> list[str]:
    """The stream ids of every row of the audit table, in chain order (duplicates would show)."""
    from sqlalchemy import select  # noqa: PLC0415

    from recstop.worker.audit.schema import events  # noqa: PLC0415

    with engine.connect() as connection:
        return list(connection.scalars(select(events.c.stream_id).order_by(events.c.seq)))


def metrics_process(url: str, port: int, *, output: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """``recstop metrics`` on 127.0.0.1:``port`` as a real process, reading Redis as the user of ``url``."""
    env = {**os.environ, "RECSTOP_BROKER_URL": url}
    env.pop("RECSTOP_HEALTH_MAX_HEARTBEAT_AGE_S", None)
    argv = [
        sys.executable,
        "-m",
        "recstop.producers.cli",
        "metrics",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=output)
