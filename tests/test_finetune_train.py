"""`avvp-finetune` end to end on LLP-sim tiny: the paper's rows, resume, evaluate, `avvp parse`, bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli
from safetensors.torch import load_file

from avvp.annotations import load_split, read_predictions
from avvp.classes import CLASSES
from avvp.errors import ConfigError
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.evaluate import evaluate_run, load_run
from avvp.finetune.models import PAPER_ROWS, FinetuneModel, build_parser, has_discriminator
from avvp.finetune.train import _param_groups, train
from avvp.metrics import LEVELS, SCORE_NAMES
from avvp.store import RAW_WIDTHS, read_store, write_store


def finetune_cli(*args: str) -> tuple[int, str, str]:
    from avvp.finetune.cli import main

    return run_cli(main, *args)


@pytest.fixture(scope="module")
def paper_runs(tiny_llp, tmp_path_factory):
    """Each of the paper's five rows trained by the CLI on LLP-sim tiny: {model: (run dir, CLI result)}."""
    root = tmp_path_factory.mktemp("finetune_runs")
    runs = {}
    for model in PAPER_ROWS:
        out = root / model
        result = finetune_cli(
            "--model", model, "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
            "--out", out, "--preset", "tiny", "--quiet",
        )  # fmt: skip
        runs[model] = (out, result)
    return runs


@pytest.mark.parametrize("model", PAPER_ROWS)
def test_paper_row_trains_end_to_end(paper_runs, tiny_llp, model):
    out, (code, stdout, stderr) = paper_runs[model]
    assert code == 0, stderr
    assert "Type@AV" in stdout and str(out) in stdout
    written = ("config.json", "model.safetensors", "metrics.json", "pred_audio.csv", "pred_visual.csv")
    for name in written:
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists()  # a finished run keeps what evaluate/parse/export read
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = FinetuneConfig.from_preset("tiny", model=model)
    assert len(metrics["epochs"]) == cfg.epochs and metrics["best_epoch"] in range(1, cfg.epochs + 1)
    for scores in (metrics["test"], metrics["val"], *(epoch["val"] for epoch in metrics["epochs"])):
        assert set(scores) == set(LEVELS) and all(set(scores[level]) == set(SCORE_NAMES) for level in LEVELS)
        assert all(0 <= scores[level][name] <= 100 for level in LEVELS for name in SCORE_NAMES)
    terms = {"loss", "wsl", "guided"} | ({"adv", "disc_acc"} if has_discriminator(model) else set())
    assert all(set(epoch["train"]) == terms for epoch in metrics["epochs"])
    # config.json alone rebuilds the model; the predictions are in the LLP eval format.
    loaded_cfg, _ = load_run(out)
    assert loaded_cfg.model == model and loaded_cfg.input_widths == {"audio": 128, "visual": 2048, "motion": 512}
    test_ids = load_split(tiny_llp, "test").video_ids
    read_predictions(out / "pred_audio.csv", out / "pred_visual.csv", test_ids)


