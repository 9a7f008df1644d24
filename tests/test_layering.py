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
        assert [m for m in modules if m.split(".")[0] in STAGES or m in ("avvp.runs", "avvp.store", "avvp.io")] == []
