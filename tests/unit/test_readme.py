"""The README stays true to the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _settings_table():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_table_matches_the_settings_definition():
    """The configuration table (docs/configuration.md) is exactly what worker/settings.py defines."""
    module = _settings_table()
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert module.rewrite(text) == text, "run: python -m scripts.settings_table --write"


def test_readme_starts_with_run_and_test():
    """A newcomer sees `make run` and `make test` first."""
    head = (ROOT / "README.md").read_text(encoding="utf-8")[:1500]
    assert "make run" in head
    assert "make test" in head
