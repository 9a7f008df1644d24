"""Reference predictions that bound what a parser should score: the weak-label oracle, nothing, Speech everywhere.

- `weak-oracle`: every class of the video's true weak labels, on all 10 snippets of both modalities (what
  a parser that knows the video-level labels but cannot localise or tell the modalities apart would say);
- `nothing`: no event anywhere;
- `speech-everywhere`: Speech on all snippets of both modalities (LLP's most frequent class).
"""

from __future__ import annotations

import os

import numpy as np

from avvp.annotations import DenseLabels, Split, load_scored_split
from avvp.classes import CLASS_INDEX, NUM_CLASSES, NUM_SNIPPETS
from avvp.errors import ConfigError
from avvp.metrics import evaluate

REFERENCES = ("weak-oracle", "nothing", "speech-everywhere")
REFERENCE_NOTES = {
    "weak-oracle": "the video's true weak labels on all 10 snippets, heard and seen: no localisation",
    "nothing": "no event at all (a video without events of a kind scores 100 there, hence not 0)",
    "speech-everywhere": "Speech, LLP's most frequent class, heard and seen on every snippet",
}
"""One line per reference prediction, printed beside its figures."""


def reference_predictions(split: Split, name: str) -> DenseLabels:
    """The reference prediction `name` (one of REFERENCES) for the videos of `split`."""
    n = len(split.video_ids)
    if name == "weak-oracle":
        classes = split.weak.labels  # (N, 25)
    elif name == "nothing":
        classes = np.zeros((n, NUM_CLASSES), dtype=bool)
    elif name == "speech-everywhere":
        classes = np.zeros((n, NUM_CLASSES), dtype=bool)
        classes[:, CLASS_INDEX["Speech"]] = True
    else:
        raise ConfigError(f"unknown reference prediction {name!r}; choose one of {', '.join(REFERENCES)}")
    dense = np.repeat(classes[:, :, None], NUM_SNIPPETS, axis=2)  # (N, 25, 10)
    return DenseLabels(video_ids=list(split.video_ids), audio=dense, visual=dense.copy())


def reference_scores(annotations: str | os.PathLike, split: str = "test") -> dict[str, dict[str, dict[str, float]]]:
    """The ten numbers of every reference prediction on a split with dense labels: {name: {level: {score: x100}}}."""
    if split not in ("val", "test"):
        raise ConfigError(f"split {split!r}: only val and test have snippet-level annotations")
    data = load_scored_split(annotations, split)
    return {name: evaluate(reference_predictions(data, name), data.dense) for name in REFERENCES}
