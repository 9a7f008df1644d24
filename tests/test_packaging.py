"""One import namespace: the wheel installs `avvp` alone at the top level, and a package named like a stage
(`finetune`, `pretrain`, `grounding`, `benchmarks`: PyPI has some of them) installed beside it changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.test_layering import FOLDERS, OLD_NAMES

ROOT = Path(__file__).resolve().parents[1]
SOURCES = tuple(FOLDERS)
"""The repository's package folders (pyproject.toml's package-dir, as tests/test_layering.py names them)."""
STAGE_NAMES = tuple(sorted(OLD_NAMES))


def test_the_wheel_holds_avvp_alone_at_the_top_level(tmp_path):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ and egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in SOURCES:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
         source],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("avvp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    assert {name.split("/")[0] for name in names} == {"avvp", info}
    for expected in ("avvp/finetune/cli.py", "avvp/finetune/models/__init__.py", "avvp/pretrain/modeling.py",
                     "avvp/grounding/build.py", "avvp/benchmarks/tables.py", "avvp/benchmarks/paper_tables.json",
                     "avvp/commands/entry.py", "avvp/data/llp_stats.json", "avvp/extract/nets/vggish.py"):  # fmt: skip
        assert expected in names
    archive = zipfile.ZipFile(wheel)
    assert archive.read(f"{info}/top_level.txt").decode().split() == ["avvp"]
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "avvp-finetune = avvp.commands.entry:finetune" in entry_points


def test_packages_named_like_the_stages_earlier_on_the_path_change_nothing(tmp_path):
    stubs = tmp_path / "site"
    for name in STAGE_NAMES:  # each fails loudly if anything imports it
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(
            f"raise SystemExit('the other distribution\\'s {name} was imported')\n"
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), os.environ.get("PYTHONPATH", "")])}
    probe = (  # what the avvp-finetune console script runs, then what it imported
        "import sys\nfrom avvp.commands.entry import finetune\nsys.argv = ['avvp-finetune', '--help']\n"
        "try:\n    finetune()\nexcept SystemExit as done:\n    assert done.code in (0, None), done.code\n"
        "import avvp.commands.app, avvp.finetune.cli, avvp.pretrain.cli, avvp.grounding.cli, avvp.benchmarks.tables\n"
        "print(avvp.finetune.cli.__file__)\n"
        f"print(sorted(set({STAGE_NAMES!r}) & set(sys.modules)))\n"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "Usage: avvp-finetune" in shown.stdout
    assert shown.stdout.strip().split("\n")[-2:] == [str(ROOT / "finetune" / "cli.py"), "[]"]
