"""The alert rules and the Grafana dashboard in deploy/ validate, and name only metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from recstop.worker.observability.metrics import RecstopCollector

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "recstop-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "recstop-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "recstop-dashboard.json"
#: Words of PromQL that are not metric names.
PROMQL = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "delta", "deriv",
    "histogram_quantile", "clamp_min", "clamp_max", "le", "up", "and", "or", "unless", "on", "ignoring",
    "bool", "e",
}  # fmt: skip
#: Prometheus' own series, always there.
BUILTIN = {"up"}


def promtool() -> str:
    """The promtool binary (``make test`` fetches it into the virtualenv from Debian's packages)."""
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    if not Path(found).exists():
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make promtool` fetches it")
        pytest.skip("promtool is not installed here (make promtool)")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels and durations left out)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in PROMQL and not re.fullmatch(r"\d+e\d+", w)}


def exposed(redis_server) -> set[str]:
    """Every sample name recstop's exporter and Flower expose."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecstopCollector(redis_server.client(), max_heartbeat_age_s=10))
    client = redis_server.client()
    client.hset(
        "recstop:metrics",
        mapping={
            "latency_bucket:204:0.1": 1,
            "latency_sum:204": 0.1,
            "rejected:malformed": 1,
            "dead:http_403": 1,
        },
    )
    text = generate_latest(registry).decode()
    names = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    flower = {
        "flower_events_total",
        "flower_task_runtime_seconds_bucket",
        "flower_task_runtime_seconds_sum",
        "flower_task_runtime_seconds_count",
        "flower_task_prefetch_time_seconds",
        "flower_worker_prefetched_tasks",
        "flower_worker_online",
        "flower_worker_number_of_currently_executing_tasks",
    }
    return names | flower | BUILTIN


def rule_exprs() -> list[str]:
    """Every expression of the alert rules."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    """Every query of the dashboard's panels."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_flower_metric_names_are_flowers_own():
    """The Flower names the checks allow are the ones Flower 2 defines."""
    source = (Path(__import__("flower").__file__).parent / "events.py").read_text(encoding="utf-8")
    for name in ("flower_events_total", "flower_task_runtime_seconds", "flower_worker_online"):
        assert f"'{name}'" in source


@pytest.mark.integration
def test_rules_and_dashboard_name_only_metrics_that_exist(redis_server):
    """Every metric in an alert rule or a dashboard query is in recstop's or Flower's exposition."""
    names = exposed(redis_server)
    for expr in rule_exprs() + dashboard_exprs():
        missing = metric_names(expr) - names
        assert not missing, f"{expr}: {sorted(missing)} exist in neither exposition"


def test_the_required_alerts_are_there():
    """Dead letters, overdue schedule, no live worker, 429s, backlog age, /metrics down, late ends."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert {
        "RecstopDeadLettersGrowing",
        "RecstopScheduleOverdue",
        "RecstopNoLiveWorker",
        "RecstopRateLimitedShareHigh",
        "RecstopBacklogOld",
        "RecstopMetricsEndpointDown",
        "RecstopRecordingsEndLate",
    } <= alerts


def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    """`promtool check rules` accepts the file; `promtool test rules` fires each alert as specified."""
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert tested_alerts == {rule["alert"] for group in groups for rule in group["rules"]}


def test_dashboard_is_grafana_json_with_prometheus_queries():
    """The dashboard parses, has a Prometheus datasource variable, and each panel has a query."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["uid"] == "recstop"
    assert any(v["type"] == "datasource" for v in board["templating"]["list"])
    assert all(panel["targets"] and panel["datasource"]["type"] == "prometheus" for panel in board["panels"])
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
