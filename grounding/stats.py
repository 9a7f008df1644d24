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
    """Share of the snippet pairs i < j labelled positive (same component)."""
    components_per_video: np.ndarray
    """(11,) number of videos with 0..10 components (index 0 is always 0)."""
    component_sizes: np.ndarray
    """(11,) number of components of 0..10 snippets (index 0 is always 0)."""


def label_stats(components: np.ndarray, rows_at_a_time: int = 1 << 16) -> LabelStats:
    """Figures of (N, 10) component ids, computed a block of rows at a time."""
    counts = np.zeros(NUM_SNIPPETS + 1, dtype=np.int64)
    sizes = np.zeros(NUM_SNIPPETS + 1, dtype=np.int64)
    positive = 0
    for start in range(0, len(components), rows_at_a_time):
        block = components[start : start + rows_at_a_time].astype(np.int64)
        size_of = (block[:, :, None] == np.arange(NUM_SNIPPETS)).sum(axis=1)  # (n, 10) size of component c
        counts += np.bincount(block.max(axis=1) + 1, minlength=NUM_SNIPPETS + 1)
        sizes += np.bincount(size_of[size_of > 0], minlength=NUM_SNIPPETS + 1)
        positive += int((size_of * (size_of - 1) // 2).sum())
    videos = len(components)
    share = positive / (videos * PAIRS_PER_VIDEO) if videos else float("nan")
    return LabelStats(videos, share, counts, sizes)


def format_stats(stats: LabelStats) -> str:
    """A plain-text report: the positive share and the two distributions."""
    lines = [
        f"videos: {stats.videos}",
        f"positive pairs: {100 * stats.positive_pairs:.2f}% of the {PAIRS_PER_VIDEO} snippet pairs per video",
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
