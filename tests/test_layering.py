"""The core imports no stage: no module under avvp/ imports avvp.grounding, avvp.pretrain, avvp.finetune,
avvp.benchmarks or avvp.commands (folders grounding/, pretrain/, finetune/, benchmarks/, avvp_cli/); nothing
imports a stage by a top-level name; every output and HDF5 input goes through the two layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"avvp": "avvp", "grounding": "avvp.grounding", "pretrain": "avvp.pretrain", "finetune": "avvp.finetune",
           "benchmarks": "avvp.benchmarks", "avvp_cli": "avvp.commands"}  # fmt: skip
"""Folder of the repository -> the package it is installed as (pyproject.toml's package-dir)."""
STAGES = {package for folder, package in FOLDERS.items() if folder != "avvp"}
"""The stage packages, and the umbrella command line that imports them."""
OLD_NAMES = {folder for folder in FOLDERS if folder != "avvp"}
"""Top-level names the stages had before they moved under `avvp`: nothing imports them any more."""


def is_stage(module: str) -> bool:
    return any(module == stage or module.startswith(stage + ".") for stage in STAGES)


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import in a file: import statements at any depth (lazy ones inside functions
    too), `from . import` resolved against the file's package, and importlib.import_module / __import__ of a
    literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    folders = path.relative_to(root).with_suffix("").parts[:-1]
    package = ".".join((FOLDERS.get(folders[0], folders[0]), *folders[1:])) if folders else ""
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
            if is_stage(module)]  # fmt: skip


def test_no_core_module_imports_a_stage():
    core = sorted((ROOT / "avvp").rglob("*.py"))
    assert len(core) > 10
    assert [problem for path in core for problem in stage_imports(path)] == []


def test_nothing_imports_a_stage_by_a_top_level_name():
    """`import finetune` would find another distribution's `finetune` (PyPI has one): every import says avvp.*."""
    code = [path for folder in (*FOLDERS, "tests", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(code) > 100
    old = [f"{path.relative_to(ROOT)}:{line} imports {module}" for path in code
           for line, module in imported_modules(path) if module.split(".")[0] in OLD_NAMES]  # fmt: skip
    assert old == []


def test_a_relative_import_in_a_stage_folder_names_its_installed_package(tmp_path):
    (tmp_path / "finetune" / "models").mkdir(parents=True)
    (tmp_path / "finetune" / "models" / "head.py").write_text("from . import parts\nfrom ..data import x\n")
    found = [module for _, module in imported_modules(tmp_path / "finetune" / "models" / "head.py", tmp_path)]
    assert found == ["avvp.finetune.models", "avvp.finetune.data"]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import avvp.finetune.parse\n", ["avvp.finetune.parse"]),
        ("def f():\n    from avvp.benchmarks.tables import main\n", ["avvp.benchmarks.tables"]),
        ("import importlib\nimportlib.import_module('avvp.pretrain.train')\n", ["importlib", "avvp.pretrain.train"]),
        ("from . import store\nfrom .io import check_writable\n", ["avvp", "avvp.io"]),
    ],
)
def test_the_scan_sees_every_kind_of_import(tmp_path, source, expected):
    folder = tmp_path / "avvp"
    folder.mkdir()
    (folder / "module.py").write_text(source)
    assert [module for _, module in imported_modules(folder / "module.py", tmp_path)] == expected


# --- every output and every HDF5 input goes through the two layers ---

LAYERS = {"avvp/output.py", "avvp/inputs.py"}
"""The output layer and the input layer: the only modules that open HDF5 files, parse .npy/.pt files, lock,
stage and rename outputs."""
RUN_LAYER = "avvp/runs.py"
"""Checkpoints: written into a staged folder of a run folder whose lock the trainer holds, renamed in."""
PRIMITIVES = {
    "h5py.File": "an HDF5 file (avvp.inputs.open_hdf5 to read, avvp.output.create_hdf5 / hdf5_writer to write)",
    "np.load": "a .npy file (avvp.inputs.parse_npy / read_npy)",
    "numpy.load": "a .npy file (avvp.inputs.parse_npy / read_npy)",
    "torch.load": "a .pt file (avvp.inputs.read_torch_weights)",
    "tempfile.mkstemp": "a staged output (avvp.output.atomic_path / atomic_dir / staged_files)",
    "tempfile.mkdtemp": "a staged output (avvp.output.atomic_dir / staging_folder)",
    "os.replace": "publishing a staged output (avvp.output.publish)",
    "os.rename": "publishing a staged output (avvp.output.publish)",
    "shutil.rmtree": "removing an output (avvp.output: --overwrite replaces only what avvp made)",
    "fcntl.flock": "an output's lock (avvp.output.output_lock)",
}
"""Call -> what it opens or changes, and the layer's function to use instead."""
ALLOWED = {
    RUN_LAYER: {"os.rename", "shutil.rmtree"},
    "benchmarks/hostile.py": {"h5py.File", "shutil.rmtree", "tempfile.mkdtemp"},  # builds hostile files; its cases
    "benchmarks/bench_finetune.py": {"np.load"},  # measures np.load itself, on files it wrote
    "benchmarks/tables.py": {"shutil.rmtree"},  # its stage cache's own interrupted attempts, under its --out
    # The extraction's published weight files: hash-checked against their published sha256 first, then
    # torch.load(weights_only=True); the VGGish PCA file holds numpy arrays, which read_torch_weights refuses.
    "avvp/extract/weights.py": {"torch.load"},
}
"""Module -> calls it may make outside the layers, and why."""
COMMAND_CODE = ("avvp", "avvp_cli", "finetune", "pretrain", "grounding", "benchmarks")


def primitive_calls(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every call of a PRIMITIVES function in a file (`from x import y` resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                head = aliases.get(func.id, func.id)
                name = ".".join([head, *reversed(parts)]).replace("numpy.", "np.", 1)
                if name in PRIMITIVES or name.replace("np.", "numpy.", 1) in PRIMITIVES:
                    found.append((node.lineno, name))
    return found


def test_no_command_opens_an_output_or_an_hdf5_input_except_through_the_layers():
    problems = []
    for package in COMMAND_CODE:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative in LAYERS:
                continue
            for line, name in primitive_calls(path):
                if name not in ALLOWED.get(relative, set()):
                    problems.append(f"{relative}:{line} calls {name}: open {PRIMITIVES[name]}")
    assert problems == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import h5py\nh5py.File('x', 'w')\n", ["h5py.File"]),
        ("from h5py import File\nFile('x')\n", ["h5py.File"]),
        ("import numpy as np\nnp.load('x.npy')\n", ["np.load"]),
        ("import os, shutil\nos.replace('a', 'b')\nshutil.rmtree('c')\n", ["os.replace", "shutil.rmtree"]),
        ("import torch\ntorch.load('w.pt', weights_only=True)\n", ["torch.load"]),
    ],
)
def test_the_layering_scan_sees_each_primitive(tmp_path, source, expected):
    (tmp_path / "module.py").write_text(source)
    assert [name for _, name in primitive_calls(tmp_path / "module.py")] == expected


def test_the_two_layers_import_no_command():
    for layer in LAYERS:
        modules = [module for _, module in imported_modules(ROOT / layer)]
        assert [m for m in modules if is_stage(m) or m in ("avvp.runs", "avvp.store", "avvp.io")] == []
