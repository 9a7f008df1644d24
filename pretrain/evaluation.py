"""Held-out grounding figures of an encoder: ROC AUC of the similarity per pair type, and the similarity spread.

For each held-out video and pair type, the cosine similarities of its snippet pairs and their AVG labels:
`audio` (audio-audio pairs i < j), `visual` (visual-visual pairs i < j) and `cross` (audio snippet i with visual
snippet j, all 100, the same second included). The AUC of a pair type is the probability that a grounded pair
is more similar than an other pair (ties count one half), pooled over every held-out video; it needs no margin,
so it means the same for every objective and both label settings. The spread is the standard deviation of a
video's within-modality similarities (i < j), averaged over videos: near 0 when the encoder collapses the
snippets of a video together, erasing the temporal contrast a parser needs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avvp.classes import NUM_SNIPPETS
from avvp.pretrain.losses import VARIANTS, accuracy_from_counts, avg_loss, grounding_counts, info_nce_loss

PAIR_TYPES = ("audio", "visual", "cross")
"""audio-audio, visual-visual and audio-visual pairs."""
VARIANT_PAIR_TYPES = {"uni": ("audio", "visual"), "cross": ("cross",), "multi": PAIR_TYPES}
"""The pair types each variant trains, whose mean AUC selects its checkpoint."""
assert set(VARIANT_PAIR_TYPES) == set(VARIANTS)

_UPPER = torch.triu_indices(NUM_SNIPPETS, NUM_SNIPPETS, offset=1)  # (2, 45): pairs i < j


def pair_values(audio: torch.Tensor, visual: torch.Tensor, grounded: torch.Tensor) -> torch.Tensor:
    """(B, 2, 190): row 0 the similarities, row 1 the labels (0/1) of each video's 45 + 45 + 100 pairs.

    Columns: audio pairs i < j, then visual pairs i < j, then audio i with visual j (row-major).
    """
    # audio, visual (B, T, H)   grounded (B, T, T) bool
    unit_audio, unit_visual = F.normalize(audio.float(), dim=-1), F.normalize(visual.float(), dim=-1)
    i, j = _UPPER.to(audio.device)
    audio_sim = unit_audio @ unit_audio.transpose(1, 2)  # (B, T, T)
    visual_sim = unit_visual @ unit_visual.transpose(1, 2)
    cross_sim = unit_audio @ unit_visual.transpose(1, 2)
    labels = grounded.float()
    similarity = torch.cat([audio_sim[:, i, j], visual_sim[:, i, j], cross_sim.flatten(1)], dim=1)  # (B, 190)
    label = torch.cat([labels[:, i, j], labels[:, i, j], labels.flatten(1)], dim=1)
    return torch.stack([similarity, label], dim=1)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of `scores` for `labels` (bool): P(score of a positive > score of a negative), ties one half.

    NaN when either class is empty. The Mann-Whitney rank sum with tied scores given their mean rank.
    """
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels, dtype=bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # Mean rank (1-based) of each run of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def grounding_figures(values: np.ndarray, variant: str) -> dict[str, float]:
    """The held-out figures from the stacked `pair_values` of every held-out video, (N, 2, 190).

    auc_audio, auc_visual, auc_cross; auc (the mean over the pair types `variant` trains: the selection
    criterion); similarity_audio/visual (mean within-video cosine) and spread_audio/visual; grounded_share.
    """
    similarity, label = values[:, 0].astype(np.float64), values[:, 1] > 0.5
    pairs = NUM_SNIPPETS * (NUM_SNIPPETS - 1) // 2
    columns = {
        "audio": slice(0, pairs),
        "visual": slice(pairs, 2 * pairs),
        "cross": slice(2 * pairs, 2 * pairs + NUM_SNIPPETS**2),
    }
    figures = {f"auc_{kind}": roc_auc(similarity[:, cols], label[:, cols]) for kind, cols in columns.items()}
    figures["auc"] = float(np.mean([figures[f"auc_{kind}"] for kind in VARIANT_PAIR_TYPES[variant]]))
    for kind in ("audio", "visual"):
        within = similarity[:, columns[kind]]  # (N, 45)
        figures[f"similarity_{kind}"] = float(within.mean())
        figures[f"spread_{kind}"] = float(within.std(axis=1).mean())
    figures["grounded_share"] = float(label[:, : 2 * pairs].mean())
    return figures


def encode_for_pretraining(model: torch.nn.Module, batch: dict, cfg):
    """The encoder's outputs on a batch as pretraining sees it: with `hide_motion`, the motion tokens zeroed and
    masked out of attention, as the release's scripts (`r2p1d = zeros`, `attention_mask[:, 20:] = 0`)."""
    if cfg.hide_motion:
        return model(batch["audio"], batch["visual"], torch.zeros_like(batch["motion"]), motion_attended=False)
    return model(batch["audio"], batch["visual"], batch["motion"])


@torch.no_grad()
def evaluate(model, loader, cfg, accelerator) -> dict[str, float]:
    """Held-out figures of `model` over `loader` (every process's videos gathered), each named `val_*`.

    The held-out loss of the run's objective (hinge: the AVG loss; InfoNCE: its mean over the held-out batches,
    other videos of the same batch as negatives), the grounding accuracy at the margins (hinge), and
    `grounding_figures`: the AUC per pair type, `val_auc` the run's selection criterion, the spread.
    """
    model.eval()
    per_video, pairs, batch_losses = [], [], []
    for batch in loader:
        output = encode_for_pretraining(model, batch, cfg)
        grounded = batch["grounded"]
        if cfg.objective == "infonce":
            loss = info_nce_loss(output.audio, output.visual, grounded, batch["video_index"], cfg.variant,
                                 cfg.temperature)  # fmt: skip
            batch_losses.append(accelerator.gather(loss[None]))  # one value per process and batch
        else:
            loss = avg_loss(output.audio, output.visual, grounded, cfg.variant, cfg.pos_margin, cfg.neg_margin, "none")
            counts = grounding_counts(output.audio, output.visual, grounded, cfg.variant, cfg.pos_margin,
                                      cfg.neg_margin)  # (B, 4)  # fmt: skip
            per_video.append(accelerator.gather_for_metrics(torch.cat([loss[:, None], counts], dim=1)))
        pairs.append(accelerator.gather_for_metrics(pair_values(output.audio, output.visual, grounded)))
    model.train()
    figures = {}
    if per_video:
        stats = torch.cat(per_video).cpu()
        figures["loss"] = float(stats[:, 0].mean())
        figures.update(accuracy_from_counts(stats[:, 1:]))
    else:
        figures["loss"] = float(torch.cat(batch_losses).mean())
    figures.update(grounding_figures(torch.cat(pairs).cpu().numpy(), cfg.variant))
    return {f"val_{name}": value for name, value in figures.items()}
