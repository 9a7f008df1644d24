"""The README's real-LLP path end to end, on LLP-sim tiny written out in the layout of the LLP feature release:
export, import-han as a new user would run it on the download, then scripts/reproduce_tables.sh (a few rows)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from avvp.annotations import EVAL_FILES, SPLIT_FILES, load_split
from avvp.store import RAW_WIDTHS, read_store

REPO = Path(__file__).resolve().parents[1]
ROWS = ["HAN", "Weak-label oracle (reference)", "Predict nothing (reference)"]


def test_release_layout_imports_and_reproduces_a_tiny_table(tiny_llp, tmp_path, run_avvp):
    # The download: data/feats/{vggish,res152,r2plus1d_18}/YTID.npy and the annotation files in data/.
    download = tmp_path / "data"
    for name in (*SPLIT_FILES.values(), *EVAL_FILES.values()):
        (download / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_llp / name, download / name)
    for store, folder in (("llp.h5", download / "feats"), ("pretrain.h5", tmp_path / "audioset")):
        code, _, stderr = run_avvp("data", "export-han", tiny_llp / store, "--out", folder)
        assert code == 0, stderr
    assert sorted(p.name for p in (download / "feats").iterdir()) == [
        ".avvp-output", "avvp_source.txt", "r2plus1d_18", "res152", "vggish",
    ]  # fmt: skip
    first = load_split(download, "train").video_ids[0]
    assert np.load(download / "feats" / "res152" / f"{first[:11]}.npy").shape == (80, 2048)

    features = tmp_path / "features"
    code, stdout, stderr = run_avvp(
        "data", "import-han", download / "feats", "--annotations", download, "--out", features / "llp.h5"
    )
    assert code == 0, stderr
    assert "240 videos (float16); 0 visual clip(s) padded; 240 found by YouTube id" in stdout
    code, _, stderr = run_avvp("data", "import-han", tmp_path / "audioset", "--out", features / "pretrain.h5")
    assert code == 0, stderr

    imported, original = read_store(features / "llp.h5", dtype=None), read_store(tiny_llp / "llp.h5", dtype=None)
    assert imported.video_ids == original.video_ids  # the LLP filenames, from the split files (train, val, test)
    for name in RAW_WIDTHS:
        np.testing.assert_array_equal(imported[name], original[name])
    corpus = read_store(features / "pretrain.h5", dtype=None).video_ids
    assert corpus == sorted(v[:11] for v in read_store(tiny_llp / "pretrain.h5").video_ids)  # named by file stem

    env = {**os.environ, "AVVP_VENV": str(Path(sys.executable).parent.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "reproduce_tables.sh"), "--features", "features", "--annotations", "data",
         "--preset", "tiny", "--seeds", "1", "--rows", ",".join(ROWS), "--out", "results"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "results" / "tables.json").read_text())
    assert report["llp_sim"] is True and set(report["rows"]) == set(ROWS)  # LLP-sim said so, through the export
    assert report["data"] == str(features) and report["annotations"] == str(download)
    assert report["rows"]["Predict nothing (reference)"]["segment"]["event_av"]["mean"] == 0.0
    han = report["rows"]["HAN"]["segment"]["type_av"]["mean"]
    assert 0 < han <= 100
    assert "LLP-sim (synthetic stand-in for LLP)" in (tmp_path / "results" / "tables.md").read_text()
