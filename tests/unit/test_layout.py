"""recstop's layout: packages that depend on each other in one direction, and a producer without Celery."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support import ROOT

WORKER = ROOT / "worker"
#: What each package of recstop.worker may import (docs/architecture.md draws this graph). A package
#: below another never imports it: the graph has no cycle, and a producer, which uses model, config
#: and state, never loads what the worker alone needs.
ALLOWED = {
    "model": set(),
    "config": {"model"},
    "state": {"model", "config"},
    "policy": {"model", "config", "state"},
    "api": {"model", "config", "policy"},
    "audit": {"model", "config", "state"},
    "observability": {"model", "config", "state", "audit"},
    "broker": {"model", "config", "state", "policy"},
    "run": {"model", "config", "state", "policy", "api"},
    "celeryapp": {"model", "config", "state", "policy", "api", "run", "broker", "observability"},
    # the entry module of celery -A recstop.worker (model: the ConfigError it turns into exit 2)
    "celery": {"model", "config", "celeryapp", "observability"},
}
#: What the producer side may import at module level (the CLI imports the rest when a command needs it).
PRODUCER_ALLOWED = {"model", "config", "state"}
#: Distributions only the worker, the audit sink or the tests need.
WORKER_ONLY = (
    "celery",
    "kombu",
    "billiard",
    "urllib3",
    "requests",
    "sqlalchemy",
    "prometheus_client",
    "tqdm",
)


def imports_of(path: Path) -> set[str]:
    """The recstop.worker packages a module imports at its top level (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports are for the type checker only
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recstop.worker"):
            parts = node.module.split(".")
            found |= {parts[2]} if len(parts) > 2 else {alias.name for alias in node.names}
    return found


def package_of(path: Path) -> str:
    """The package of recstop.worker a source file belongs to (the entry module stands alone)."""
    rel = path.relative_to(WORKER)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_package_imports_only_the_packages_below_it():
    """No package of recstop.worker imports one it is not allowed to: one direction, no cycle."""
    wrong = {}
    for path in sorted(WORKER.rglob("*.py")):
        package = package_of(path)
        if package == "__init__":
            continue
        extra = imports_of(path) - ALLOWED[package] - {package}
        if extra:
            wrong[str(path.relative_to(ROOT))] = sorted(extra)
    assert wrong == {}


def test_the_allowed_graph_itself_has_no_cycle():
    """Following the allowed imports from any package never comes back to it."""

    def reach(start: str) -> set[str]:
        seen, todo = set(), [*ALLOWED[start]]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(ALLOWED[node])
        return seen

    assert [package for package in ALLOWED if package in reach(package)] == []


def test_the_producer_imports_only_model_config_and_state():
    """Every module of producers/ imports, at its top, only the packages a producer shares with workers."""
    wrong = {
        str(path.relative_to(ROOT)): sorted(imports_of(path) - PRODUCER_ALLOWED)
        for path in sorted((ROOT / "producers").glob("*.py"))
        if imports_of(path) - PRODUCER_ALLOWED
    }
    assert wrong == {}


def test_importing_the_producer_and_its_cli_loads_no_worker_dependency():
    """The producer and its CLI load neither Celery nor kombu nor the worker's HTTP, SQL or metrics."""
    code = (
        "import sys, recstop.producers, recstop.producers.cli\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert [name for name in WORKER_ONLY if name in loaded] == []
    assert "recstop" in loaded


def test_importing_recstop_worker_imports_nothing_else():
    """The worker package's own import is free: celery -A finds the app in recstop.worker.celery."""
    code = "import sys, recstop.worker\nprint(*(m for m in sorted(sys.modules) if m.startswith('recstop')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == ["recstop", "recstop.worker"]


def test_the_worker_never_imports_the_producer_package():
    """recstop.worker stands on its own: the producer uses the worker's shared parts, never the reverse."""
    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted(WORKER.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recstop.producers")
    ]
    assert wrong == []
