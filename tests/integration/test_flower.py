"""Flower for real: a Flower process with basic auth watches real stops through its HTTP API."""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest
import requests
from conftest import AUTH_ID, TOKEN
from prometheus_client.parser import text_string_to_metric_families
from support import deletes, final, publish_raw, wait_for

from harness.browser import Table, chromium, render
from harness.flower import FlowerProcess
from harness.procs import ROOT
from recstop.worker.state.acl import Role

pytestmark = pytest.mark.integration

USER = "ops"
PASSWORD = "Flower-pw-3b9d2c71e0"
MAX_TASKS = 5000
#: Where the screenshots of Flower's page are kept (`make test` leaves them for a look).
SCREENSHOTS = ROOT / ".run" / "screenshots"


@pytest.fixture
def flower(env, tmp_path):
    """Flower with basic auth on a free port, watching this test's Redis, started."""
    proc = FlowerProcess(env, tmp_path / "flower.log", basic_auth=(USER, PASSWORD), max_tasks=MAX_TASKS)
    proc.start()
    yield proc
    proc.stop()


def api(flower: FlowerProcess, path: str):
    """GET a Flower API path with basic auth and decode its JSON."""
    return json.loads(flower.get(path))


def settled(flower: FlowerProcess, task_ids: set[str]):
    """Flower's task list once every task in ``task_ids`` is listed as SUCCESS, else None."""
    tasks = api(flower, "/api/tasks")
    done = {tid for tid, info in tasks.items() if info.get("state") == "SUCCESS"}
    return tasks if task_ids <= done else None


def states_reached(flower: FlowerProcess, expected: dict[str, str]):
    """Flower's task list once every task id in ``expected`` shows its expected state, else None."""
    tasks = api(flower, "/api/tasks")
    reached = all(tasks.get(tid, {}).get("state") == state for tid, state in expected.items())
    return tasks if reached else None


def shown(flower: FlowerProcess, expected: dict[str, str]) -> dict[str, tuple[str, str | None, str | None]]:
    """Task id → (expected state, the state Flower shows): for a failure's message."""
    tasks = api(flower, "/api/tasks")
    return {
        tid: (want, tasks.get(tid, {}).get("state"), tasks.get(tid, {}).get("exception"))
        for tid, want in expected.items()
    }


