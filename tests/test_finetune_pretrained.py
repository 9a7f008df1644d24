"""Parsers on top of a pretrained encoder: frozen (exported embeddings) and end to end (--e2e)."""

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from avvp.finetune.cli import main as finetune_main
from avvp.finetune.evaluate import evaluate_run
from avvp.grounding.build import GroundingConfig, build
from avvp.pretrain.cli import main as pretrain_main
from avvp.store import store_info

pytestmark = pytest.mark.usefixtures("one_thread_fresh_accelerate_state")


def run(main, program: str, *args) -> int:
    """A command line in this process; returns its exit code."""
    old = sys.argv
    sys.argv = [program, *map(str, args)]
    try:
        main()
    except SystemExit as exit_info:
        return exit_info.code or 0
    finally:
        sys.argv = old
        AcceleratorState._reset_state(reset_partial_state=True)
    return 0


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def encoder(tiny_llp, tmp_path_factory) -> Path:
    """A tiny multi-variant encoder pretrained on the tiny LLP-sim corpus with grounding labels built here."""
    folder = tmp_path_factory.mktemp("pretrained")
    labels = folder / "avg.h5"
    build(GroundingConfig(features=tiny_llp / "pretrain.h5", out=labels))
    out = folder / "encoder"
    args = ["--preset", "tiny", "--variant", "multi", "--features", tiny_llp / "pretrain.h5", "--labels", labels,
            "--out", out, "--epochs", 1, "--hidden-size", 32]  # fmt: skip
    assert run(pretrain_main, "avvp-pretrain", *args) == 0
    return out


def finetune_args(tiny_llp, features, out, *extra):
    return ["--preset", "tiny", "--features", features, "--annotations", tiny_llp, "--out", out, "--epochs", 1,
            "--quiet", *extra]  # fmt: skip


def test_frozen_encoder_exports_a_store_a_parser_trains_on(tiny_llp, encoder, tmp_path):
    before = folder_digest(encoder)
    exported = tmp_path / "llp-pre.h5"
    assert run(pretrain_main, "avvp-pretrain", "export", "--encoder", encoder, "--features", tiny_llp / "llp.h5",
               "--out", exported) == 0  # fmt: skip
    info = store_info(exported)
    assert info["streams"]["audio"]["shape"][1:] == [10, 32]
    assert info["streams"]["visual"]["shape"][1:] == [10, 32]
    assert info["streams"]["motion"]["shape"][1:] == [10, 512]
    out = tmp_path / "frozen"
    assert run(finetune_main, "avvp-finetune", *finetune_args(tiny_llp, exported, out, "--model", "base")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"segment", "event"}
    assert folder_digest(encoder) == before  # the frozen path never touches the encoder


def test_e2e_trains_the_encoder_and_records_where_it_came_from(tiny_llp, encoder, tmp_path):
    before = folder_digest(encoder)
    out = tmp_path / "e2e"
    args = finetune_args(tiny_llp, tiny_llp / "llp.h5", out, "--e2e", "--encoder", encoder, "--encoder-lr", 1e-3)
    assert run(finetune_main, "avvp-finetune", *args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "mmil"  # the default head with --e2e
    assert config["frontend"] == str(encoder.resolve())
    assert config["frontend_lr"] == 1e-3
    pretrained = load_file(str(encoder / "model.safetensors"))
    finetuned = load_file(str(out / "model.safetensors"))
    moved = [
        name for name, tensor in pretrained.items() if not torch.equal(finetuned[f"frontend.encoder.{name}"], tensor)
    ]
    assert moved, "end-to-end training left every encoder weight unchanged"
    assert folder_digest(encoder) == before  # the encoder directory itself stays as pretrained
    metrics = json.loads((out / "metrics.json").read_text())
    # The run rebuilds from its own files (frontend architecture from config.json) and scores the same.
    assert evaluate_run(out, "test") == metrics["test"]


def test_e2e_with_another_parser(tiny_llp, encoder, tmp_path):
    out = tmp_path / "e2e-han"
    args = finetune_args(tiny_llp, tiny_llp / "llp.h5", out, "--e2e", "--encoder", encoder, "--model", "han")
    assert run(finetune_main, "avvp-finetune", *args) == 0
    assert json.loads((out / "config.json").read_text())["input_widths"] == {"audio": 32, "visual": 32, "motion": 512}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--e2e"], "--e2e needs --encoder"),
        (["--encoder", "ENCODER"], "--encoder is used with --e2e"),
        (["--e2e", "--encoder", "ANNOTATIONS"], "not an encoder saved by avvp-pretrain"),
    ],
)
def test_bad_encoder_options(tiny_llp, encoder, tmp_path, capsys, extra, message):
    extra = [str(encoder) if e == "ENCODER" else str(tiny_llp) if e == "ANNOTATIONS" else e for e in extra]
    capsys.readouterr()
    assert (
        run(finetune_main, "avvp-finetune", *finetune_args(tiny_llp, tiny_llp / "llp.h5", tmp_path / "x", *extra)) == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "x").exists()
