"""Print the configuration table of docs/configuration.md from the settings model (`ENV_SPECS`).

`python -m scripts.settings_table --write` rewrites the table in docs/configuration.md between its markers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from recstop.worker.config.environment import ENV_SPECS

TABLE_DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def table() -> str:
    """The markdown table, one row per environment variable."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for spec in ENV_SPECS:
        default = "—" if spec.default is None else f"`{spec.default}`"
        rows.append(f"| `{spec.name}` | {default} | {spec.help} |")
    return "\n".join(rows)


def rewrite(text: str) -> str:
    """The document text with the table between the markers replaced."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        TABLE_DOC.write_text(rewrite(TABLE_DOC.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(table())
