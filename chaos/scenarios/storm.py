"""Scenario 6: the same stops enqueued many times from several processes at once, then redelivered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from celery import Celery

from chaos.inflight import wait_drained
from chaos.load import new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.storm_producer import READY, request_id
from chaos.verify import deletes_by_call, reconcile
from harness.procs import ROOT
from recstop.worker.state.acl import Role
from recstop.worker.state.keys import QUEUE, TASK_NAME


def _redeliver(broker_url: str, messages: list[tuple[str, str]]) -> None:
    """Publish each (task id, call) again as a raw message, and once more under a new task id."""
    app = Celery("storm-redeliver", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)
    try:
        for task_id, call_uuid in messages:
            kwargs = {"call_uuid": call_uuid, "request_id": request_id(call_uuid)}
            app.send_task(TASK_NAME, kwargs=kwargs, task_id=task_id, queue=QUEUE)
            app.send_task(TASK_NAME, kwargs=kwargs, task_id=str(uuid.uuid4()), queue=QUEUE)
    finally:
        app.close()


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """``storm_processes`` processes enqueue every call ``storm_repeats`` times at the same moment."""
    started = time.monotonic()
    with Stack("storm", keep_dir=keep_dir) as stack:
        stack.sandbox.client.set_faults([], latency_ms=20)
        stack.start_workers(2)
        calls = new_calls(profile.storm_keys)
        calls_file = stack.directory / "calls.txt"
        calls_file.write_text("\n".join(calls), encoding="utf-8")
        argv = [sys.executable, "-m", "chaos.storm_producer", str(calls_file), str(profile.storm_repeats)]
        procs = [
            subprocess.Popen(
                [*argv, str(i)],
                cwd=ROOT,
                env={**os.environ, **stack.env_as(Role.PRODUCER)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(profile.storm_processes)
        ]
        for proc in procs:  # every process connected: then all start at once
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != READY:
                raise RuntimeError(f"storm producer said {line!r}: {proc.communicate(timeout=10)[1][-2000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [p.communicate(timeout=120) for p in procs]
        reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs if out.strip()]
        producer = stack.producer()
        tally = reconcile(producer, stack.sandbox.client, calls, timeout_s=120)
        first = {c: r.task_id for c, r in tally.records.items()}
        _redeliver(stack.url(Role.PRODUCER), [(t, c) for c, t in first.items()])
        redis = stack.redis.client()
        left = wait_drained(redis, timeout_s=60)
        redis.close()
        tally = reconcile(producer, stack.sandbox.client, calls, timeout_s=30)
        seen = deletes_by_call(stack.sandbox.client)
    per_call = {c: len(seen.get(c, [])) for c in calls}
    ids_per_call: dict[str, set[str]] = {}
    for report in reports:
        for call_uuid, ids in report["task_ids"].items():
            ids_per_call.setdefault(call_uuid, set()).update(ids)
    enqueues = sum(r["sent"] for r in reports)
    result = ScenarioResult(
        f"duplicate storm {profile.storm_keys}x{profile.storm_repeats}x{profile.storm_processes}", tally
    )
    result.figures.update(
        enqueues=enqueues,
        deduplicated_at_enqueue=sum(r["deduplicated"] for r in reports),
        redelivered_messages=2 * len(first),
        deletes=sum(per_call.values()),
    )
    wanted = profile.storm_keys * profile.storm_repeats * profile.storm_processes
    result.check("every process enqueued everything", enqueues == wanted, f"{enqueues}/{wanted}")
    result.check("the redelivered messages were consumed", left == 0, f"{left} left in lanes or in flight")
    result.check(
        "one task id per stop across all processes",
        all(len(ids_per_call.get(c, ())) == 1 for c in calls),
        f"{sum(len(v) for v in ids_per_call.values())} ids for {len(calls)} stops",
    )
    result.check(
        "exactly one DELETE per key",
        all(n == 1 for n in per_call.values()),
        f"{sum(per_call.values())} DELETEs for {len(calls)} keys",
    )
    result.elapsed_s = time.monotonic() - started
    return result
