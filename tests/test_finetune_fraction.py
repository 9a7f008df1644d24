"""`avvp-finetune --train-fraction`: a seeded, stratified subset of the training videos, recorded in config.json."""

import json

import numpy as np
import pytest

from avvp.annotations import load_split
from avvp.finetune.data import load_split_data, stratified_rows, train_subset
from tests.test_finetune_train import assert_one_line_error, finetune_cli


def test_subset_is_seeded_stratified_and_keeps_every_class(tiny_llp):
    train = load_split_data(tiny_llp / "llp.h5", tiny_llp, "train", ("audio", "visual", "motion"))
    labels = train.labels.numpy() > 0.5
    rows = stratified_rows(labels, 0.25, seed=0)
    assert np.array_equal(rows, stratified_rows(labels, 0.25, seed=0))
    assert not np.array_equal(rows, stratified_rows(labels, 0.25, seed=1))
    assert np.all(np.diff(rows) > 0) and abs(len(rows) - 0.25 * len(labels)) <= 0.05 * len(labels)
    present = labels.any(axis=0)
    assert np.array_equal(labels[rows].any(axis=0), present)  # no class lost
    # Each stratum keeps a quarter: the class shares stay close to the full split's.
    assert np.abs(labels[rows].mean(axis=0) - labels.mean(axis=0)).max() < 0.08
    subset = train_subset(train, 0.25, seed=0)
    assert subset.video_ids == [train.video_ids[i] for i in rows]
    assert np.array_equal(subset.features["visual"].numpy(), train.features["visual"][rows].numpy())
    assert np.array_equal(subset.labels.numpy(), train.labels[rows].numpy())


def test_fraction_is_recorded_and_bad_fractions_are_one_line_errors(tiny_llp, tmp_path, monkeypatch):
    import avvp.finetune.train

    trained_on = []

    def recording_subset(*args):
        trained_on.append(train_subset(*args).video_ids)
        return train_subset(*args)

    monkeypatch.setattr(avvp.finetune.train, "train_subset", recording_subset)
    run = tmp_path / "run"
    common = ["--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--preset", "tiny",
              "--epochs", 1, "--quiet"]  # fmt: skip
    status, _, err = finetune_cli(*common, "--out", run, "--train-fraction", 0.25)
    assert status == 0, err
    assert json.loads((run / "config.json").read_text())["train_fraction"] == 0.25
    (subset,) = trained_on
    everything = load_split(tiny_llp, "train").video_ids
    assert len(subset) == pytest.approx(0.25 * len(everything), abs=8) and set(subset) < set(everything)
    for fraction in ("0", "1.5", "-0.1", "nan"):
        result = finetune_cli(*common, "--out", tmp_path / "bad", "--train-fraction", fraction)
        assert_one_line_error(result, f"--train-fraction {float(fraction)}: a share of the training videos, in (0, 1]")
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("fraction", [0.05, 1.0])
def test_extreme_fractions(fraction):
    labels = np.random.default_rng(0).random((200, 25)) < 0.08
    rows = stratified_rows(labels, fraction, seed=3)
    assert len(rows) >= 1 and (fraction < 1 or np.array_equal(rows, np.arange(200)))
