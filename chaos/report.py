"""A scenario's result, the checks it made, and the one table the suite prints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.overrides import Overrides
from chaos.verify import Tally


@dataclass(frozen=True)
class Check:
    """One assertion a scenario made, with what it measured."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class ScenarioResult:
    """Everything one scenario reports: the tally, its checks and its figures."""

    name: str
    tally: Tally
    recovery_s: float | None = None
    #: What ``recovery_s`` is, when more than one figure stands behind it ("p99 of 5 kills, p50 6.1 s").
    recovery_note: str = ""
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def check(self, name: str, ok: bool, detail: str = "") -> None:  # noqa: FBT001 - reads as an assertion
        """Record a check."""
        self.checks.append(Check(name, bool(ok), detail))

    def note_overrides(self, overrides: Overrides) -> None:
        """Record the settings this scenario ran with beyond the shipped defaults (none: nothing)."""
        if overrides:
            self.figures["overrides"] = overrides.as_figure()

    @property
    def overrides(self) -> str:
        """The overrides as one line, or "" when the scenario ran the shipped defaults."""
        figure = self.figures.get("overrides")
        if not figure:
            return ""
        return Overrides(dict(figure["env"]), str(figure.get("why", ""))).describe()

    def check_accepted(self, accepted: int, wanted: int) -> None:
        """Record that the producer accepted every stop the scenario sent."""
        self.check("every stop accepted", accepted == wanted, f"{accepted}/{wanted}")

    def check_all_stopped(self) -> None:
        """Record that every stop sent ended stopped or already stopped, none dead."""
        tally = self.tally
        self.check(
            "every stop stopped (204 at the sandbox), none dead",
            tally.stopped + tally.already_stopped == tally.sent and not tally.dead,
            f"{tally.stopped} stopped + {tally.already_stopped} already of {tally.sent}",
        )

    def check_duplicates_bounded(self, held: int) -> None:
        """Record that duplicate DELETEs were at most the stops ``held`` in flight at the faults."""
        duplicates = self.tally.duplicate_deletes
        self.check(
            "duplicate DELETEs bounded by what was in flight",
            duplicates <= held,
            f"{duplicates} <= {held} held at the faults",
        )

    @property
    def lost(self) -> int:
        """Accepted stops without a terminal outcome the sandbox agrees with."""
        return len(self.tally.lost)

    @property
    def passed(self) -> bool:
        """Nothing lost and every check held."""
        return self.lost == 0 and all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of this result."""
        return {
            "scenario": self.name,
            **self.tally.as_dict(),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
            "recovery_note": self.recovery_note,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "figures": self.figures,
            "elapsed_s": round(self.elapsed_s, 1),
            "passed": self.passed,
        }


COLUMNS = (
    "scenario",
    "sent",
    "stopped",
    "already",
    "dead (reason)",
    "lost",
    "dup DELETEs",
    "recovery",
    "checks",
    "overrides",
)


def _row(result: ScenarioResult, note: str) -> list[str]:
    tally = result.tally
    dead = ", ".join(f"{n} {reason}" for reason, n in sorted(tally.dead.items())) or "0"
    failed = [c.name for c in result.checks if not c.ok]
    checks = f"{len(result.checks) - len(failed)}/{len(result.checks)} ok" + (
        f" (FAILED: {'; '.join(failed)})" if failed else ""
    )
    recovery = "-" if result.recovery_s is None else f"{result.recovery_s:.1f} s"
    if result.recovery_note:
        recovery += f" ({result.recovery_note})"
    return [
        result.name,
        str(tally.sent),
        str(tally.stopped),
        str(tally.already_stopped),
        dead,
        str(result.lost),
        str(tally.duplicate_deletes),
        recovery,
        checks,
        note,
    ]


def table(results: list[ScenarioResult]) -> str:
    """The results as one Markdown table, each scenario's overrides in a note under it.

    "defaults" in the last column: the scenario ran with the shipped defaults; ``[n]``: with the
    settings of note n.
    """
    notes: dict[str, int] = {}
    for result in results:
        if result.overrides:
            notes.setdefault(result.overrides, len(notes) + 1)
    rows = [
        list(COLUMNS),
        *(_row(r, f"[{notes[r.overrides]}]" if r.overrides else "defaults") for r in results),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if notes:
        lines.append("")
        lines.extend(f"[{n}] {text}" for text, n in notes.items())
    return "\n".join(lines)


def details(results: list[ScenarioResult]) -> str:
    """Every check and figure, one scenario per block."""
    out: list[str] = []
    for result in results:
        out.append(f"{result.name} ({result.elapsed_s:.0f} s)")
        out.extend(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in result.checks)
        out.extend(f"  {key} = {value}" for key, value in result.figures.items())
        out.extend(f"  LOST {example}" for example in result.tally.lost[:5])
    return "\n".join(out)


def write_json(
    results: list[ScenarioResult], path: Path, profile: str, *, elapsed_s: float, parallel: int
) -> None:
    """Write the figures as JSON, with how long the whole run took and how many scenarios ran at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "profile": profile,
        "elapsed_s": round(elapsed_s, 1),
        "parallel": parallel,
        "scenarios": [r.as_dict() for r in results],
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