def test_evaluate_rescores_the_saved_run(paper_runs):
    out, _ = paper_runs["base-adv-skip-gcaa"]
    metrics = json.loads((out / "metrics.json").read_text())
    scores = evaluate_run(out, "test")
    for level in LEVELS:
        for name in SCORE_NAMES:
            assert scores[level][name] == pytest.approx(metrics["test"][level][name], abs=1e-9)
    code, stdout, stderr = finetune_cli("evaluate", "--run", out, "--split", "val", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["segment"] == pytest.approx(metrics["val"]["segment"], abs=1e-9)


def test_resume_equals_uninterrupted(paper_runs, tiny_llp, tmp_path):
    uninterrupted, _ = paper_runs["base-adv-skip"]
    cfg = FinetuneConfig.from_preset(
        "tiny",
        model="base-adv-skip",
        features=str(tiny_llp / "llp.h5"),
        annotations=str(tiny_llp),
        out=str(tmp_path / "r"),
    )
    train(cfg, stop_after_epoch=1, show_progress=False)
    assert (tmp_path / "r" / "checkpoints").is_dir() and not (tmp_path / "r" / "metrics.json").exists()
    assert_one_line_error(
        finetune_cli(
            "--model", "base-adv-skip", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
            "--out", tmp_path / "r", "--preset", "tiny", "--epochs", "3", "--resume",
        ),
        "--resume needs the saved settings", "epochs 3 (saved 2)",
    )  # fmt: skip
    train(cfg, resume=True, show_progress=False, keep_checkpoints=True)
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["000001", "000002"]
    expected, resumed = load_file(uninterrupted / "model.safetensors"), load_file(tmp_path / "r" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    assert all((expected[key] == resumed[key]).all() for key in expected)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == json.loads(
        (uninterrupted / "metrics.json").read_text()
    )
    assert (tmp_path / "r" / "pred_audio.csv").read_text() == (uninterrupted / "pred_audio.csv").read_text()


def test_avvp_parse_writes_events_csv_and_timelines(paper_runs, tiny_llp, tmp_path):
    from avvp.commands.app import main

    out, _ = paper_runs["han"]
    videos = load_split(tiny_llp, "test").video_ids[:3]
    code, stdout, stderr = run_cli(
        main, "parse", "--run", out, "--features", tiny_llp / "llp.h5", "--videos", ",".join(videos),
        "--out", tmp_path / "events.json", "--csv", tmp_path / "csv", "--plot", tmp_path / "plots",
    )  # fmt: skip
    assert code == 0, stderr
    events = json.loads((tmp_path / "events.json").read_text())["videos"]
    assert list(events) == videos
    for items in events.values():
        for event in items:
            assert event["modality"] in ("audio", "visual", "audio-visual")
            assert 0 <= event["onset"] < event["offset"] <= 10 and 0.5 <= event["probability"] <= 1
    # The CSVs hold the same audio and visual events; audio-visual events are where both are on.
    pred = read_predictions(tmp_path / "csv" / "pred_audio.csv", tmp_path / "csv" / "pred_visual.csv", videos)
    from avvp.classes import CLASS_INDEX

    for modality, dense in (("audio", pred.audio), ("visual", pred.visual), ("audio-visual", pred.audio_visual)):
        rebuilt = np.zeros_like(dense)
        for video_index, video_id in enumerate(videos):
            for event in events[video_id]:
                if event["modality"] == modality:
                    rebuilt[video_index, CLASS_INDEX[event["class"]], event["onset"] : event["offset"]] = True
        assert (rebuilt == dense).all(), modality
    assert all((tmp_path / "plots" / f"{video}.png").stat().st_size > 1000 for video in videos)
    written = [tmp_path / "events.json", tmp_path / "csv" / "pred_audio.csv", tmp_path / "csv" / "pred_visual.csv"]
    written += [tmp_path / "plots" / f"{video}.png" for video in videos]
    assert stdout.splitlines()[1:] == [f"  {path}" for path in written]  # every file written, listed

    # With the annotations, each timeline draws the annotated events too: another picture, holding the truth.
    from PIL import Image

    from avvp.annotations import runs_of

    code, stdout, stderr = run_cli(
        main, "parse", "--run", out, "--features", tiny_llp / "llp.h5", "--videos", ",".join(videos),
        "--out", tmp_path / "events2.json", "--plot", tmp_path / "truth", "--annotations", tiny_llp,
    )  # fmt: skip
    assert code == 0, stderr
    test = load_split(tiny_llp, "test").dense
    for index, video in enumerate(videos):
        drawn, plain = Image.open(tmp_path / "truth" / f"{video}.png"), Image.open(tmp_path / "plots" / f"{video}.png")
        assert drawn.size != plain.size or drawn.tobytes() != plain.tobytes()
        assert "avvp:truth" not in plain.text and drawn.text["avvp:source"] == "LLP-sim (synthetic)"
        truth = json.loads(drawn.text["avvp:truth"])
        audio, visual = test.audio[index], test.visual[index]  # (25, 10)
        for panel, dense in (("audio", audio), ("visual", visual), ("audio-visual", audio & visual)):
            expected = [[name, *run] for c, name in enumerate(CLASSES) for run in runs_of(dense[c])]
            assert sorted(truth.get(panel, [])) == sorted(expected), (video, panel)
        assert json.loads(drawn.text["avvp:predicted"]) == json.loads(plain.text["avvp:predicted"])


# --- bad input: each a one-line error, no traceback, no partial output ---


def test_unknown_model_lists_the_valid_ones(tmp_path, tiny_llp):
    result = finetune_cli(
        "--model", "base-gcca", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--out", tmp_path / "x"
    )
    assert_one_line_error(result, "unknown model 'base-gcca'", "han, base, base-gcaa", "base-adv-skip-gcaa")
    assert not (tmp_path / "x").exists()


def _copy_store(source, target, streams, drop: int = 0):
    store = read_store(source, streams=streams, dtype="float16")
    keep = slice(drop, None)
    write_store(target, store.video_ids[keep], {name: store[name][keep] for name in streams})


def test_store_without_a_needed_stream(tmp_path, tiny_llp):
    _copy_store(tiny_llp / "llp.h5", tmp_path / "av.h5", ("audio", "visual"))
    result = finetune_cli(
        "--model", "han", "--features", tmp_path / "av.h5", "--annotations", tiny_llp,
        "--out", tmp_path / "run", "--preset", "tiny",
    )  # fmt: skip
    assert_one_line_error(result, "av.h5", "needs stream(s) audio, visual, motion", "lacks motion")
    assert not (tmp_path / "run").exists()


def test_store_ids_that_do_not_match_the_annotations(tmp_path, tiny_llp):
    streams = ("audio", "visual", "motion")
    first_ids = read_store(tiny_llp / "llp.h5", streams=("audio",)).video_ids[:2]
    _copy_store(tiny_llp / "llp.h5", tmp_path / "part.h5", streams, drop=2)
    result = finetune_cli(
        "--model", "base", "--features", tmp_path / "part.h5", "--annotations", tiny_llp,
        "--out", tmp_path / "run", "--preset", "tiny",
    )  # fmt: skip
    assert_one_line_error(result, "part.h5", "are not in the store", repr(first_ids[0]))
    assert not (tmp_path / "run").exists()


def test_existing_out_without_overwrite(paper_runs, tiny_llp):
    out, _ = paper_runs["base"]
    before = (out / "model.safetensors").read_bytes()
    result = finetune_cli(
        "--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
        "--out", out, "--preset", "tiny",
    )  # fmt: skip
    assert_one_line_error(result, str(out), "already exists", "--overwrite")
    assert (out / "model.safetensors").read_bytes() == before


def test_config_that_does_not_match_the_weights(paper_runs, tmp_path):
    out, _ = paper_runs["base-gcaa"]
    run = tmp_path / "edited"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "model": "base", "ff_dim": 32}))
    result = finetune_cli("evaluate", "--run", run)
    assert_one_line_error(result, "model.safetensors does not fit", "unexpected", "context_q", "shape mismatch")


