"""Pretraining runs end to end: train, resume, export, bad input, and a real two-process Accelerate run."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

from avvp.avg_labels import write_avg_labels
from avvp.pretrain import load_encoder
from avvp.pretrain.cli import main
from avvp.pretrain.modeling import weights_checksum
from avvp.store import read_store, write_store

WIDTHS = {"audio": 16, "visual": 24, "motion": 8}
BIN = Path(sys.executable).parent


def make_corpus(folder: Path, videos: int = 96, seed: int = 0, widths=WIDTHS) -> tuple[Path, Path]:
    """A small store whose snippets come in 1-3 segments, each from one of 6 shared prototypes, and its labels."""
    rng = np.random.default_rng(seed)
    segments = np.stack([np.searchsorted(np.sort(rng.choice(9, rng.integers(0, 3), replace=False)) + 1,
                                         np.arange(10), side="right") for _ in range(videos)])  # fmt: skip
    classes = rng.integers(0, 6, size=(videos, 3))
    snippet_class = np.take_along_axis(classes, segments, axis=1)  # (N, 10)
    streams = {}
    for name, width in widths.items():
        prototypes = rng.normal(size=(6, width))
        streams[name] = (prototypes[snippet_class] + 0.3 * rng.normal(size=(videos, 10, width))).astype(np.float32)
    ids = [f"v{i:04d}" for i in range(videos)]
    folder.mkdir(parents=True, exist_ok=True)
    features = write_store(folder / "pre.h5", ids, streams, dtype="float32", source="test")
    labels = write_avg_labels(folder / "avg.h5", ids, segments.astype(np.int8))
    return features, labels


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(autouse=True)
def one_thread_fresh_accelerate_state():
    """One intra-op thread (tiny models gain nothing from more, and lose much on a busy machine); each test
    starts without the Accelerate state a previous in-process run left."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    AcceleratorState._reset_state(reset_partial_state=True)


def run_cli(*args) -> None:
    """avvp-pretrain in this process (run_app included); SystemExit only on failure."""
    old = sys.argv
    sys.argv = ["avvp-pretrain", *map(str, args)]
    try:
        main()
    except SystemExit as exit_info:
        if exit_info.code not in (0, None):
            raise
    finally:
        sys.argv = old


def fails_with(capsys, *args) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def tiny_args(features, labels, out, *extra):
    return ["--preset", "tiny", "--features", features, "--labels", labels, "--out", out, "--hidden-size", 32,
            "--batch-size", 8, "--seed", 3, *extra]  # fmt: skip


