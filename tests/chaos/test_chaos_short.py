"""The chaos suite's short profile, one test per scenario: nothing lost, every check holds.

``make chaos`` runs the full profile and prints the table; these run on every change. The
scenarios selected for this session run once, ``SHORT.parallel`` at a time (each on its own
stack), and each test then reads its scenario's result. The fuzz scenario is left out here
because the unit suite already runs the same property tests.
"""

from __future__ import annotations

import pytest

from chaos.profiles import SHORT
from chaos.report import ScenarioResult, details
from chaos.runner import SCENARIOS, run_all

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
NAMES = [n for n in SCENARIOS if n != "fuzz"]
#: The results of this session, for the table ``tests/conftest.py`` prints at the end.
RESULTS: list[ScenarioResult] = []


@pytest.fixture(scope="module")
def short_results(request: pytest.FixtureRequest) -> dict[str, ScenarioResult]:
    """Run every scenario this session selected, at the short profile, together."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    results = run_all(selected or NAMES, SHORT)
    RESULTS.extend(results.values())
    return results


@pytest.mark.parametrize("name", NAMES)
def test_scenario_loses_nothing_and_every_check_holds(name, short_results):
    """No accepted stop may be lost, no check may fail."""
    result = short_results[name]
    assert result.lost == 0, details([result])
    assert result.passed, details([result])
    assert result.tally.sent > 0
