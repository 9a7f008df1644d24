"""Modality-aware label refinement (MA; Wu & Yang, CVPR 2021): which modality each weak label belongs to.

A weak label says "Dog" for both streams even when the dog is only heard. MA takes a first trained parser
and, for every training video, swaps its audio track (and, separately, its visual and motion tracks) for
those of a partner video that shares none of its weak labels, then reads the first model's video-level
audio and visual probabilities of each labelled class.

The release's rule (`step2_find_exchange/main_avvp.py` of Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing),
per video and weakly labelled class c, with e_a, e_v the first model's per-class error rates of the audio and
visual streams on the training split (`(p > 0.5) != weak`, over all videos), each divided by its largest:

- the visual label goes when, with the audio swapped, both streams' probabilities of c fall below
  visual_threshold * e_v[c] (the class left with the audio, so it was heard, not seen);
- the audio label goes when, with the visual tracks swapped, both fall below audio_threshold * e_a[c].

Both thresholds are 0.5 in the release; a class whose error rate is 0 keeps its labels. The release draws
one partner per video uniformly among the training videos sharing no label with it and uses it for both
swaps; so does `choose_partners`, from a seeded generator. The model calls are batched: each batch of B
videos is one forward pass of 3B (as they are, audio swapped, visual swapped).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from avvp.annotations import SPLIT_FILES
from avvp.classes import NUM_CLASSES
from avvp.errors import ConfigError
from avvp.finetune.data import SplitData, check_streams, load_split_data
from avvp.finetune.evaluate import load_run
from avvp.finetune.models import STREAMS, FinetuneModel
from avvp.inputs import MAX_SEED
from avvp.modality_labels import EVIDENCE, ModalityLabels, label_report, train_truth, write_modality_labels
from avvp.output import check_writable, output_lock
from avvp.precision import resolve_mixed_precision

RULE = "release"
THRESHOLD = 0.5
"""The release's threshold of both rules."""
BATCH_SIZE = 256
"""Videos per batch; each is one forward pass of 3 x BATCH_SIZE."""


def choose_partners(weak: np.ndarray, seed: int, video_ids: list[str] | None = None) -> np.ndarray:
    """(N,) int64: for each video, a row drawn uniformly among the videos sharing none of its labels (N, 25).

    Videos are grouped by label set, so the draw costs one pass over the split per distinct set.
    """
    weak = np.asarray(weak, dtype=bool)
    label_sets, group = np.unique(weak, axis=0, return_inverse=True)  # (U, 25), (N,)
    group = group.reshape(-1)
    overlap = label_sets.astype(np.int32) @ label_sets.T.astype(np.int32)  # (U, U) shared labels
    rng = np.random.default_rng(seed)
    partners = np.empty(len(weak), dtype=np.int64)
    for index in range(len(label_sets)):
        members = np.flatnonzero(group == index)
        pool = np.flatnonzero(overlap[index][group] == 0)
        if len(pool) == 0:
            name = repr(video_ids[members[0]]) if video_ids else f"row {members[0]}"
            raise ConfigError(f"video {name} shares a label with every other training video: no partner to swap with")
        partners[members] = pool[rng.integers(0, len(pool), len(members))]
    return partners


def class_error(prob: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """(25,) share of the videos whose stream prediction (prob (N, 25) > 0.5) disagrees with the weak label."""
    return ((prob > 0.5) != weak.astype(bool)).mean(0).astype(np.float32)


def _normalised(error: np.ndarray) -> np.ndarray:
    largest = float(error.max(initial=0.0))
    return error / largest if largest > 0 else np.zeros_like(error)


def decide(
    weak: np.ndarray,
    evidence: dict[str, np.ndarray],
    audio_error: np.ndarray,
    visual_error: np.ndarray,
    audio_threshold: float = THRESHOLD,
    visual_threshold: float = THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """The release's rule (module docstring): refined (audio, visual) labels (N, 25) bool from the evidence."""
    weak = weak.astype(bool)
    visual_bar = visual_threshold * _normalised(visual_error)  # (25,)
    audio_bar = audio_threshold * _normalised(audio_error)
    # written as p < t * e rather than the release's p / e < t: the same for e > 0, and no label goes for e == 0
    audio_swapped = np.maximum(evidence["audio_swap_audio_prob"], evidence["audio_swap_visual_prob"])  # (N, 25)
    visual_swapped = np.maximum(evidence["visual_swap_audio_prob"], evidence["visual_swap_visual_prob"])
    left_with_audio = audio_swapped < visual_bar  # both streams below the bar
    left_with_visual = visual_swapped < audio_bar
    return weak & ~left_with_visual, weak & ~left_with_audio


def _stream_probabilities(model: FinetuneModel, features: dict[str, torch.Tensor], what: str) -> torch.Tensor:
    """(B, 2, 25) video-level (audio, visual) probabilities; a model without them is a one-line error."""
    output = model(features)
    audio, visual = getattr(output, "audio_prob", None), getattr(output, "visual_prob", None)
    batch = len(next(iter(features.values())))
    if audio is None or visual is None or tuple(audio.shape) != (batch, NUM_CLASSES) or audio.shape != visual.shape:
        raise ConfigError(
            f"{what} gives no video-level audio and visual probabilities (audio_prob, visual_prob of shape "
            f"(B, {NUM_CLASSES})); refinement needs a parser with per-modality heads"
        )
    return torch.stack([audio, visual], dim=1).float()


@torch.no_grad()
def swap_evidence(
    model: FinetuneModel,
    data: SplitData,
    partners: np.ndarray,
    accelerator: Accelerator,
    batch_size: int = BATCH_SIZE,
    what: str = "the model",
) -> dict[str, np.ndarray]:
    """The EVIDENCE probabilities (N, 25) each: the videos as they are, with their partner's audio, and with
    their partner's visual and motion; a batch of B videos is one forward pass of 3B."""
    model.eval()
    n = len(data)
    features = {name: data.features[name].to(accelerator.device) for name in STREAMS}  # (N, 10, W) each
    partner_rows = torch.as_tensor(partners, dtype=torch.long, device=accelerator.device)
    probs = torch.zeros(3, n, 2, NUM_CLASSES)  # (as is, audio swapped, visual swapped), video, stream, class
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(start + batch_size, n), device=accelerator.device)  # (B,)
        other = partner_rows[rows]
        own = {name: features[name][rows] for name in STREAMS}  # (B, 10, W)
        theirs = {name: features[name][other] for name in STREAMS}
        batch = {  # (3B, 10, W): as is | audio swapped | visual and motion swapped
            "audio": torch.cat([own["audio"], theirs["audio"], own["audio"]]),
            "visual": torch.cat([own["visual"], own["visual"], theirs["visual"]]),
            "motion": torch.cat([own["motion"], own["motion"], theirs["motion"]]),
        }
        with accelerator.autocast():
            stream_prob = _stream_probabilities(model, {k: v.float() for k, v in batch.items()}, what)  # (3B, 2, 25)
        probs[:, start : start + len(rows)] = stream_prob.view(3, len(rows), 2, NUM_CLASSES).cpu()
    probs = probs.numpy()
    return {
        name: probs[swap, :, stream]
        for name, (swap, stream) in zip(EVIDENCE, [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)], strict=True)
    }


