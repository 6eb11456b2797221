"""Flower for real: a Flower process with basic auth watches real stops through its HTTP API."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from conftest import AUTH_ID
from prometheus_client.parser import text_string_to_metric_families
from support import final, wait_for

from harness.flower import FlowerProcess

pytestmark = pytest.mark.integration

USER = "ops"
PASSWORD = "Flower-pw-3b9d2c71e0"
MAX_TASKS = 5000


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


def test_flower_lists_tasks_and_workers_with_their_outcomes(
    producer, start_worker_process, sandbox_client, call, flower
):
    """Stopped, already_stopped and dead stops: /api/tasks, /api/task/info and /api/workers show them."""
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

    live = call()
    unknown = str(uuid.uuid4())  # the sandbox does not know it: 404, already stopped
    expected = {live: "stopped", unknown: "already_stopped"}
    handles = {c: producer.stop_recording(c) for c in expected}
    for call_uuid, state in expected.items():
        assert final(producer, call_uuid).state == state
    sandbox_client.update_account(AUTH_ID, active=False)  # 403: dead-lettered at once
    doomed = call()
    handles[doomed] = producer.stop_recording(doomed)
    expected[doomed] = "dead"
    assert final(producer, doomed).state == "dead"

    task_ids = {h.task_id: c for c, h in handles.items()}
    tasks = wait_for(lambda: settled(flower, set(task_ids)), timeout_s=30, what="flower to see every task")
    for task_id, call_uuid in task_ids.items():
        listed = tasks[task_id]
        assert listed["name"] == "recstop.stop_recording"
        assert call_uuid in listed["kwargs"]
        assert f"'state': '{expected[call_uuid]}'" in listed["result"]
        assert listed["worker"] == name
        info = api(flower, f"/api/task/info/{task_id}")
        assert (info["uuid"], info["state"], info["worker"]) == (task_id, "SUCCESS", name)
        assert call_uuid in info["kwargs"]
        assert f"'state': '{expected[call_uuid]}'" in info["result"]
        assert info["received"] <= info["started"] <= info["succeeded"]


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
