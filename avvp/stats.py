"""Per-class modality figures of annotations (LLP paper, Figure 1): videos with a class heard, seen, both."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avvp.annotations import load_split
from avvp.classes import CLASSES
from avvp.errors import ConfigError
from avvp.io import atomic_path, check_picture

COLUMNS = ("labelled", "heard", "seen", "both", "heard_only", "seen_only")
"""Per class: videos whose weak labels list it; with an audio event, a visual event, both; one without the other."""


def class_modality_counts(annotations: str | os.PathLike, splits: tuple[str, ...] = ("val", "test")) -> dict:
    """Video counts per class and column of COLUMNS over the dense labels of `splits`: {column: (25,) int}.

    A split named twice is counted once.
    """
    splits = tuple(dict.fromkeys(splits))
    for name in splits:
        if name not in ("val", "test"):
            raise ConfigError(f"split {name!r}: only val and test have snippet-level annotations")
    loaded = [load_split(annotations, name) for name in splits]
    weak = np.concatenate([s.weak.labels for s in loaded])  # (N, 25)
    heard = np.concatenate([s.dense.audio.any(-1) for s in loaded])  # (N, 25)
    seen = np.concatenate([s.dense.visual.any(-1) for s in loaded])
    return {
        "videos": int(len(weak)),
        "splits": list(splits),
        "labelled": weak.sum(0),
        "heard": heard.sum(0),
        "seen": seen.sum(0),
        "both": (heard & seen).sum(0),
        "heard_only": (heard & ~seen).sum(0),
        "seen_only": (~heard & seen).sum(0),
    }


def format_counts(counts: dict) -> str:
    """The counts as a fixed-width table, one row per class and a total row."""
    lines = [f"{'class':<24}" + "".join(f"{name:>12}" for name in COLUMNS)]
    for i, name in enumerate(CLASSES):
        lines.append(f"{name:<24}" + "".join(f"{int(counts[c][i]):>12}" for c in COLUMNS))
    lines.append(f"{'total':<24}" + "".join(f"{int(counts[c].sum()):>12}" for c in COLUMNS))
    return "\n".join(lines)


def plot_counts(counts: dict, path: str | os.PathLike, title: str = "", overwrite: bool = True) -> Path:
    """A bar chart per class: videos with the event heard only, seen only and both (stacked), written atomically.

    The format follows the extension of `path`: .png, .pdf, .svg or .jpg.
    """
    path = check_picture(path, overwrite)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-(counts["heard"] + counts["seen_only"]), kind="stable")  # most frequent class first
    names = [CLASSES[i].replace("_", " ") for i in order]
    y = np.arange(len(order))
    parts = (
        ("both", "heard and seen", "#6a51a3"),
        ("heard_only", "heard only", "#e6550d"),
        ("seen_only", "seen only", "#31a354"),
    )
    fig, ax = plt.subplots(figsize=(9, 8.5), dpi=110)
    left = np.zeros(len(order))
    for key, label, color in parts:
        values = counts[key][order]
        ax.barh(y, values, left=left, color=color, label=label, height=0.75)
        left = left + values
    ax.set_yticks(y, names, fontsize=10)
    ax.invert_yaxis()
    ax.set_xlabel("videos")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", frameon=False)
    ax.set_title(title or f"Videos with each event heard, seen or both ({'+'.join(counts['splits'])})")
    fig.tight_layout()
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."))
    plt.close(fig)
    return path
