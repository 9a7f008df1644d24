"""The core imports no stage: no module under avvp/ imports grounding, pretrain, finetune or benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"grounding", "pretrain", "finetune", "benchmarks", "avvp_cli"}
"""The stage packages, and the umbrella command line that imports them."""


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import in a file: import statements at any depth (lazy ones inside functions
    too), `from . import` resolved against the file's package, and importlib.import_module / __import__ of a
    literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            found.append((node.lineno, ".".join(part for part in (base, node.module) if part)))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def stage_imports(path: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {module}" for line, module in imported_modules(path)
            if module.split(".")[0] in STAGES]  # fmt: skip


def test_no_core_module_imports_a_stage():
    core = sorted((ROOT / "avvp").rglob("*.py"))
    assert len(core) > 10
    assert [problem for path in core for problem in stage_imports(path)] == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import finetune.parse\n", ["finetune.parse"]),
        ("def f():\n    from benchmarks.tables import main\n", ["benchmarks.tables"]),
        ("import importlib\nimportlib.import_module('pretrain.train')\n", ["importlib", "pretrain.train"]),
        ("from . import store\nfrom .io import check_writable\n", ["avvp", "avvp.io"]),
    ],
)
def test_the_scan_sees_every_kind_of_import(tmp_path, source, expected):
    folder = tmp_path / "avvp"
    folder.mkdir()
    (folder / "module.py").write_text(source)
    assert [module for _, module in imported_modules(folder / "module.py", tmp_path)] == expected
