"""Per-class modality figures of annotations (LLP paper, Figure 1): videos with a class heard, seen, both."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avvp.annotations import load_split
from avvp.classes import CLASSES
from avvp.errors import AvvpError, ConfigError
from avvp.io import atomic_path, check_picture

COLUMNS = ("labelled", "heard", "seen", "both", "heard_only", "seen_only", "no_event", "unlabelled")
"""Per class, videos: whose weak labels list it; with an audio event of it, a visual event, both, one without the
other; labelled but with no event annotated; with an event annotated but not labelled. So heard = both + heard_only,
seen = both + seen_only, and labelled - no_event + unlabelled = both + heard_only + seen_only."""
LEGEND = (
    "videos per class: labelled = its weak labels list the class; heard/seen = an audio/visual event of it is\n"
    "annotated; both, heard_only, seen_only split heard or seen; no_event = labelled, no event annotated;\n"
    "unlabelled = an event annotated, not in the weak labels. labelled - no_event + unlabelled = both +\n"
    "heard_only + seen_only."
)


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
    annotated = heard | seen
    return {
        "videos": int(len(weak)),
        "splits": list(splits),
        "labelled": weak.sum(0),
        "heard": heard.sum(0),
        "seen": seen.sum(0),
        "both": (heard & seen).sum(0),
        "heard_only": (heard & ~seen).sum(0),
        "seen_only": (~heard & seen).sum(0),
        "no_event": (weak & ~annotated).sum(0),
        "unlabelled": (~weak & annotated).sum(0),
    }


def annotation_source(annotations: str | os.PathLike) -> str:
    """Whose annotations a folder holds: LLP-sim's own (it writes its training events, LLPsim_train_*.csv), real
    LLP's copied by LLP-sim (`avvp data synth --annotations`), or LLP's."""
    folder = Path(annotations)
    if not (folder / "LLPsim_train_audio.csv").is_file():
        return "LLP"
    from avvp.inputs import open_hdf5

    try:
        with open_hdf5(folder / "llp.h5") as handle:
            copied = "(annotations " in str(handle.attrs.get("source", ""))
    except AvvpError:
        copied = False
    return "LLP (val/test events copied by LLP-sim)" if copied else "LLP-sim (synthetic)"


def format_counts(counts: dict) -> str:
    """The counts as a fixed-width table (under 100 columns), one row per class and a total row."""
    widths = [max(len(name) + 2, 7) for name in COLUMNS]
    lines = [f"{'class':<23}" + "".join(f"{name:>{w}}" for name, w in zip(COLUMNS, widths, strict=True))]
    for i, name in enumerate(CLASSES):
        lines.append(f"{name:<23}" + "".join(f"{int(counts[c][i]):>{w}}" for c, w in zip(COLUMNS, widths, strict=True)))
    lines.append(
        f"{'total':<23}" + "".join(f"{int(counts[c].sum()):>{w}}" for c, w in zip(COLUMNS, widths, strict=True))
    )
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
