"""Every benchmark module and every section of `avvp.benchmarks.speed` runs to its end at a tiny size (a smoke run: the
same code path with its own checks on), so that none goes stale unseen. Their figures are not checked here."""

import importlib
import json
import shutil
from pathlib import Path

import pytest

from avvp.benchmarks import speed

BENCHMARKS = Path(speed.__file__).parent
LIBRARIES = {"oracles", "stage_server"}
"""Modules of benchmarks/ that are helpers of the others, not runnable benchmarks (the stage server is smoke-run by
every tiny table, and checked against fresh processes in tests/test_stage_server.py)."""
SMOKED_ELSEWHERE = {
    "fault_injection": "tests/test_fault_injection.py (inject, two kills per trainer)",
    "hostile": "tests/test_hostile_inputs.py (every case of the table; the random mutations are the long version)",
}
"""Runnable modules whose smoke run lives in another test file."""
RUNNABLE = {"tables", "label_curve", "full_size_layout"}
"""Runnable modules smoke-run below by their main()."""


def test_every_benchmark_module_is_smoke_run_somewhere():
    modules = {path.stem for path in BENCHMARKS.glob("*.py") if path.stem not in ("__init__", "speed")}
    sections = {module.rsplit(".", 1)[1] for module in speed.SECTIONS.values()}
    assert modules == sections | LIBRARIES | set(SMOKED_ELSEWHERE) | RUNNABLE, "a new benchmark module: smoke it"
    for module in speed.SECTIONS.values():
        assert isinstance(importlib.import_module(module).SMOKE, dict), module


def test_every_speed_section_runs_to_the_end(capsys):
    assert speed.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for name in speed.SECTIONS:
        assert f"== {name} (" in out, name
    assert "labels: fast == networkx == the build" in out  # the grounding section compares like with like


def test_tables_main_runs_a_tiny_table(tiny_llp, tmp_path):
    from avvp.benchmarks import tables

    rows = "Base (paper recipe),Weak-label oracle (reference)"
    tables.main(["--preset", "tiny", "--seeds", "1", "--data", str(tiny_llp), "--out", str(tmp_path), "--rows", rows])
    report = json.loads((tmp_path / "tables.json").read_text())
    assert set(report["rows"]) >= {"Base (paper recipe)", "Weak-label oracle (reference)"}


def test_label_curve_main_runs_a_tiny_curve(tiny_llp, tmp_path, capsys):
    from avvp.benchmarks import label_curve

    args = ["--preset", "tiny", "--seeds", "1", "--fractions", "1", "--rows", "raw", "--data", str(tiny_llp)]
    label_curve.main([*args, "--epochs", "1", "--out", str(tmp_path)])
    assert "wrote" in capsys.readouterr().out
    assert list(tmp_path.glob("label_curve*.png"))


@pytest.mark.parametrize("module", sorted(SMOKED_ELSEWHERE))
def test_the_modules_smoked_elsewhere_are(module):
    test_file = Path(__file__).parent / SMOKED_ELSEWHERE[module].split()[0].removeprefix("tests/")
    assert f"benchmarks.{module}" in test_file.read_text()


def test_full_size_layout_builds_the_release_layout_of_an_annotation_folder(tiny_llp, tmp_path):
    from avvp.annotations import load_split
    from avvp.benchmarks import full_size_layout

    annotations = tmp_path / "annotations"  # the tiny corpus's files and the dataset list the release ships
    shutil.copytree(tiny_llp, annotations, ignore=shutil.ignore_patterns("*.h5"))
    rows = ["filename\tevent_labels"]
    for split in ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv"):
        rows += (annotations / split).read_text().splitlines()[1:]
    (annotations / "AVVP_dataset_full.csv").write_text("\n".join(rows) + "\n")
    full_size_layout.main(["--annotations", str(annotations), "--out", str(tmp_path / "layout")])
    npy = sorted((tmp_path / "layout").rglob("*.npy"))
    videos = {video[:11] for split in ("train", "val", "test") for video in load_split(tiny_llp, split).video_ids}
    assert len(npy) == 3 * len(videos) and {path.stem for path in npy} == videos