def refine_split(
    model: FinetuneModel,
    data: SplitData,
    seed: int = 0,
    audio_threshold: float = THRESHOLD,
    visual_threshold: float = THRESHOLD,
    accelerator: Accelerator | None = None,
    batch_size: int = BATCH_SIZE,
    what: str = "the model",
) -> ModalityLabels:
    """Refined labels of an in-memory training split with a loaded first model (no files read or written)."""
    for name, value in (("audio_threshold", audio_threshold), ("visual_threshold", visual_threshold)):
        if not (np.isfinite(value) and value >= 0):
            raise ConfigError(f"--{name.replace('_', '-')} {value}: expected a number >= 0")
    accelerator = accelerator or Accelerator(mixed_precision="no")
    weak = data.labels.cpu().numpy() > 0.5
    partners = choose_partners(weak, seed, data.video_ids)
    evidence = swap_evidence(accelerator.prepare(model), data, partners, accelerator, batch_size, what)
    audio_error = class_error(evidence["audio_prob"], weak)
    visual_error = class_error(evidence["visual_prob"], weak)
    audio, visual = decide(weak, evidence, audio_error, visual_error, audio_threshold, visual_threshold)
    return ModalityLabels(
        video_ids=list(data.video_ids),
        weak=weak,
        audio=audio,
        visual=visual,
        partners=partners,
        evidence=evidence,
        audio_error=audio_error,
        visual_error=visual_error,
        attrs={
            "rule": RULE,
            "audio_threshold": float(audio_threshold),
            "visual_threshold": float(visual_threshold),
            "seed": int(seed),
        },
    )


def refine(
    run: str | os.PathLike,
    features: str | os.PathLike,
    annotations: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    audio_threshold: float = THRESHOLD,
    visual_threshold: float = THRESHOLD,
    batch_size: int = BATCH_SIZE,
    overwrite: bool = False,
    missing: str = "error",
) -> ModalityLabels:
    """Refine the training split's weak labels with a finished run and write the label file `out` (atomically).

    The returned labels carry the report (`attrs["report"]`) and the seconds the refinement took. `missing`
    "skip": the training videos absent from the store are left out (as `avvp-finetune --missing skip` does). One
    refine per `out` at a time (its lock is held from the checks to the rename).
    """
    out = check_writable(out, overwrite, inputs=[features, run])
    with output_lock(out):
        return _refine(
            run, features, annotations, out, seed, audio_threshold, visual_threshold, batch_size, overwrite, missing
        )


def _refine(run, features, annotations, out, seed, audio_threshold, visual_threshold, batch_size, overwrite, missing):
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed}: must be at least 0 and at most {MAX_SEED:,}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    cfg, model = load_run(run)
    check_streams(features, STREAMS, cfg.model)
    data = load_split_data(features, annotations, "train", STREAMS, missing)
    expected = model.frontend.input_widths if model.frontend is not None else cfg.input_widths
    if data.widths != expected:
        raise ConfigError(
            f"{features}: stream widths {data.widths} differ from those run {run} was trained on, {expected}"
        )
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision))
    started = time.perf_counter()
    labels = refine_split(
        model, data, seed, audio_threshold, visual_threshold, accelerator, batch_size, f"the {cfg.model!r} run {run}"
    )
    seconds = time.perf_counter() - started
    report = label_report(labels, train_truth(annotations, data.video_ids))
    labels.attrs.update(
        run=str(run),
        model=cfg.model,
        features=str(features),
        annotations=str(annotations),
        split_file=str(Path(annotations) / SPLIT_FILES["train"]),
        seconds=seconds,
        report=report,
    )
    write_modality_labels(out, labels, overwrite)
    return labels
