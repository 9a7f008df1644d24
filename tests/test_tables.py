"""The table benchmark's stage cache: reruns reuse finished stages, and a changed input or config redoes them."""

import json
import shutil

import numpy as np
import pytest

from avvp.errors import ConfigError
from avvp.store import read_store, write_store
from benchmarks.tables import format_tables, run_tables


@pytest.fixture
def data(tiny_llp, tmp_path):
    """A private copy of the tiny LLP-sim corpus, so the test may change its files."""
    folder = tmp_path / "data"
    shutil.copytree(tiny_llp, folder)
    return folder


def test_cached_stages_are_reused_and_redone_when_input_or_config_changes(data, tmp_path):
    out = tmp_path / "results"
    rows = ["HAN", "Predict nothing (reference)"]
    first = run_tables("tiny", 1, out, data=data, rows=rows, verbose=False)
    assert first["stages_run"] == ["finetune-han-seed0"]
    assert first["rows"]["Predict nothing (reference)"]["segment"]["event_av"]["mean"] == 0.0
    assert "LLP-sim" in (out / "tables.md").read_text()
    assert json.loads((out / "tables.json").read_text())["rows"].keys() == set(rows)

    again = run_tables("tiny", 1, out, data=data, rows=rows, verbose=False)
    assert again["stages_run"] == [] and again["stages_cached"] == ["finetune-han-seed0"]
    assert again["rows"]["HAN"]["segment"] == first["rows"]["HAN"]["segment"]

    more_seeds = run_tables("tiny", 2, out, data=data, rows=rows, verbose=False)  # config change: one seed more
    assert more_seeds["stages_run"] == ["finetune-han-seed1"]
    assert more_seeds["stages_cached"] == ["finetune-han-seed0"]

    store = read_store(data / "llp.h5", dtype="float16")  # input change: the features of one video
    store.streams["audio"][0] += np.float16(0.5)
    write_store(data / "llp.h5", store.video_ids, store.streams, overwrite=True, source="llp-sim test edit")
    changed = run_tables("tiny", 2, out, data=data, rows=rows, verbose=False)
    assert changed["stages_run"] == ["finetune-han-seed0", "finetune-han-seed1"]


def test_table_layout_and_bad_options(tmp_path):
    report = {
        "llp_sim": True, "preset": "tiny", "seeds": 2,
        "rows": {"HAN": {level: {name: {"mean": 50.0, "std": 1.0, "seeds": [49.0, 51.0]}
                                 for name in ("audio", "visual", "av", "type_av", "event_av")}
                         for level in ("segment", "event")}},
    }  # fmt: skip
    table = format_tables(report)
    assert "| HAN | 50.0 ± 1.0 [60.1] |" in table  # ours beside HAN's published segment-level Audio
    assert "Table 2: event-level" in table
    with pytest.raises(ConfigError, match="unknown row"):
        run_tables("tiny", 1, tmp_path, rows=["Nope"], verbose=False)
    with pytest.raises(ConfigError, match="--preset"):
        run_tables("huge", 1, tmp_path, verbose=False)
