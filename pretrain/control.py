"""The untrained control: the encoder a pretraining run starts from, written without a single step.

A pretraining effect is only measured against this encoder: the same architecture, the same seed, the same input
standardisation (statistics of the same training videos), trained on nothing. It is written as a run directory
like a finished run (config.json + model.safetensors, pretrain_config.json with `untrained: true`, metrics.json
with `steps: 0`), so `avvp-finetune --encoder` and `avvp-pretrain export` take it as they take a trained encoder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from avvp.output import MARKER, atomic_dir
from avvp.pretrain.config import PretrainConfig
from avvp.pretrain.data import load_corpus, split_rows
from avvp.pretrain.modeling import save_encoder, weights_checksum
from avvp.pretrain.train import CONFIG_FILE, initial_encoder, run_checks, write_json
from avvp.runs import RunFlags, check_run_dir


def write_control(cfg: PretrainConfig, overwrite: bool = False) -> Path:
    """Write the step-0 encoder of the run `cfg` describes into cfg.out; returns the directory.

    `overwrite`: replace a pretraining run (or control) already in cfg.out."""
    cfg = replace(cfg, untrained=True)
    corpus = load_corpus(cfg.features, None)
    train_rows, _ = split_rows(len(corpus), cfg.val_fraction, cfg.seed)
    out = check_run_dir(cfg.out, CONFIG_FILE, RunFlags(overwrite=overwrite), run_checks(cfg))
    model = initial_encoder(cfg, corpus, train_rows)
    # check_run_dir let an existing `out` through only for --overwrite of a pretraining run; atomic_dir replaces
    # it once everything is written, so an interrupted init leaves no half-written encoder behind.
    with atomic_dir(out, overwrite=True, markers=(MARKER, CONFIG_FILE)) as tmp:
        write_json(tmp / CONFIG_FILE, cfg.to_dict())
        metrics = {"untrained": True, "steps": 0, "weights_checksum": weights_checksum(model), "config": cfg.to_dict()}
        write_json(tmp / "metrics.json", metrics)
        save_encoder(model, tmp)
    return out