def test_train_then_export(corpus, tmp_path, capsys):
    features, labels = corpus
    out = tmp_path / "run"
    run_cli(*tiny_args(features, labels, out, "--variant", "uni", "--save-every", 4))
    assert "held-out (untrained -> epoch " in capsys.readouterr().out  # the AUC, printed at the end
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.json", "log.jsonl", "pretrain_config.json"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temporary leftovers
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "uni" and len(metrics["epochs"]) == 2
    steps_per_epoch = -(-86 // 8)  # 96 videos, 10 held out, batches of 8
    assert metrics["steps"] == 2 * steps_per_epoch
    assert set(metrics["untrained"]) == {
        "val_loss",
        "val_accuracy",
        "val_positive_accuracy",
        "val_negative_accuracy",
        "val_balanced_accuracy",
        "val_grounded_share",
        *(f"val_auc{kind}" for kind in ("", "_audio", "_visual", "_cross")),
        *(f"val_{name}_{modality}" for name in ("similarity", "spread") for modality in ("audio", "visual")),
    }
    # The encoder kept is the epoch of the highest held-out AUC (uni: the mean of audio and visual AUC).
    best = max(metrics["epochs"], key=lambda figures: figures["val_auc"])
    assert metrics["selected"] == best
    assert best["val_auc"] == pytest.approx((best["val_auc_audio"] + best["val_auc_visual"]) / 2)
    assert not (out / "selected").exists()
    assert metrics["epochs"][-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # decayed to zero
    assert metrics["videos_per_second"] > 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if not r.get("end_of_epoch")]
    assert [r["step"] for r in steps] == [10, 20] and all(np.isfinite(r["train_loss"]) for r in steps)
    assert [r for r in log if r.get("end_of_epoch")] == [{**e, "end_of_epoch": True} for e in metrics["epochs"]]
    assert not (out / "checkpoints").exists()  # a finished run: only --resume would read them
    encoder = load_encoder(out)
    assert encoder.config.stream_sizes() == WIDTHS and encoder.config.hidden_size == 32
    assert metrics["process_weight_checksums"] == [weights_checksum(encoder)]

    exported = tmp_path / "pre-emb.h5"
    run_cli("export", "--encoder", out, "--features", features, "--out", exported, "--batch-size", 40)
    store = read_store(exported)
    source = read_store(features)
    assert store.video_ids == source.video_ids
    assert store.widths == {"audio": 32, "visual": 32, "motion": 8}
    assert store.attrs["schema"] == 1 and store.attrs["source"] == str(features)
    assert np.array_equal(store["motion"], source["motion"])  # carried over as is (float32 in, float32 out)
    with torch.no_grad():
        expected = encoder(*(torch.from_numpy(source[name][:5]) for name in ("audio", "visual", "motion")))
    np.testing.assert_allclose(store["visual"][:5], expected.visual.numpy(), rtol=1e-5, atol=1e-5)
    # Export refuses to replace its output unless asked to.
    with pytest.raises(SystemExit):
        run_cli("export", "--encoder", out, "--features", features, "--out", exported)
    run_cli("export", "--encoder", out, "--features", features, "--out", exported, "--overwrite", "--dtype", "float16")
    assert read_store(exported, dtype="float16")["audio"].dtype == np.float16


class Interrupted(Exception):
    pass


def test_resume_continues_exactly(corpus, tmp_path, monkeypatch):
    features, labels = corpus
    args = ["--variant", "cross", "--save-every", 5, "--epochs", 2, "--in-batch-negatives"]
    run_cli(*tiny_args(features, labels, tmp_path / "whole", *args))
    AcceleratorState._reset_state(reset_partial_state=True)

    import avvp.pretrain.train as train_module

    real_losses, calls = train_module.pretrain_losses, []

    def crash_at_step_17(*a, **k):
        calls.append(1)
        if len(calls) == 17:  # after the checkpoint at step 15 (epoch 2, batch 4 of 11)
            raise Interrupted
        return real_losses(*a, **k)

    monkeypatch.setattr(train_module, "pretrain_losses", crash_at_step_17)
    with pytest.raises(Interrupted):
        run_cli(*tiny_args(features, labels, tmp_path / "cut", *args))
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    monkeypatch.setattr(train_module, "pretrain_losses", real_losses)
    AcceleratorState._reset_state(reset_partial_state=True)
    run_cli(*tiny_args(features, labels, tmp_path / "cut", *args, "--resume"))

    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert resumed["process_weight_checksums"] == whole["process_weight_checksums"]
    assert resumed["epochs"][-1]["val_loss"] == pytest.approx(whole["epochs"][-1]["val_loss"])
    assert resumed["untrained"] == whole["untrained"]


def test_bad_input(corpus, tmp_path, capsys):
    features, labels = corpus
    ids = [f"v{i:04d}" for i in range(96)]
    fewer = write_avg_labels(tmp_path / "fewer.h5", ids[:90], np.zeros((90, 10), np.int8))
    err = fails_with(capsys, *tiny_args(features, fewer, tmp_path / "a"))
    assert "labels for 90 videos; the feature store has 96" in err and str(fewer) in err
    other = write_avg_labels(tmp_path / "other.h5", ids[:50] + ["x"] + ids[51:], np.zeros((96, 10), np.int8))
    err = fails_with(capsys, *tiny_args(features, other, tmp_path / "a"))
    assert "video ids differ from the feature store's at position 50 ('x' vs 'v0050')" in err
    err = fails_with(capsys, *tiny_args(features, labels, tmp_path / "a", "--variant", "both"))
    assert err == "error: --variant 'both': expected one of uni, cross, multi"
    err = fails_with(capsys, *tiny_args(features, labels, tmp_path / "a", "--heads", 3))
    assert "not a multiple of --heads 3" in err
    err = fails_with(capsys, *tiny_args(features, labels, tmp_path / "a", "--pos-margin", 0.3, "--neg-margin", 0.5))
    assert err.startswith("error: --pos-margin 0.3 is below --neg-margin 0.5: grounded pairs would be pushed below")
    err = fails_with(capsys, *tiny_args(features, labels, tmp_path / "a", "--neg-margin", -1.5))
    assert err == "error: --neg-margin -1.5: a cosine margin lies in [-1, 1]"
    err = fails_with(capsys, *tiny_args(features, labels, tmp_path / "a", "--recipe", "paper"))
    assert err == "error: --recipe 'paper': expected one of toolkit, release"
    assert fails_with(capsys, "--features", features, "--labels", labels).startswith("error: missing --out")
    assert not (tmp_path / "a").exists()  # nothing written for bad input

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    assert "already exists; pass --overwrite" in fails_with(capsys, *tiny_args(features, labels, taken))
    assert "nothing to resume" in fails_with(capsys, *tiny_args(features, labels, taken, "--resume"))

    err = fails_with(capsys, "export", "--encoder", taken, "--features", features, "--out", tmp_path / "e.h5")
    assert err == f"error: {taken}: no config.json; not an encoder saved by avvp-pretrain"
    assert not (tmp_path / "e.h5").exists()


def test_resume_refuses_other_settings_and_export_other_widths(corpus, tmp_path, capsys):
    features, labels = corpus
    out = tmp_path / "run"
    run_cli(*tiny_args(features, labels, out, "--epochs", 1, "--max-steps", 3))
    AcceleratorState._reset_state(reset_partial_state=True)
    err = fails_with(
        capsys, *tiny_args(features, labels, out, "--epochs", 1, "--max-steps", 3, "--lr", 0.1, "--resume")
    )
    assert "pretrain_config.json: --resume needs the saved settings; changed: --lr 0.1 (saved 0.001)" in err
    wide, _ = make_corpus(tmp_path / "wide", videos=4, widths={"audio": 16, "visual": 30, "motion": 8})
    err = fails_with(capsys, "export", "--encoder", out, "--features", wide, "--out", tmp_path / "e.h5")
    assert f"stream 'visual' has width 30; the encoder {out} expects 24" in err
    assert not (tmp_path / "e.h5").exists()


def test_two_processes_agree(corpus, tmp_path, launch_two_cpu_processes):
    """A real two-process CPU run through `accelerate launch`: it finishes, both ranks hold the same weights."""
    features, labels = corpus
    out = tmp_path / "run2"
    run_args = tiny_args(features, labels, out, "--epochs", 1, "--in-batch-negatives", "--grad-accum", 2)
    result = launch_two_cpu_processes("avvp-pretrain", *run_args)
    assert result.returncode == 0, result.rank_errors()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    first, second = metrics["process_weight_checksums"]
    assert first == second
    # 86 training videos in global batches of 2 x 8 -> 6 batches per process, 3 optimizer steps of 2 batches.
    assert metrics["steps"] == 3
    assert metrics["final"]["train_in_batch_negative"] > 0
    assert weights_checksum(load_encoder(out)) == first


@pytest.mark.parametrize("lr", ["nan", "inf", "-1"])
def test_bad_learning_rate_is_refused_before_an_existing_run_is_touched(corpus, tmp_path, capsys, lr):
    features, labels = corpus
    out = tmp_path / "run"
    out.mkdir()
    (out / "pretrain_config.json").write_text("{}")  # stands for an earlier run
    (out / "model.safetensors").write_bytes(b"earlier weights")
    err = fails_with(capsys, *tiny_args(features, labels, out, "--lr", lr, "--overwrite"))
    assert f"--lr {float(lr)}: must be a positive number" in err
    assert (out / "model.safetensors").read_bytes() == b"earlier weights"


def test_overwrite_never_deletes_inputs_or_foreign_folders(corpus, tmp_path, capsys):
    features, labels = corpus
    data = tmp_path / "data"
    data.mkdir()
    for source in (features, labels):
        (data / Path(source).name).write_bytes(Path(source).read_bytes())
    notes = data / "notes.txt"
    notes.write_text("mine")
    err = fails_with(capsys, *tiny_args(data / Path(features).name, data / Path(labels).name, data, "--overwrite"))
    assert "not a run (no pretrain_config.json); --overwrite will not delete it" in err
    (data / "pretrain_config.json").write_text("{}")  # even where it looks like a run
    err = fails_with(capsys, *tiny_args(data / Path(features).name, data / Path(labels).name, data, "--overwrite"))
    assert "holds the input --features" in err
    assert notes.read_text() == "mine" and (data / Path(features).name).is_file()
    err = fails_with(capsys, "export", "--encoder", data, "--features", features, "--out", features, "--overwrite")
    assert "is the input --features" in err


def test_resume_from_a_damaged_run_is_a_one_line_error(corpus, tmp_path, capsys):
    features, labels = corpus
    out = tmp_path / "run"
    run_cli(*tiny_args(features, labels, out, "--epochs", 1, "--max-steps", 2, "--keep-checkpoints"))
    AcceleratorState._reset_state(reset_partial_state=True)
    resume = tiny_args(features, labels, out, "--epochs", 1, "--max-steps", 2, "--resume")
    (out / "checkpoints" / "step_old").mkdir()  # not ours: ignored
    (latest,) = (out / "checkpoints").glob("[0-9]" * 6)  # the one checkpoint: the end of the epoch
    for item in latest.iterdir():
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    err = fails_with(capsys, *resume)
    assert f"{latest / 'manifest.json'}: missing: damaged saved state; start the run again with --overwrite" in err
    config = out / "pretrain_config.json"
    config.write_text("{not json")
    assert f"{config}: not valid JSON" in fails_with(capsys, *resume)
    config.write_text("[1, 2]")
    assert f"{config}: expected a JSON object" in fails_with(capsys, *resume)


def test_init_writes_the_step_zero_encoder_of_a_run(corpus, tmp_path, monkeypatch, capsys):
    """`init` equals the weights a run with the same settings trains from; export takes it, --resume refuses it."""
    features, labels = corpus
    import avvp.pretrain.train as train_module

    started_from = []

    def recording_initial_encoder(*args):
        model = real_initial_encoder(*args)
        started_from.append(weights_checksum(model))
        return model

    real_initial_encoder = train_module.initial_encoder
    monkeypatch.setattr(train_module, "initial_encoder", recording_initial_encoder)
    run_cli(*tiny_args(features, labels, tmp_path / "run", "--max-steps", 1))
    AcceleratorState._reset_state(reset_partial_state=True)
    monkeypatch.undo()
    control = tmp_path / "control"
    run_cli("init", "--preset", "tiny", "--features", features, "--out", control, "--hidden-size", 32, "--seed", 3)
    assert started_from == [weights_checksum(load_encoder(control))]
    assert started_from[0] != weights_checksum(load_encoder(tmp_path / "run"))  # the run did train
    assert json.loads((control / "pretrain_config.json").read_text())["untrained"] is True
    assert json.loads((control / "metrics.json").read_text())["steps"] == 0
    run_cli("export", "--encoder", control, "--features", features, "--out", tmp_path / "e.h5")
    err = fails_with(capsys, *tiny_args(features, labels, control, "--resume"))
    assert "an untrained control written by `avvp-pretrain init`; there is no run to resume" in err


def test_release_recipe_is_recorded_and_selects_on_the_held_out_loss(corpus, tmp_path):
    features, labels = corpus
    out = tmp_path / "release"
    run_cli(*tiny_args(features, labels, out, "--recipe", "release", "--epochs", 2, "--max-steps", 12))
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert (saved["pos_margin"], saved["neg_margin"], saved["in_batch_negatives"]) == (0.7, 0.7, False)
    assert (saved["lr"], saved["weight_decay"], saved["schedule"], saved["val_fraction"]) == (
        1e-6,
        0.0,
        "constant",
        0.2,
    )
    assert (saved["select"], saved["pair_sampling"], saved["batch_size"]) == ("loss", "release", 8)  # --batch-size
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected"] == min(metrics["epochs"], key=lambda figures: figures["val_loss"])
    assert metrics["epochs"][0]["lr"] == metrics["epochs"][1]["lr"] == pytest.approx(1e-6)


def test_a_run_stopped_after_its_last_step_but_before_that_epoch_ended_resumes_to_the_end(
    corpus, tmp_path, monkeypatch
):
    """With a checkpoint at the last step (--save-every), a run stopped before the last epoch's end resumes to the
    same figures, that epoch's included (86 training videos in batches of 8: 11 steps per epoch, 22 in all)."""
    features, labels = corpus
    args = ["--save-every", 11]
    run_cli(*tiny_args(features, labels, tmp_path / "whole", *args))
    AcceleratorState._reset_state(reset_partial_state=True)

    import avvp.pretrain.train as train_module

    real_end_epoch = train_module._end_epoch

    def stop_at_the_last_epoch_end(run, show):
        if run.progress.epoch == 1:
            raise Interrupted
        return real_end_epoch(run, show)

    monkeypatch.setattr(train_module, "_end_epoch", stop_at_the_last_epoch_end)
    with pytest.raises(Interrupted):
        run_cli(*tiny_args(features, labels, tmp_path / "cut", *args))
    monkeypatch.undo()
    AcceleratorState._reset_state(reset_partial_state=True)
    run_cli(*tiny_args(features, labels, tmp_path / "cut", *args, "--resume"))
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [epoch["step"] for epoch in resumed["epochs"]] == [11, 22]
    assert resumed["epochs"] == whole["epochs"] and resumed["selected"] == whole["selected"]
    assert resumed["process_weight_checksums"] == whole["process_weight_checksums"]


def test_the_untrained_control_is_the_same_encoder_for_every_variant(corpus, tmp_path):
    """The variant picks the loss, not the starting weights: one control per seed serves uni, cross and multi
    (`avvp.benchmarks.tables` writes it once, with the default variant)."""
    features, _ = corpus
    weights = {}
    for variant in ("uni", "cross", "multi"):
        out = tmp_path / variant
        run_cli("init", "--variant", variant, "--preset", "tiny", "--features", features, "--out", out,
                "--hidden-size", 32, "--seed", 3)  # fmt: skip
        weights[variant] = (out / "model.safetensors").read_bytes()
    assert weights["uni"] == weights["cross"] == weights["multi"]
