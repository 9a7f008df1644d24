"""Similarity thresholds calibrated on a corpus: FAISS k-nearest-neighbour similarities and their quantiles.

For a new feature extractor the authors' thresholds (visual 0.96 for ResNet-152, audio 0.99 for VGGish) mean
nothing. Instead: take a seeded random sample of the corpus's videos, unit-normalise all their snippets,
find each snippet's k nearest neighbours other than itself by inner product (a flat FAISS index, on the GPU
when FAISS sees one), and put the threshold at quantile q of those neighbour similarities, per modality.

Balanced thresholds (`balanced_quantile`): one quantile q for both modalities, found by bisection so that a
stated share of the sample's snippet pairs is grounded AFTER the edges are joined into components. A quantile
alone does not say this: components join edges (at q = 0.5 of the neighbour similarities, LLP-sim demo's
pretraining corpus has 87% of its pairs grounded, not half).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.errors import ConfigError, StoreError
from avvp.grounding.graph import EdgeRule, adjacency, components_fast, cosine_similarity
from avvp.store import read_store, read_video_ids

MODALITIES = ("visual", "audio")


def check_quantile(name: str, quantile: float) -> None:
    """A quantile must lie strictly inside (0, 1)."""
    if not 0.0 < quantile < 1.0:
        raise ConfigError(f"{name} {quantile}: a quantile must lie strictly between 0 and 1")


def read_sample(
    path: str | os.PathLike, sample_videos: int = 2000, seed: int = 0, streams: tuple[str, ...] = MODALITIES
) -> dict[str, np.ndarray]:
    """The streams of a seeded random sample of the store's videos (in store order): name -> (n, 10, W) float32."""
    if sample_videos < 1:
        raise ConfigError(f"--sample-videos {sample_videos}: need at least one video")
    video_ids = read_video_ids(path)
    if not video_ids:
        raise StoreError(f"{path}: the feature store holds no videos")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(video_ids), size=min(sample_videos, len(video_ids)), replace=False))
    store = read_store(path, streams=streams, video_ids=[video_ids[i] for i in rows])
    return dict(store.streams)


def _unit_rows(snippets: np.ndarray) -> np.ndarray:
    """(n, W) -> (n, W) float32 rows of unit length (zero rows stay zero)."""
    import faiss

    rows = np.array(snippets, dtype=np.float32, order="C")  # a copy: normalize_L2 works in place
    faiss.normalize_L2(rows)
    return rows


def neighbour_similarities(snippets: np.ndarray, neighbours: int = 10) -> np.ndarray:
    """(n, W) snippets -> (n, k) inner products of each unit-normalised snippet with its k nearest others.

    FAISS returns k + 1 neighbours; the snippet itself is dropped by its index, not by position (an exact
    duplicate ties with it and may come first); where the snippet is not among them, the last is dropped.
    """
    import faiss

    if neighbours < 1:
        raise ConfigError(f"--neighbours {neighbours}: need at least one neighbour")
    unit = _unit_rows(snippets)
    count, width = unit.shape
    if count <= neighbours:
        raise ConfigError(f"the sample holds {count} snippets; need more than --neighbours {neighbours}")
    index = faiss.IndexFlatIP(width)
    if faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(unit)
    similarity, found = index.search(unit, neighbours + 1)  # (n, k + 1) each
    keep = found != np.arange(count)[:, None]
    keep[keep.all(axis=1), -1] = False  # the snippet itself was not found: drop the farthest instead
    return similarity[keep].reshape(count, neighbours)


def quantile_threshold(similarities: np.ndarray, quantile: float) -> float:
    """The threshold at `quantile` of the neighbour similarities (numpy's linear interpolation), as float."""
    return float(np.quantile(similarities, quantile))


@dataclass
class Calibration:
    """Neighbour similarities of a sample, per modality, and what thresholds drawn from them produce."""

    similarities: dict[str, np.ndarray]
    """modality -> (n, k) neighbour similarities of the sampled snippets."""
    video_similarities: dict[str, np.ndarray]
    """modality -> (V, 10, 10) cosine similarities within each sampled video."""
    neighbours: int
    sample_videos: int
    seed: int

    def threshold(self, modality: str, quantile: float) -> float:
        """The `modality` threshold at `quantile` of its neighbour similarities."""
        check_quantile(f"--{modality}-quantile", quantile)
        return quantile_threshold(self.similarities[modality], quantile)

    def positive_share(self, edge_rule: EdgeRule) -> dict[str, float]:
        """Share of the sampled videos' snippet pairs (i < j) that get a visual edge, an audio edge, any edge
        under the rule, and a positive label (same component)."""
        visual_sim, audio_sim = self.video_similarities["visual"], self.video_similarities["audio"]
        upper = np.triu(np.ones(visual_sim.shape[1:], dtype=bool), k=1)
        visual_threshold, audio_threshold = edge_rule.thresholds()
        components = components_fast(visual_sim, audio_sim, edge_rule)
        same = components[:, :, None] == components[:, None, :]
        return {
            "visual_edges": float((visual_sim >= visual_threshold)[:, upper].mean()),
            "audio_edges": float((audio_sim >= audio_threshold)[:, upper].mean()),
            "edges": float(adjacency(visual_sim, audio_sim, edge_rule)[:, upper].mean()),
            "positive_pairs": float(same[:, upper].mean()),
        }


def calibrate(path: str | os.PathLike, neighbours: int = 10, sample_videos: int = 2000, seed: int = 0) -> Calibration:
    """Sample the store and compute the neighbour similarities of its visual and audio snippets."""
    sample = read_sample(Path(path), sample_videos, seed)
    similarities = {
        modality: neighbour_similarities(features.reshape(-1, features.shape[-1]), neighbours)
        for modality, features in sample.items()
    }
    video_similarities = {modality: cosine_similarity(features) for modality, features in sample.items()}
    count = len(sample["visual"])
    return Calibration(similarities, video_similarities, neighbours, count, seed)


BALANCED_SHARE = 0.5
"""The toolkit's default: half of the snippet pairs grounded (after components), half not."""


def check_share(share: float) -> None:
    if not 0.0 < share < 1.0:
        raise ConfigError(f"--grounded-share {share}: a share of snippet pairs lies strictly between 0 and 1")


def balanced_quantile(calibration: Calibration, share: float, rule: str = "or", steps: int = 30) -> tuple[float, float]:
    """(q, achieved share): the quantile, for both modalities, whose thresholds ground `share` of the sample's pairs.

    The grounded share falls as q rises (fewer edges, smaller components), so bisection converges; with a finite
    sample the share moves in steps, and the achieved share (the closest of the two ends) is returned with q.
    """
    check_share(share)

    def grounded(q: float) -> float:
        rule_at_q = EdgeRule(calibration.threshold("visual", q), calibration.threshold("audio", q), rule)
        return calibration.positive_share(rule_at_q)["positive_pairs"]

    low, high = 1e-6, 1 - 1e-6  # grounded(low) >= share >= grounded(high), as far as the sample allows
    share_low, share_high = grounded(low), grounded(high)
    for _ in range(steps):
        middle = (low + high) / 2
        share_middle = grounded(middle)
        if share_middle >= share:
            low, share_low = middle, share_middle
        else:
            high, share_high = middle, share_middle
    return (low, share_low) if abs(share_low - share) <= abs(share_high - share) else (high, share_high)
