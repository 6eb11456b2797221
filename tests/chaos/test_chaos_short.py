"""The chaos suite's short profile, one test per scenario: nothing lost, every check holds.

``make chaos`` runs the full profile and prints the table; these run on every change. The fuzz
scenario is left out here because the unit suite already runs the same property tests.
"""

from __future__ import annotations

import pytest

from chaos.profiles import SHORT
from chaos.report import ScenarioResult, details
from chaos.runner import SCENARIOS, run_one

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
RESULTS: list[ScenarioResult] = []


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "fuzz"])
def test_scenario_loses_nothing_and_every_check_holds(name):
    """Run one scenario at the short profile; no accepted stop may be lost, no check may fail."""
    result = run_one(name, SHORT)
    RESULTS.append(result)
    assert result.lost == 0, details([result])
    assert result.passed, details([result])
    assert result.tally.sent > 0
