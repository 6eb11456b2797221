"""Headless Chromium, as an operator's browser: a page's screenshot and its DOM once its scripts ran.

Flower's task list is drawn by JavaScript from its API, so what an operator sees is only in the
rendered page: Chromium (Debian's ``chromium`` package, ``apt-get install -y chromium``) loads it
in a fresh profile, lets its scripts run for ``budget_ms`` of virtual time, then writes the
screenshot and prints the DOM. Loopback only: no network service of Chromium's is left on.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Final

#: Where Debian's package puts it (``shutil.which`` first).
CHROMIUM_PATH: Final = Path("/usr/bin/chromium")
#: The flags of every run: headless, no sandbox (root in CI containers), nothing phoning home.
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    found = shutil.which("chromium")
    if found:
        return found
    return str(CHROMIUM_PATH) if CHROMIUM_PATH.exists() else None


@dataclass(frozen=True)
class Rendered:
    """A page as Chromium drew it: the screenshot file and the DOM after its scripts ran."""

    screenshot: Path
    dom: str


def render(
    url: str, screenshot: Path, *, width: int = 1600, height: int = 1000, budget_ms: int = 5000
) -> Rendered:
    """Load ``url`` in a ``width`` x ``height`` window; write ``screenshot`` (PNG); return it and the DOM."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recstop-chromium-") as profile:
        done = subprocess.run(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--virtual-time-budget={budget_ms}",
                f"--screenshot={screenshot}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if done.returncode != 0 or not screenshot.exists():
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return Rendered(screenshot, done.stdout)


class Table(HTMLParser):
    """The rows of one HTML table (by its id) as cell texts, and the ``data-column`` of its header.

    DataTables with horizontal scrolling draws the header in a table of its own: the header's
    columns are read from every ``th[data-column]`` before the body.
    """

    def __init__(self, table_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.table_id = table_id
        self.columns: list[str] = []
        #: Row id (DataTables' ``rowId``: the task id) -> the text of each cell.
        self.rows: dict[str, list[str]] = {}
        self._depth = 0
        self._row: str | None = None
        self._cell: list[str] | None = None

    @classmethod
    def parse(cls, dom: str, table_id: str) -> Table:
        """The table ``table_id`` of a DOM."""
        table = cls(table_id)
        table.feed(dom)
        table.close()
        return table

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Track the table, its rows and cells; note each header column once."""
        found = dict(attrs)
        if tag == "th" and found.get("data-column") and not self.rows:
            column = str(found["data-column"])
            if column not in self.columns:
                self.columns.append(column)
        if tag == "table" and found.get("id") == self.table_id:
            self._depth = 1
        elif tag == "table" and self._depth:
            self._depth += 1
        elif self._depth and tag == "tr" and found.get("id"):
            self._row = str(found["id"])
            self.rows[self._row] = []
        elif self._row is not None and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        """Close cells, rows and the table."""
        if tag == "td" and self._cell is not None and self._row is not None:
            self.rows[self._row].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        """Text inside a cell."""
        if self._cell is not None:
            self._cell.append(data)

    def row(self, row_id: str) -> dict[str, str]:
        """One row's cells by column name."""
        return dict(zip(self.columns, self.rows[row_id], strict=False))
