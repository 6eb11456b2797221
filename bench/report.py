"""Rows of figures, each beside its references and target; printed as one table and saved as JSON."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Row:
    """One figure of one scenario: recstop's value, the references', the target and whether it is met."""

    scenario: str
    metric: str
    unit: str
    recstop: float | None
    naive: float | None = None
    naive_tuned: float | None = None
    raw: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    higher_is_better: bool = True

    def ratio(self, other: float | None) -> float | None:
        """Recstop / other (for 'lower is better' figures too: a ratio below 1 is then better)."""
        if self.recstop is None or other is None or other == 0:
            return None
        return round(self.recstop / other, 2)


@dataclass
class Report:
    """Every row of a run, with the machine it ran on."""

    profile: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        """Add one row and return it."""
        self.rows.append(row)
        return row

    def machine(self) -> dict[str, Any]:
        """What the figures ran on."""
        return {
            "cpus": psutil.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        rows = [
            {
                **asdict(row),
                "recstop_vs_naive_tuned": row.ratio(row.naive_tuned),
                "recstop_vs_raw": row.ratio(row.raw),
            }
            for row in self.rows
        ]
        return {"profile": self.profile, "machine": self.machine(), "rows": rows, "details": self.details}

    def write(self, path: Path) -> None:
        """Save the JSON report."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def table(self) -> str:
        """The report as a Markdown table."""
        head = "| scenario | metric | recstop | naive (default) | naive (tuned) | raw limit | "
        head += "vs tuned | vs raw | target | met |"
        lines = [head, "|" + "---|" * 10]
        for row in self.rows:
            cells = [
                row.scenario,
                f"{row.metric} ({row.unit})" + (f" ({row.note})" if row.note else ""),
                _fmt(row.recstop),
                _fmt(row.naive),
                _fmt(row.naive_tuned),
                _fmt(row.raw),
                _fmt(row.ratio(row.naive_tuned), suffix="x"),
                _fmt(row.ratio(row.raw), suffix="x"),
                row.target,
                {True: "yes", False: "NO", None: ""}[row.met],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _fmt(value: float | None, suffix: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}{suffix}"
    return f"{value:.2f}{suffix}"
