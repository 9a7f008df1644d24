"""Predicting with a parser, scoring predictions with the official LLP evaluation, and re-scoring saved runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from avvp.annotations import DenseLabels
from avvp.errors import ConfigError
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.data import SplitData, check_streams, load_split_data, make_loader
from avvp.finetune.encoder import e2e_encoder_from_config
from avvp.finetune.models import REGISTRY, STREAMS, FinetuneModel, build_model
from avvp.finetune.weights import check_weights
from avvp.metrics import evaluate, gate_predictions
from avvp.precision import resolve_mixed_precision

EVAL_SPLITS = ("val", "test")
EVAL_BATCH_SIZE = 512


@dataclass
class Predictions:
    """A parser's probabilities for a list of videos."""

    video_ids: list[str]
    video_prob: np.ndarray
    """(N, 25) joint video-level probabilities."""
    audio_prob: np.ndarray
    """(N, 25, 10) audio snippet probabilities."""
    visual_prob: np.ndarray
    """(N, 25, 10) visual snippet probabilities."""
    video_audio_prob: np.ndarray
    """(N, 25) video-level probabilities of the audio stream."""
    video_visual_prob: np.ndarray
    """(N, 25) video-level probabilities of the visual stream."""

    def gated(self) -> tuple[np.ndarray, np.ndarray]:
        """Official inference (avvp.metrics.DECISION_THRESHOLD): (audio, visual) predictions (N, 25, 10) bool."""
        return gate_predictions(self.video_prob, self.audio_prob, self.visual_prob)

    def dense(self) -> DenseLabels:
        audio, visual = self.gated()
        return DenseLabels(video_ids=list(self.video_ids), audio=audio, visual=visual)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, accelerator: Accelerator, video_ids: list[str]) -> Predictions:
    """Run the model over a (prepared) loader; results are gathered from every process, in `video_ids` order."""
    model.eval()
    n = len(video_ids)
    video_prob = np.zeros((n, 25), dtype=np.float32)
    stream_prob = np.zeros((n, 2, 25), dtype=np.float32)  # video level, audio and visual stream
    snippet_prob = np.zeros((n, 10, 2, 25), dtype=np.float32)
    for batch in loader:
        output = model({name: batch[name] for name in STREAMS})
        streams = torch.stack([output.audio_prob, output.visual_prob], dim=1).float()  # (B, 2, 25)
        index, video, stream, snippet = accelerator.gather_for_metrics(
            (batch["index"], output.video_prob.float(), streams, output.snippet_prob.float())
        )
        index = index.cpu().numpy()
        video_prob[index] = video.cpu().numpy()
        stream_prob[index] = stream.cpu().numpy()
        snippet_prob[index] = snippet.cpu().numpy()
    return Predictions(
        video_ids=list(video_ids),
        video_prob=video_prob,
        audio_prob=snippet_prob[:, :, 0].transpose(0, 2, 1),  # (N, 25, 10)
        visual_prob=snippet_prob[:, :, 1].transpose(0, 2, 1),
        video_audio_prob=stream_prob[:, 0],
        video_visual_prob=stream_prob[:, 1],
    )


def score(predictions: Predictions, truth: DenseLabels) -> dict[str, dict[str, float]]:
    """The ten numbers ({segment, event} x {audio, visual, av, type_av, event_av}) of gated predictions."""
    return evaluate(predictions.dense(), truth)


def load_run(run: str | os.PathLike) -> tuple[FinetuneConfig, FinetuneModel]:
    """Rebuild a run's model from its config.json and load model.safetensors into it (on CPU, eval mode)."""
    run = Path(run)
    cfg = FinetuneConfig.load(run / "config.json")
    if not cfg.input_widths:
        raise ConfigError(f"{run}/config.json: no input_widths; the run never started training")
    encoder = None
    if cfg.frontend:
        if not cfg.frontend_config:
            raise ConfigError(f"{run}/config.json: an encoder ({cfg.frontend}) but no frontend_config to rebuild it")
        encoder = e2e_encoder_from_config(cfg.frontend_config, REGISTRY[cfg.model].get("encoded_motion", False))
    model = build_model(cfg, encoder)
    path = run / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; the run has not finished (see --resume)")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ConfigError(f"{path}: not a readable safetensors file ({error})") from None
    check_weights(model, weights, f"{path} does not fit the {cfg.model!r} model of {run / 'config.json'}")
    damaged = [name for name, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if damaged:
        raise ConfigError(f"{path}: {damaged[0]} holds NaN or infinite values ({len(damaged)} tensor(s) in all)")
    model.load_state_dict(weights)
    return cfg, model.eval()


def evaluate_run(
    run: str | os.PathLike,
    split: str = "test",
    features: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    missing: str | None = None,
) -> dict[str, dict[str, float]]:
    """Re-score a saved run on val or test; the store and annotations default to those it was trained on."""
    return score_run(run, split, features, annotations, missing)[0]


def score_run(
    run: str | os.PathLike,
    split: str = "test",
    features: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    missing: str | None = None,
) -> tuple[dict[str, dict[str, float]], SplitData]:
    """`evaluate_run`'s scores and the split scored: its videos, and with `missing` "skip" those left out
    (default: the run's own --missing)."""
    if split not in EVAL_SPLITS:
        raise ConfigError(f"--split {split!r}: only val and test have snippet-level annotations")
    cfg, model = load_run(run)
    features = features or cfg.features
    annotations = annotations or cfg.annotations
    if not features or not annotations:
        raise ConfigError(f"{run}: the run records no feature store or annotations; pass --features and --annotations")
    for option, given, recorded in (
        ("--features", features, cfg.features),
        ("--annotations", annotations, cfg.annotations),
    ):
        if given == recorded and not Path(recorded).exists():
            raise ConfigError(
                f"{Path(run) / 'config.json'} names {recorded}, which is not there (relative paths are read from "
                f"the current folder); pass {option}"
            )
    check_streams(features, STREAMS, cfg.model)
    data = load_split_data(features, annotations, split, STREAMS, missing or cfg.missing)
    return score(predict_data(model, cfg, data, features), data.dense), data


def predict_data(
    model: FinetuneModel, cfg: FinetuneConfig, data: SplitData, features: str | os.PathLike = "the store"
) -> Predictions:
    """A loaded model's predictions for in-memory videos, on whatever device Accelerate picks."""
    # With an encoder (--e2e) the store feeds the encoder; otherwise it feeds the parser directly.
    expected = model.frontend.input_widths if model.frontend is not None else cfg.input_widths
    if data.widths != expected:
        raise ConfigError(f"{features}: stream widths {data.widths} differ from the run's {expected}")
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision))
    model, loader = accelerator.prepare(model, make_loader(data, EVAL_BATCH_SIZE, shuffle=False))
    return predict(model, loader, accelerator, data.video_ids)
