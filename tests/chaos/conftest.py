"""Print the chaos table after the short-profile run, as ``make chaos`` does for the full one."""

from __future__ import annotations

from test_chaos_short import RESULTS

from chaos.report import table


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Show the scenarios' table at the end of the run."""
    del exitstatus, config
    if RESULTS:
        terminalreporter.write_sep("=", "chaos (short profile)")
        terminalreporter.write_line(table(RESULTS))
