"""Each default is written once, in the settings model; code elsewhere takes it from there."""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

from recstop.worker.config.environment import ENV_SPECS

#: The name of every setting's field (``watchdog_s``, ``wait_timeout_ms`` ...).
SETTING_NAMES = {spec.path.rsplit(".", 1)[-1] for spec in ENV_SPECS if spec.path}
#: Where the defaults live: the settings model itself.
MODEL = ROOT / "worker" / "config"
SOURCES = [
    path
    for folder in ("worker", "producers")
    for path in sorted((ROOT / folder).rglob("*.py"))
    if MODEL not in path.parents
]


def literal(node: ast.expr | None) -> bool:
    """A default written as a literal other than None (None means "not given", never a value)."""
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and node.value is not None


def second_defaults(path: Path) -> list[str]:
    """Parameters and class attributes named after a setting that carry a literal default of their own."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = [*zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)]
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
            found += [f"{node.name}({a.arg}=...)" for a, d in pairs if a.arg in SETTING_NAMES and literal(d)]
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                target = item.target if isinstance(item, ast.AnnAssign) else None
                if isinstance(target, ast.Name) and target.id in SETTING_NAMES and literal(item.value):
                    found.append(f"{node.name}.{target.id}")
    return found


def test_no_parameter_or_attribute_named_after_a_setting_has_a_default_of_its_own():
    """A second literal default for a setting can only disagree with the model's one day: pass it in."""
    found = {str(path.relative_to(ROOT)): second_defaults(path) for path in SOURCES}
    assert {where: what for where, what in found.items() if what} == {}


def test_the_check_finds_a_second_default():
    """A keyword parameter and a class attribute named after a setting, with literals, are both found."""
    path = ROOT / ".run" / "second_default_probe.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text("def f(*, watchdog_s=300.0): ...\nclass C:\n    wait_timeout_ms: int = 1000\n")
    try:
        assert second_defaults(path) == ["f(watchdog_s=...)", "C.wait_timeout_ms"]
    finally:
        path.unlink()
