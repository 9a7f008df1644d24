"""The audio-visual grounding (AVG) losses on contextual snippet embeddings.

With the embeddings normalised to unit length, s_ij the cosine similarity of anchor snippet i (one modality) and
snippet j (the same or the other modality) of one video, and G_ij the grounding label (1 when i and j are in the
same component of the video's similarity graph):

    l_ij = G_ij * [p - s_ij]+ + (1 - G_ij) * [s_ij - n]+          (margins p and n; 0.7 both in the authors' release)

over all ten anchors of every video at once. The modality pairs per variant (VARIANTS): `uni` audio-audio and
visual-visual, `cross` audio-visual and visual-audio, `multi` all four.

Decisions:
- The diagonal of a same-modality pair (i = j, a snippet with itself) is left out: s_ii = 1 and G_ii = 1 always,
  so its term is a constant 0 that would only dilute the mean. The cross-modal diagonal (audio and visual of the
  same second) is a real pair and counts (grounded, since a snippet is in its own component).
- Normalisation: the mean over every counted (video, modality pair, i, j); per video 180 pairs for `uni`
  (2 x 10 x 9), 200 for `cross` (2 x 10 x 10), 380 for `multi`.
- In-batch negatives (optional) are a separate term: every snippet of every other video in the (global) batch is
  a negative for each local anchor, [s - n]+, over the same modality pairs, averaged over those pairs. The
  training loss is the sum of the two terms.
- Margins: p >= n, both in [-1, 1]. p = n (the release's 0.7) has zero width: every similarity at n gives zero
  loss whatever the label. p < n would ask grounded pairs to be less similar than the others: an error.

The InfoNCE objective (`info_nce_loss`) replaces the hinge with a softmax at a temperature tau: for an anchor
snippet i of video b and each snippet j it is grounded to (same video, G_ij = 1, not i itself),

    -log( exp(s_ij / tau) / (exp(s_ij / tau) + sum_k exp(s_ik / tau)) )

where k runs over the anchor's negatives: every snippet of every other video in the global batch, and the
snippets of its own video it is not grounded to. Averaged over every (anchor, positive) pair of the variant's
modality pairs.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

if typing.TYPE_CHECKING:
    from avvp.pretrain.config import PretrainConfig

from avvp.errors import ConfigError

VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "uni": (("audio", "audio"), ("visual", "visual")),
    "cross": (("audio", "visual"), ("visual", "audio")),
    "multi": (("audio", "audio"), ("visual", "visual"), ("audio", "visual"), ("visual", "audio")),
}
"""variant -> the (anchor modality, other modality) pairs its loss sums over."""
RELEASE_MARGIN = 0.7
"""The authors' release: p = n = 0.7 (zero width: kept as the release recipe's setting)."""


OBJECTIVES = ("hinge", "infonce")
"""The AVG hinge with margins p, n (the paper's), or InfoNCE at a temperature."""


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return variant


def release_variant(variant: str, epoch: int) -> str:
    """The pairs of an epoch under the release's sampling: main_avvp_multi.py trains `multi` on the cross-modal
    pairs in even epochs (counted from 0) and on the same-modal pairs in odd ones; `uni` and `cross` keep theirs."""
    if check_variant(variant) != "multi":
        return variant
    return "cross" if epoch % 2 == 0 else "uni"


def check_margins(pos_margin: float, neg_margin: float) -> None:
    """Cosine margins lie in [-1, 1] and p >= n (p = n is the release's zero-width setting)."""
    for flag, value in (("--pos-margin", pos_margin), ("--neg-margin", neg_margin)):
        if not -1.0 <= value <= 1.0:  # also refuses NaN
            raise ConfigError(f"{flag} {value}: a cosine margin lies in [-1, 1]")
    if pos_margin < neg_margin:
        raise ConfigError(
            f"--pos-margin {pos_margin} is below --neg-margin {neg_margin}: grounded pairs would be pushed below "
            "the other pairs; use p > n (or p = n, the release's setting)"
        )


def pair_similarity(audio: torch.Tensor, visual: torch.Tensor, variant: str) -> torch.Tensor:
    """(B, P, T, T) cosine similarity of anchor snippet i and snippet j for each of the variant's P modality pairs."""
    # audio (B, T, H)   visual (B, T, H)
    unit = {"audio": F.normalize(audio.float(), dim=-1), "visual": F.normalize(visual.float(), dim=-1)}
    return torch.stack([unit[x] @ unit[y].transpose(1, 2) for x, y in VARIANTS[check_variant(variant)]], dim=1)


def pair_mask(variant: str, snippets: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(P, T, T) bool: the counted pairs (everything but a snippet with itself within one modality)."""
    off_diagonal = ~torch.eye(snippets, dtype=torch.bool, device=device)
    everything = torch.ones(snippets, snippets, dtype=torch.bool, device=device)
    return torch.stack([off_diagonal if x == y else everything for x, y in VARIANTS[check_variant(variant)]])


def hinge(similarity: torch.Tensor, grounded: torch.Tensor, pos_margin: float, neg_margin: float) -> torch.Tensor:
    """G [p - s]+ + (1 - G) [s - n]+, elementwise."""
    return torch.where(grounded, F.relu(pos_margin - similarity), F.relu(similarity - neg_margin))


def avg_loss(
    audio: torch.Tensor,
    visual: torch.Tensor,
    grounded: torch.Tensor,
    variant: str,
    pos_margin: float = RELEASE_MARGIN,
    neg_margin: float = RELEASE_MARGIN,
    reduction: str = "mean",
    anchor: int | None = None,
) -> torch.Tensor:
    """The AVG hinge loss over all anchors (or only snippet `anchor`); `reduction="none"`: each video's mean (B,).

    audio, visual (B, T, H) contextual embeddings; grounded (B, T, T) bool labels G.
    """
    similarity = pair_similarity(audio, visual, variant)  # (B, P, T, T)
    terms = hinge(similarity, grounded[:, None].bool(), pos_margin, neg_margin)  # (B, P, T, T)
    mask = pair_mask(variant, audio.shape[1], audio.device)  # (P, T, T)
    if anchor is not None:  # the release's sampling: one anchor snippet per batch
        mask = mask & (torch.arange(audio.shape[1], device=audio.device) == anchor)[None, :, None]
    per_video = (terms * mask).sum(dim=(1, 2, 3)) / mask.sum().clamp(min=1)  # (B,)
    return per_video if reduction == "none" else per_video.mean()


def in_batch_negative_loss(
    audio: torch.Tensor,
    visual: torch.Tensor,
    video_index: torch.Tensor,
    variant: str,
    neg_margin: float = RELEASE_MARGIN,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean of [s - n]+ between each local anchor snippet and every snippet of every other video in the batch.

    `video_index` (B,) identifies each video (a video seen twice in a batch is never its own negative). `gather`
    returns a tensor concatenated over all processes, keeping the gradient of the local part (identity when None).
    """
    gather = gather or (lambda tensor: tensor)
    modality = {"audio": 0, "visual": 1}
    unit = F.normalize(torch.stack([audio.float(), visual.float()], dim=1), dim=-1)  # (B, 2, T, H)
    candidates = gather(unit)  # (G, 2, T, H), all processes
    other = video_index[:, None] != gather(video_index)[None, :]  # (B, G): pairs of different videos
    total = unit.new_zeros(())
    for x, y in VARIANTS[check_variant(variant)]:
        similarity = torch.einsum("bih,gjh->bgij", unit[:, modality[x]], candidates[:, modality[y]])  # (B, G, T, T)
        total = total + (F.relu(similarity - neg_margin) * other[:, :, None, None]).sum()
    pairs = other.sum() * audio.shape[1] ** 2 * len(VARIANTS[variant])
    return total / pairs.clamp(min=1)


def info_nce_loss(
    audio: torch.Tensor,
    visual: torch.Tensor,
    grounded: torch.Tensor,
    video_index: torch.Tensor,
    variant: str,
    temperature: float,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """InfoNCE over each video's grounded pairs against its non-grounded snippets and every other video's.

    audio, visual (B, T, H); grounded (B, T, T) bool; `video_index` (B,) identifies each video (a video seen twice
    is one video). `gather` as for `in_batch_negative_loss`. The mean over every (anchor, grounded snippet) pair.
    """
    gather = gather or (lambda tensor: tensor)
    modality = {"audio": 0, "visual": 1}
    unit = F.normalize(torch.stack([audio.float(), visual.float()], dim=1), dim=-1)  # (B, 2, T, H)
    candidates = gather(unit)  # (G, 2, T, H), all processes
    same_video = (video_index[:, None] == gather(video_index)[None, :])[:, None, :, None]  # (B, 1, G, 1)
    # grounded[b, i, j] placed at every copy of video b among the candidates: (B, T, G, T)
    grounded_to = same_video & grounded.bool()[:, :, None, :]
    itself = same_video & torch.eye(audio.shape[1], dtype=torch.bool, device=audio.device)[None, :, None, :]
    total, count = unit.new_zeros(()), 0
    for x, y in VARIANTS[check_variant(variant)]:
        logits = torch.einsum("bih,gjh->bigj", unit[:, modality[x]], candidates[:, modality[y]]) / temperature
        positive = grounded_to & ~itself if x == y else grounded_to  # (B, T, G, T)
        negative = ~grounded_to
        negatives = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=(2, 3))  # (B, T)
        # -log(e^s / (e^s + e^N)) = log(e^s + e^N) - s, with N the log-sum-exp of the negatives
        terms = torch.logaddexp(logits, negatives[:, :, None, None]) - logits  # (B, T, G, T)
        total = total + (terms * positive).sum()
        count = count + positive.sum()
    return total / torch.as_tensor(count).clamp(min=1)


def grounding_counts(
    audio: torch.Tensor,
    visual: torch.Tensor,
    grounded: torch.Tensor,
    variant: str,
    pos_margin: float = RELEASE_MARGIN,
    neg_margin: float = RELEASE_MARGIN,
) -> torch.Tensor:
    """(B, 4) per video: grounded pairs with s >= p, grounded pairs, other pairs with s <= n, other pairs.

    The grounding accuracy is the share of the variant's counted pairs on the right side of their margin.
    """
    similarity = pair_similarity(audio, visual, variant)  # (B, P, T, T)
    positive = grounded[:, None].bool() & pair_mask(variant, audio.shape[1], audio.device)  # (B, P, T, T)
    negative = ~grounded[:, None].bool() & pair_mask(variant, audio.shape[1], audio.device)
    counts = [positive & (similarity >= pos_margin), positive, negative & (similarity <= neg_margin), negative]
    return torch.stack([c.sum(dim=(1, 2, 3)) for c in counts], dim=1).float()


def accuracy_from_counts(counts: torch.Tensor) -> dict[str, float]:
    """Grounding accuracy (all pairs, grounded pairs, other pairs, mean of the two) from summed `grounding_counts`."""
    right_pos, pos, right_neg, neg = (float(c) for c in counts.sum(dim=0))

    def share(right: float, total: float) -> float:
        return right / total if total else float("nan")

    positive, negative = share(right_pos, pos), share(right_neg, neg)
    return {
        "accuracy": share(right_pos + right_neg, pos + neg),
        "positive_accuracy": positive,
        "negative_accuracy": negative,
        # Grounded pairs outnumber the others (LLP-sim demo: ~83%), so the plain share rewards "all similar".
        "balanced_accuracy": (positive + negative) / 2,
    }


@dataclass(frozen=True)
class LossSettings:
    """The settings of the training loss terms, built once per run from its PretrainConfig (`from_config`)."""

    objective: str
    """`hinge` (the AVG loss, plus in-batch negatives when asked for) or `infonce`."""
    pos_margin: float
    """p: hinge margin of the grounded pairs."""
    neg_margin: float
    """n: hinge margin of the other pairs (and of the in-batch negatives)."""
    in_batch_negatives: bool
    """Hinge: the `in_batch_negative` term over the other videos of the (global) batch."""
    temperature: float
    """InfoNCE temperature tau."""

    @classmethod
    def from_config(cls, cfg: PretrainConfig) -> LossSettings:
        return cls(cfg.objective, cfg.pos_margin, cfg.neg_margin, cfg.in_batch_negatives, cfg.temperature)


def pretrain_losses(
    audio: torch.Tensor,
    visual: torch.Tensor,
    grounded: torch.Tensor,
    video_index: torch.Tensor,
    variant: str,
    settings: LossSettings,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    anchor: int | None = None,
) -> dict[str, torch.Tensor]:
    """The named loss terms of one batch; the loop sums them.

    `hinge`: `avg` (over every anchor snippet, or only `anchor`), and `in_batch_negative` when asked for;
    `infonce`: `infonce` alone (its negatives already include the other videos of the batch; no margins).
    `variant` is an argument apart: the release's pair sampling changes it from epoch to epoch.
    """
    objective, pos_margin, neg_margin = settings.objective, settings.pos_margin, settings.neg_margin
    temperature, in_batch_negatives = settings.temperature, settings.in_batch_negatives
    if objective == "infonce":
        return {"infonce": info_nce_loss(audio, visual, grounded, video_index, variant, temperature, gather)}
    terms = {"avg": avg_loss(audio, visual, grounded, variant, pos_margin, neg_margin, anchor=anchor)}
    if in_batch_negatives:
        terms["in_batch_negative"] = in_batch_negative_loss(audio, visual, video_index, variant, neg_margin, gather)
    return terms