def test_flower_shows_what_happened_to_every_stop(
    producer, start_worker_process, sandbox_client, call, flower, redis_server
):
    """Flower states: stopped SUCCESS, dead FAILURE, waiting RETRY, scheduled PENDING with its ETA, ...

    ... cancelled REVOKED, a duplicate message SKIPPED; a replayed dead stop ends SUCCESS; the task
    list shows the call. Then the page itself, in Chromium at 1600 px, before and after Flower
    restarts: the call, the state, a one-line outcome and when it is due (test_flower_page_...).
    """
    start_worker_process("flw")
    workers = wait_for(
        lambda: (
            (found := api(flower, "/api/workers?refresh=1"))
            and any(n.startswith("flw@") for n in found)
            and found
        ),
        timeout_s=30,
        what="flower to list the worker",
    )
    [name] = [n for n in workers if n.startswith("flw@")]
    assert workers[name]["stats"]["pool"]["max-concurrency"] == 8
    assert "recstop.stop_recording" in workers[name]["registered"]

    live, unknown, flaky, waiting, later, dropped = call(), str(uuid.uuid4()), call(), call(), call(), call()
    sandbox_client.set_faults(
        [
            {"kind": "status", "status": 503, "call_uuid": flaky, "times": 2},  # stopped at attempt 3
            {"kind": "status", "status": 503, "call_uuid": waiting, "retry_after": "600"},  # waits 10 min
        ]
    )
    handles = {c: producer.stop_recording(c, request_id=f"req-{c}") for c in (live, unknown, flaky, waiting)}
    handles[later] = producer.stop_recording(later, delay=600)
    handles[dropped] = producer.stop_recording(dropped, delay=600)
    assert producer.cancel(dropped).cancelled
    assert final(producer, live).state == "stopped"
    assert final(producer, unknown).state == "already_stopped"
    assert final(producer, flaky).attempts == 3
    wait_for(lambda: producer.status(waiting).state == "retrying", what="the waiting stop's first attempt")
    # Another service's message for the same request, after it stopped: consumed, no DELETE.
    duplicate = publish_raw(
        redis_server.role_url(Role.PRODUCER), {"call_uuid": live, "request_id": f"req-{live}"}
    )

    sandbox_client.update_account(AUTH_ID, active=False)  # 403: dead-lettered at once
    doomed = call()
    handles[doomed] = producer.stop_recording(doomed)
    assert final(producer, doomed).state == "dead"

    expected = {
        handles[live].task_id: "SUCCESS",
        handles[unknown].task_id: "SUCCESS",
        handles[flaky].task_id: "SUCCESS",
        handles[waiting].task_id: "RETRY",
        handles[later].task_id: "PENDING",
        handles[dropped].task_id: "REVOKED",
        handles[doomed].task_id: "FAILURE",
        duplicate: "SKIPPED",
    }
    tasks = wait_for(
        lambda: states_reached(flower, expected),
        timeout_s=30,
        what=lambda: f"flower to show every state: {shown(flower, expected)}",
    )
    for call_uuid, handle in handles.items():
        assert call_uuid in tasks[handle.task_id]["kwargs"]  # the task list shows the call
    # The result a worker's task-succeeded event carries: one line, not a dict cut short.
    assert tasks[handles[live].task_id]["result"] == "stopped 204, attempt 1"
    assert tasks[handles[unknown].task_id]["result"] == "already stopped 404, attempt 1"
    assert tasks[handles[flaky].task_id]["result"] == "stopped 204, attempt 3"
    assert "next attempt at" in tasks[handles[waiting].task_id]["exception"]
    assert "HTTP 503" in tasks[handles[waiting].task_id]["exception"]
    assert tasks[handles[later].task_id]["eta"]  # scheduled: visible at once, with when it runs
    failed = tasks[handles[doomed].task_id]
    assert "StopDead" in failed["exception"]
    assert "http_403" in failed["exception"]
    assert TOKEN not in json.dumps(tasks)
    info = api(flower, f"/api/task/info/{handles[live].task_id}")
    assert (info["state"], info["worker"]) == ("SUCCESS", name)
    assert info["received"] <= info["started"] <= info["succeeded"]
    assert len(deletes(sandbox_client, live)) == 1
    # Finding a call's stops: the task list's search (over the kwargs) by its call_uuid.
    found = api(flower, f"/api/tasks?search={live}")
    assert set(found) == {handles[live].task_id, duplicate}

    wait_for(lambda: _failed_counted(flower), what="flower_events_total{type=task-failed} to count the dead")

    sandbox_client.update_account(AUTH_ID, active=True)
    [replayed] = producer.replay([producer.status(doomed).dlq_id])
    assert final(producer, doomed).state == "stopped"
    wait_for(
        lambda: states_reached(flower, {replayed.task_id: "SUCCESS"}), what="the replayed stop to succeed"
    )
    assert doomed in api(flower, "/api/tasks")[replayed.task_id]["kwargs"]
    assert api(flower, f"/api/task/info/{replayed.task_id}")["parent_id"] == handles[doomed].task_id

    calls = {handle.task_id: c for c, handle in handles.items()} | {duplicate: live, replayed.task_id: doomed}
    ids = {c: handles[c].task_id for c in (doomed, flaky, waiting, later)}
    _page_reads_at_a_glance(
        flower,
        calls,
        dead=ids[doomed],
        replay=replayed.task_id,
        flaky=ids[flaky],
        waiting=ids[waiting],
        later=ids[later],
    )


def _failed_counted(flower: FlowerProcess) -> bool:
    """Whether Flower's /metrics counts a task-failed event of recstop's task."""
    text = flower.request("/metrics", auth=False).text
    return any(
        s.name == "flower_events_total"
        and s.labels.get("type") == "task-failed"
        and s.labels.get("task") == "recstop.stop_recording"
        and s.value >= 1
        for family in text_string_to_metric_families(text)
        for s in family.samples
    )


def _page_reads_at_a_glance(flower, calls, *, dead, replay, flaky, waiting, later):
    """Chromium at 1600 px: call, state, outcome, due in the first columns; again after a restart."""
    rows = _task_list(flower, "flower-tasks")
    assert set(calls) <= set(rows)
    for task_id, call_uuid in calls.items():
        assert rows[task_id]["kwargs"] == call_uuid, rows[task_id]  # the whole call, nothing else
    outcome = {tid: (row["state"], row["result"], row["eta"]) for tid, row in rows.items()}
    due = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    assert outcome[dead] == ("FAILURE", "dead http_403: The account is not active.", "")
    assert outcome[replay] == ("SUCCESS", f"stopped 204, attempt 1 · replays {dead[:8]}", "")
    assert outcome[flaky] == ("SUCCESS", "stopped 204, attempt 3", "")  # no retry text left beside it
    state, result, eta = outcome[waiting]
    assert (state, result) == ("RETRY", "attempt 1: HTTP 503: Service Unavailable")
    assert due.fullmatch(eta), eta
    state, result, eta = outcome[later]
    assert (state, result) == ("PENDING", "scheduled")
    assert due.fullmatch(eta), eta
    assert "cancelled" in {result for _, result, _ in outcome.values()}
    assert "SKIPPED" in {state for state, _, _ in outcome.values()}

    # Flower restarts: the stops still waiting in Redis are listed again, with when they are due.
    flower.stop()
    flower.start()
    back = {waiting: "RETRY", later: "PENDING"}
    wait_for(lambda: states_reached(flower, back), timeout_s=20, what="the waiting stops to be back")
    after = _task_list(flower, "flower-tasks-after-restart")
    assert {tid: (row["state"], row["result"]) for tid, row in after.items() if tid in back} == {
        waiting: ("RETRY", "attempt 1: HTTP 503: Service Unavailable"),
        later: ("PENDING", "scheduled"),
    }
    assert all(due.fullmatch(after[tid]["eta"]) for tid in back)


