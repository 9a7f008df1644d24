"""Figures of an AVG label file: positive pairs, components per video, component sizes; and their histogram."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.classes import NUM_SNIPPETS
from avvp.io import atomic_path, check_picture

PAIRS_PER_VIDEO = NUM_SNIPPETS * (NUM_SNIPPETS - 1) // 2


@dataclass
class LabelStats:
    videos: int
    positive_pairs: float
    """Share of the snippet pairs i < j labelled positive (same component): the audio-audio and visual-visual
    pairs, since one label holds for both modalities."""
    cross_pairs: float
    """Share of the 100 audio-visual pairs (audio i, visual j, the same second included) labelled positive."""
    components_per_video: np.ndarray
    """(11,) number of videos with 0..10 components (index 0 is always 0)."""
    component_sizes: np.ndarray
    """(11,) number of components of 0..10 snippets (index 0 is always 0)."""


def label_stats(components: np.ndarray, rows_at_a_time: int = 1 << 16) -> LabelStats:
    """Figures of (N, 10) component ids, computed a block of rows at a time."""
    counts = np.zeros(NUM_SNIPPETS + 1, dtype=np.int64)
    sizes = np.zeros(NUM_SNIPPETS + 1, dtype=np.int64)
    positive = cross = 0
    for start in range(0, len(components), rows_at_a_time):
        block = components[start : start + rows_at_a_time].astype(np.int64)
        size_of = (block[:, :, None] == np.arange(NUM_SNIPPETS)).sum(axis=1)  # (n, 10) size of component c
        counts += np.bincount(block.max(axis=1) + 1, minlength=NUM_SNIPPETS + 1)
        sizes += np.bincount(size_of[size_of > 0], minlength=NUM_SNIPPETS + 1)
        positive += int((size_of * (size_of - 1) // 2).sum())
        cross += int((size_of**2).sum())
    videos = len(components)
    share = positive / (videos * PAIRS_PER_VIDEO) if videos else float("nan")
    cross_share = cross / (videos * NUM_SNIPPETS**2) if videos else float("nan")
    return LabelStats(videos, share, cross_share, counts, sizes)


def format_stats(stats: LabelStats) -> str:
    """A plain-text report: the positive share and the two distributions."""
    lines = [
        f"videos: {stats.videos}",
        f"positive pairs: {100 * stats.positive_pairs:.2f}% of the {PAIRS_PER_VIDEO} snippet pairs per video",
        f"grounded share per pair type: audio-audio {100 * stats.positive_pairs:.2f}%, visual-visual "
        f"{100 * stats.positive_pairs:.2f}% (of the pairs i < j),",
        f"  audio-visual {100 * stats.cross_pairs:.2f}% (of the {NUM_SNIPPETS**2} pairs, the same second included)",
        "",
        f"{'n':>4}{'videos with n components':>28}{'%':>8}{'components of n snippets':>28}{'%':>8}",
    ]
    total_components = max(int(stats.component_sizes.sum()), 1)
    for n in range(1, NUM_SNIPPETS + 1):
        videos, components = int(stats.components_per_video[n]), int(stats.component_sizes[n])
        lines.append(
            f"{n:>4}{videos:>28}{100 * videos / max(stats.videos, 1):>8.2f}"
            f"{components:>28}{100 * components / total_components:>8.2f}"
        )
    return "\n".join(lines)


def plot_stats(stats: LabelStats, path: str | os.PathLike, title: str = "", overwrite: bool = True) -> Path:
    """Histograms of components per video and component sizes, written atomically.

    The format follows the extension of `path`: .png, .pdf, .svg or .jpg.
    """
    path = check_picture(path, overwrite)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.arange(1, NUM_SNIPPETS + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.bar(n, stats.components_per_video[1:], color="tab:blue")
    left.set(xlabel="components per video", ylabel="videos", xticks=n)
    right.bar(n, stats.component_sizes[1:], color="tab:orange")
    right.set(xlabel="snippets per component", ylabel="components", xticks=n)
    figure.suptitle(
        (title + "\n" if title else "")
        + f"{stats.videos} videos, {100 * stats.positive_pairs:.1f}% of snippet pairs positive"
    )
    with atomic_path(path, overwrite) as tmp:
        figure.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=100)
    plt.close(figure)
    return path


def shared_event_agreement(
    components: np.ndarray, audio_events: np.ndarray, visual_events: np.ndarray
) -> dict[str, dict[str, float]]:
    """How well grounding labels predict "the two snippets share a latent event", per pair type.

    components (N, 10) ids; audio_events, visual_events (N, K, 10) bool: the latent classes heard / seen at each
    snippet (LLP-sim knows them). audio-audio and visual-visual pairs i < j share an event when one class is heard
    (seen) at both; audio-visual pairs (audio i, visual j, all 100) when a class heard at i is seen at j. Per pair
    type: the share of pairs that share an event, the labels' recall, precision and balanced accuracy.
    """
    grounded = components[:, :, None] == components[:, None, :]  # (N, 10, 10)
    heard = audio_events.transpose(0, 2, 1).astype(np.float32)  # (N, 10, K)
    seen = visual_events.transpose(0, 2, 1).astype(np.float32)
    upper = np.triu(np.ones((NUM_SNIPPETS, NUM_SNIPPETS), dtype=bool), k=1)
    every = np.ones_like(upper)
    shares = {
        "audio": (heard @ heard.transpose(0, 2, 1) > 0, upper),
        "visual": (seen @ seen.transpose(0, 2, 1) > 0, upper),
        "cross": (heard @ seen.transpose(0, 2, 1) > 0, every),
    }
    figures = {}
    for kind, (shared, pairs) in shares.items():
        truth, label = shared[:, pairs], grounded[:, pairs]
        recall = float(label[truth].mean()) if truth.any() else float("nan")
        specificity = float((~label[~truth]).mean()) if (~truth).any() else float("nan")
        figures[kind] = {
            "shared_share": float(truth.mean()),
            "recall": recall,
            "precision": float(truth[label].mean()) if label.any() else float("nan"),
            "balanced_accuracy": (recall + specificity) / 2,
        }
    return figures


def format_agreement(figures: dict[str, dict[str, float]]) -> str:
    """The shared-event diagnostic as a small table."""
    names = {"audio": "audio-audio", "visual": "visual-visual", "cross": "audio-visual"}
    lines = [f"{'pairs':>14}{'share an event':>16}{'recall':>9}{'precision':>11}{'balanced acc.':>15}"]
    for kind, row in figures.items():
        lines.append(
            f"{names[kind]:>14}{100 * row['shared_share']:>15.2f}%{row['recall']:>9.3f}{row['precision']:>11.3f}"
            f"{row['balanced_accuracy']:>15.3f}"
        )
    return "\n".join(lines)


def latent_events_of(labels_path: str | os.PathLike, avg) -> tuple[np.ndarray, np.ndarray]:
    """The latent events behind an LLP-sim pretraining store the label file `avg` was built from, row by row.

    A one-line error unless the source store is there, was written by `avvp data synth` as pretrain.h5, and holds
    the label file's videos in its order.
    """
    from avvp.errors import ConfigError
    from avvp.store import read_video_ids, store_info
    from avvp.synth import latent_pretrain_events

    source = avg.attrs.get("source")
    if source and not Path(source).is_file() and (Path(labels_path).parent / source).is_file():
        source = str(Path(labels_path).parent / source)  # recorded relative to where the labels were built
    if not source or not Path(source).is_file():
        raise ConfigError(f"{labels_path}: its source store {source!r} is not there; --latent needs it")
    attrs = store_info(source)["attrs"]
    if not (str(attrs.get("source", "")).startswith("LLP-sim") and str(attrs["source"]).endswith("pretrain")):
        raise ConfigError(f"{source}: not an LLP-sim pretraining store (avvp data synth); --latent knows no events")
    audio, visual = latent_pretrain_events(attrs["preset"], int(attrs["seed"]))
    if read_video_ids(source) != list(avg.video_ids) or len(audio) != len(avg.video_ids):
        raise ConfigError(f"{labels_path}: its videos are not those of {source} in order; --latent cannot pair them")
    return audio, visual