class LinearFrontend(torch.nn.Module):
    """A stand-in for a pretrained encoder trained end to end: one linear map per stream."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.proj = torch.nn.ModuleDict({name: torch.nn.Linear(w, width) for name, w in RAW_WIDTHS.items()})
        self.output_widths = {name: width for name in RAW_WIDTHS}

    def forward(self, features):
        return {name: self.proj[name](features[name]) for name in self.proj}


def test_frontend_slot_trains_with_its_own_learning_rate(tiny_llp, tmp_path):
    torch.manual_seed(0)
    frontend = LinearFrontend()
    initial = {k: v.clone() for k, v in frontend.state_dict().items()}
    cfg = FinetuneConfig.from_preset(
        "tiny", model="base", features=str(tiny_llp / "llp.h5"), annotations=str(tiny_llp), out=str(tmp_path / "e2e"),
        frontend="test:LinearFrontend",
    )  # fmt: skip
    groups = _param_groups(
        FinetuneModel(build_parser("base", frontend.output_widths, cfg.parser_sizes()), frontend), cfg
    )
    assert [g["lr"] for g in groups] == [cfg.lr, cfg.lr / 10]
    train(cfg, encoder=frontend, show_progress=False)
    weights = load_file(tmp_path / "e2e" / "model.safetensors")
    assert all(not torch.equal(weights[f"frontend.{k}"], v) for k, v in initial.items())
    assert json.loads((tmp_path / "e2e" / "config.json").read_text())["input_widths"] == frontend.output_widths
    with pytest.raises(ConfigError, match="but no frontend_config to rebuild it"):
        load_run(tmp_path / "e2e")


def test_bf16_on_cpu_trains_and_rescores_in_bf16(paper_runs, tiny_llp, tmp_path):
    # its own process: Accelerate fixes the mixed precision once per process, and this one already ran at "no"
    out = tmp_path / "bf16"
    result = subprocess.run(
        [sys.executable, "-m", "avvp.finetune.cli", "--model", "base-adv-skip-gcaa", "--features", tiny_llp / "llp.h5",
         "--annotations", tiny_llp, "--out", out, "--preset", "tiny", "--mixed-precision", "bf16", "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["mixed_precision"] == "bf16"
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(np.isfinite(metrics["test"][level][name]) for level in LEVELS for name in SCORE_NAMES)
    # autocast was in effect: the same run in full precision (seed, preset, data) logs other losses
    full, _ = paper_runs["base-adv-skip-gcaa"]
    full_losses = [epoch["train"]["loss"] for epoch in json.loads((full / "metrics.json").read_text())["epochs"]]
    bf16_losses = [epoch["train"]["loss"] for epoch in metrics["epochs"]]
    assert bf16_losses != full_losses and bf16_losses == pytest.approx(full_losses, rel=0.05)
    # the saved weights are float32 and re-scoring (under the run's bf16 autocast) gives the numbers of training
    weights = load_file(out / "model.safetensors").values()  # (the discriminator's batch norms count in int64)
    assert all(t.dtype == torch.float32 for t in weights if t.is_floating_point())
    rescored = json.loads(
        subprocess.run(
            [sys.executable, "-m", "avvp.finetune.cli", "evaluate", "--run", out, "--json"],
            capture_output=True,
            text=True,
        ).stdout
    )
    assert all(rescored[level] == pytest.approx(metrics["test"][level]) for level in LEVELS)


def test_unknown_mixed_precision(tmp_path, tiny_llp):
    result = finetune_cli(
        "--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
        "--out", tmp_path / "run", "--mixed-precision", "fp8",
    )  # fmt: skip
    assert_one_line_error(result, "--mixed-precision 'fp8'", "auto, no, bf16")
    assert not (tmp_path / "run").exists()


def test_two_processes_train_and_score_every_test_video(tiny_llp, tmp_path, launch_two_cpu_processes):
    """A real two-process CPU run: batches are sharded, the test predictions gathered from both processes cover
    every test video once, and the run ends (no teardown hang)."""
    out = tmp_path / "run2"
    result = launch_two_cpu_processes(
        "avvp-finetune", "--model", "base-adv-skip-gcaa", "--features", tiny_llp / "llp.h5",
        "--annotations", tiny_llp, "--out", out, "--preset", "tiny", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.rank_errors()
    test_ids = load_split(tiny_llp, "test").video_ids
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_videos"] == len(test_ids)
    assert all(np.isfinite(metrics["test"][level][name]) for level in LEVELS for name in SCORE_NAMES)
    # re-scoring the saved weights in one process gives the numbers the two processes wrote
    rescored = evaluate_run(out, "test")
    assert all(rescored[level] == pytest.approx(metrics["test"][level]) for level in LEVELS)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--lr", "nan", "lr must be a positive number, got nan"),
    ("--lr", "inf", "lr must be a positive number, got inf"),
    ("--seed", "-1", "seed must be at least 0, got -1"),
])  # fmt: skip
def test_bad_numbers_are_refused_before_anything_is_written(tmp_path, tiny_llp, option, value, message):
    result = finetune_cli(
        "--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
        "--out", tmp_path / "run", "--preset", "tiny", option, value,
    )  # fmt: skip
    assert_one_line_error(result, message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("edit", "message"), [
    ({"d_model": "64"}, "d_model is '64'; expected int"),
    ({"dropout": "0.1"}, "dropout is '0.1'; expected float"),
    ({"input_widths": [128, 2048, 512]}, "input_widths is [128, 2048, 512]; expected dict[str, int]"),
    ({"input_widths": {"audio": 128}}, "lack the stream(s) visual, motion"),
])  # fmt: skip
def test_config_with_wrong_types_is_a_one_line_error(paper_runs, tmp_path, edit, message):
    out, _ = paper_runs["base"]
    run = tmp_path / "edited"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, **edit}))
    assert_one_line_error(finetune_cli("evaluate", "--run", run), "config.json", message)


def test_empty_split_and_out_under_a_file_are_refused_before_anything_is_written(tiny_llp, tmp_path):
    annotations = tmp_path / "annotations"
    shutil.copytree(tiny_llp, annotations, ignore=shutil.ignore_patterns("*.h5"))
    header = (annotations / "AVVP_val_pd.csv").read_text().splitlines()[0]
    (annotations / "AVVP_val_pd.csv").write_text(header + "\n")
    args = ["--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", annotations, "--preset", "tiny"]
    assert_one_line_error(finetune_cli(*args, "--out", tmp_path / "run"), "AVVP_val_pd.csv: no videos")
    assert not (tmp_path / "run").exists()
    (tmp_path / "afile").write_text("x")
    good = ["--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--preset", "tiny"]
    assert_one_line_error(finetune_cli(*good, "--out", tmp_path / "afile" / "run"), "afile is not a folder")


def test_resume_with_a_damaged_state_or_another_spelling_of_the_paths(tiny_llp, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_llp.parent)
    relative = ["--features", f"{tiny_llp.name}/llp.h5", "--annotations", tiny_llp.name]
    cfg = FinetuneConfig.from_preset(
        "tiny", model="base", features=relative[1], annotations=relative[3], out=str(tmp_path / "r")
    )
    train(cfg, stop_after_epoch=1, show_progress=False)
    absolute = ["--features", tiny_llp / "llp.h5", "--annotations", tiny_llp]
    args = ["--model", "base", "--out", tmp_path / "r", "--preset", "tiny", "--resume", "--quiet"]
    (checkpoint,) = (tmp_path / "r" / "checkpoints").iterdir()
    (checkpoint / "optimizer.safetensors").write_bytes(b"junk")
    assert_one_line_error(
        finetune_cli(*absolute, *args), f"{checkpoint / 'optimizer.safetensors'}: missing or not of the size saved"
    )
    shutil.rmtree(tmp_path / "r" / "checkpoints")  # killed before its first checkpoint: --resume starts it over
    code, _, stderr = finetune_cli(*absolute, *args)
    assert code == 0 and "no checkpoint yet; starting the run from its first epoch" in stderr, stderr
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["best_epoch"] in (1, 2)


def test_encoder_lr_without_e2e_and_a_moved_store_are_explained(paper_runs, tiny_llp, tmp_path, monkeypatch):
    result = finetune_cli(
        "--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
        "--out", tmp_path / "run", "--encoder-lr", "1e-4",
    )  # fmt: skip
    assert_one_line_error(result, "--encoder-lr is the learning rate of the encoder with --e2e")
    out, _ = paper_runs["base"]
    run = tmp_path / "relative"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "features": "data/llp.h5"}))
    monkeypatch.chdir(tmp_path)
    result = finetune_cli("evaluate", "--run", run)
    assert_one_line_error(result, "config.json names data/llp.h5, which is not there", "pass --features")


def test_resuming_a_finished_run_without_checkpoints_changes_nothing(paper_runs, tiny_llp):
    out, _ = paper_runs["base"]
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, stdout, stderr = finetune_cli(
        "--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--out", out,
        "--preset", "tiny", "--quiet", "--resume",
    )  # fmt: skip
    assert code == 0 and "finished already" in stderr and "epoch 1/" not in stderr + stdout
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_the_epoch_lines_say_what_the_loss_sums_within_100_columns(paper_runs):
    _, (code, stdout, stderr) = paper_runs["base-adv-skip-gcaa"]
    lines = (stdout + stderr).splitlines()
    assert "loss = wsl + 0.6 g - 0.4 ad; val: validation segment Type@AV F1 %, higher is better (best @epoch)" in lines
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(len(line) <= 100 and " = wsl " in line and " - 0.4 ad " in line for line in epochs)
