"""`avvp parse --probabilities`: the raw probabilities file holds the model's forward pass, and is an output like
the others (an existing one needs --overwrite, none on top of another output, no temporary file left behind)."""

import h5py
import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, trained_tiny_run

from avvp.annotations import load_split
from avvp.classes import CLASSES
from avvp.finetune.evaluate import load_run
from avvp.finetune.models import STREAMS
from avvp.store import read_store


@pytest.fixture(scope="module")
def gcaa_run(tiny_llp, tmp_path_factory):
    """A `base-adv-skip-gcaa` parser trained one epoch on LLP-sim tiny (every part of the Base family in use)."""
    return trained_tiny_run("base-adv-skip-gcaa", tiny_llp, tmp_path_factory.mktemp("probabilities_run") / "run")


@pytest.fixture
def parse_cli(gcaa_run, tiny_llp, run_avvp):
    def run(*args):
        return run_avvp("parse", "--run", gcaa_run, "--features", tiny_llp / "llp.h5", *args)

    return run


def forward(run, features, video_ids):
    """The run's model applied directly to the stored features of `video_ids`, as numpy arrays."""
    _, model = load_run(run)
    store = read_store(features, streams=STREAMS, video_ids=video_ids, dtype="float32")
    with torch.no_grad():
        output = model.eval()({name: torch.from_numpy(store[name]) for name in STREAMS})
    return {
        "video": output.video_prob.numpy(),
        "audio": output.audio_prob.numpy(),
        "visual": output.visual_prob.numpy(),
        "snippet": output.snippet_prob.numpy(),
    }


def test_probabilities_are_the_models_forward_pass(parse_cli, gcaa_run, tiny_llp, tmp_path):
    video_ids = load_split(tiny_llp, "test").video_ids[::-1][:7]  # a subset, out of store order
    path = tmp_path / "probs.h5"
    args = ("--videos", ",".join(video_ids), "--out", tmp_path / "e.json", "--probabilities", path)
    code, stdout, stderr = parse_cli(*args)
    assert code == 0, stderr
    assert f"  {path}" in stdout.splitlines()  # listed among the files written
    expected = forward(gcaa_run, tiny_llp / "llp.h5", video_ids)
    with h5py.File(path, "r") as handle:
        assert sorted(handle) == ["audio", "snippet", "video", "video_ids", "visual"]
        assert [v.decode() for v in handle["video_ids"][()]] == video_ids
        assert h5py.check_string_dtype(handle["video_ids"].dtype).encoding == "utf-8"
        for name, shape in (("video", (7, 25)), ("audio", (7, 25)), ("visual", (7, 25)), ("snippet", (7, 10, 2, 25))):
            assert handle[name].dtype == np.float32 and handle[name].shape == shape, name
            np.testing.assert_allclose(handle[name][()], expected[name], rtol=0, atol=1e-6, err_msg=name)
        assert list(handle.attrs["classes"]) == list(CLASSES)
        assert list(handle.attrs["snippet_modalities"]) == ["audio", "visual"]
        assert handle.attrs["run"] == str(gcaa_run) and handle.attrs["features"] == str(tiny_llp / "llp.h5")
        assert handle.attrs["schema"] == 1 and handle.attrs["created_by"].startswith("avvp ")
        # The three video-level outputs differ (audio and visual are not copies of the joint probability).
        assert not np.allclose(handle["audio"][()], handle["visual"][()])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "probs.h5"]  # no temporary file left


def test_all_videos_by_default(parse_cli, tiny_llp, tmp_path):
    code, _, stderr = parse_cli("--out", tmp_path / "e.json", "--probabilities", tmp_path / "p.h5")
    assert code == 0, stderr
    stored = read_store(tiny_llp / "llp.h5", streams=("audio",)).video_ids
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        assert [v.decode() for v in handle["video_ids"][()]] == stored
        assert handle["snippet"].shape == (len(stored), 10, 2, 25)


def test_an_existing_probabilities_file_needs_overwrite(parse_cli, tmp_path):
    path = tmp_path / "probs.h5"
    path.write_bytes(b"old")
    args = ("--out", tmp_path / "e.json", "--probabilities", path)
    assert_one_line_error(parse_cli(*args), str(path), "already exists; pass --overwrite")
    assert path.read_bytes() == b"old" and not (tmp_path / "e.json").exists()
    code, _, stderr = parse_cli(*args, "--overwrite")
    assert code == 0, stderr
    with h5py.File(path, "r") as handle:
        assert handle["video"].shape[1] == 25


def test_probabilities_on_top_of_another_output_are_an_error(parse_cli, tmp_path):
    out = tmp_path / "e.json"
    assert_one_line_error(parse_cli("--out", out, "--probabilities", out), "same file", "--probabilities")
    csv = tmp_path / "csv"
    result = parse_cli("--out", out, "--csv", csv, "--probabilities", csv / "pred_visual.csv")
    assert_one_line_error(result, "same file", "--probabilities", "--csv")
    result = parse_cli("--out", out, "--probabilities", tmp_path / "p.h5", "--plot", tmp_path / "p.h5")
    assert_one_line_error(result, "--plot", "is the --probabilities file")
    assert list(tmp_path.iterdir()) == []
