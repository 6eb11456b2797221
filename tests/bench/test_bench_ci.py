"""The benchmark harness keeps working: its short profile runs every scenario end to end.

Figures are not asserted here (this machine is shared with the rest of the suite); the targets are
checked by ``make bench``. What is asserted is that every scenario produced its rows, with numbers
where numbers belong, and that the stops it sent were all carried out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("1 burst", "2 latency", "3 urgent lane", "4 rate limit", "5 producer", "6 memory", "7 scale-out")

# One worker runs the whole module (its fixture runs the bench once) while others run the rest.
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("bench")]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of ``python -m bench --profile ci``."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "ci", "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["stdout"] = done.stdout
    return data


def test_every_scenario_reports_rows(report):
    """All seven scenarios appear in the JSON and in the printed table."""
    assert {row["scenario"] for row in report["rows"]} == set(SCENARIOS)
    for name in SCENARIOS:
        assert f"| {name} |" in report["stdout"]


def test_burst_figures_sit_beside_both_references(report):
    """The burst rows: one default process beside one tuned naive process, then the scale-out burst."""
    one, burst = [r for r in report["rows"] if r["scenario"] == "1 burst"]
    assert one["recstop"] > 0
    assert one["naive_tuned"] > 0
    assert "one `celery -A worker worker`" in one["metric"]
    assert all(burst[k] > 0 for k in ("recstop", "naive", "naive_tuned", "raw"))
    assert burst["recstop_vs_naive_tuned"] == round(burst["recstop"] / burst["naive_tuned"], 2)
    assert report["details"]["burst"]["complete"] is True


def test_rate_limit_rows_are_measured(report):
    """The shared limiter's rows hold numbers: achieved rate, busiest window, 429 count."""
    rows = [r for r in report["rows"] if r["scenario"] == "4 rate limit"]
    assert len(rows) == 9
    assert all(isinstance(r["recstop"], int | float) for r in rows[:7])
    assert any("limits moving window" in r["metric"] for r in rows)


def test_machine_is_recorded(report):
    """The report names the machine the figures come from."""
    assert report["machine"]["cpus"] >= 1
    assert report["profile"] == "ci"


def test_the_module_runs_on_one_test_process(request):
    """Under xdist the bench tests share one worker (one bench run, not one per worker: pytest pin)."""
    if getattr(request.config.option, "loadgroup", False):  # set on each xdist worker by --dist loadgroup
        assert request.node.nodeid.endswith("@bench"), "xdist_group ignored: the bench would run per worker"
    else:
        assert request.node.get_closest_marker("xdist_group").args == ("bench",)