def _task_list(flower: FlowerProcess, name: str) -> dict[str, dict[str, str]]:
    """Flower's task list as Chromium draws it at 1600 px: task id -> its cells by column.

    The screenshot is kept in .run/screenshots/<name>.png (its path printed). The first four
    columns are the call, the state, the outcome and when it is due, each short enough to show.
    """
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: apt-get install -y chromium")
        pytest.skip("chromium is not installed here (apt-get install -y chromium)")
    user, password = flower.basic_auth or ("", "")
    url = f"http://{user}:{password}@127.0.0.1:{flower.port}/tasks"
    page = render(url, SCREENSHOTS / f"{name}.png")
    print(f"screenshot of Flower's task list: {page.screenshot}")
    table = Table.parse(page.dom, "tasks-table")
    assert table.columns[:4] == ["kwargs", "state", "result", "eta"], table.columns
    rows = {task_id: table.row(task_id) for task_id in table.rows}
    for row in rows.values():
        # What keeps the four on screen at 1600 px: no cell runs long (a call is 36 characters).
        assert len(row["kwargs"]) <= 64, row
        assert len(row["result"]) <= 50, row  # Flower's Result column shows 400 px of it
        assert len(row["eta"]) <= 23, row
        row["eta"] = row["eta"].replace("\u2011", "-")  # non-breaking hyphens keep the time on one line
    return rows


def test_api_needs_basic_auth_but_metrics_and_healthcheck_do_not(flower):
    """/api/* and the UI answer 401 without or with wrong credentials; /metrics and /healthcheck are open."""
    for path in ("/api/tasks", "/api/workers", "/api/task/info/x", "/"):
        assert flower.request(path, auth=False).status_code == 401, path
    wrong = requests.get(f"{flower.base_url}/api/tasks", auth=(USER, "not-the-password"), timeout=10)
    assert wrong.status_code == 401
    assert flower.request("/api/tasks").status_code == 200

    health = flower.request("/healthcheck", auth=False)
    assert (health.status_code, health.text) == (200, "OK")
    metrics = flower.request("/metrics", auth=False)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert PASSWORD not in metrics.text


def test_metrics_expose_flowers_prometheus_families(producer, start_worker_process, call, flower):
    """After a stop, /metrics parses as Prometheus text with Flower's event, runtime and worker families."""
    start_worker_process("flm")
    call_uuid = call()
    handle = producer.stop_recording(call_uuid)
    assert final(producer, call_uuid).state == "stopped"
    wait_for(lambda: settled(flower, {handle.task_id}), timeout_s=30, what="flower to see the task")

    def families():
        text = flower.request("/metrics", auth=False).text
        return {family.name: family for family in text_string_to_metric_families(text)}

    def events_counted():
        found = families()
        events = found.get("flower_events")
        if events is None:
            return None
        counted = {
            s.labels["type"]
            for s in events.samples
            if s.name == "flower_events_total" and s.labels.get("task") == "recstop.stop_recording"
        }
        return found if {"task-received", "task-started", "task-succeeded"} <= counted else None

    found = wait_for(events_counted, timeout_s=30, what="flower_events_total to count the task's events")
    assert {"flower_task_runtime_seconds", "flower_worker_online"} <= set(found)
    runtime = [
        s
        for s in found["flower_task_runtime_seconds"].samples
        if s.name == "flower_task_runtime_seconds_count" and s.labels.get("task") == "recstop.stop_recording"
    ]
    assert runtime
    assert sum(s.value for s in runtime) >= 1
    online = [
        s for s in found["flower_worker_online"].samples if s.labels.get("worker", "").startswith("flm@")
    ]
    assert [s.value for s in online] == [1.0]


def test_flower_runs_in_its_own_session_and_stops_without_a_traceback(flower):
    """A terminal's Ctrl-C cannot reach Flower (own session); one SIGTERM stops it, no traceback logged."""
    assert os.getsid(flower.proc.pid) != os.getsid(0)
    assert os.getpgid(flower.proc.pid) != os.getpgid(0)
    proc = flower.proc
    flower.stop()
    assert proc.returncode is not None
    log = flower.log_text()
    assert "shutting down" in log
    assert "Traceback" not in log
    assert "SystemExit" not in log
