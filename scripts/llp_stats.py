"""Per-class figures of the real LLP annotations, for the LLP-sim generator (`avvp data synth`).

    .venv/bin/python scripts/llp_stats.py                       # reads ../shared/llp
    .venv/bin/python scripts/llp_stats.py --annotations DIR --out avvp/data/llp_stats.json

Reads the five public LLP annotation files and writes small aggregate figures (counts and histograms,
never the annotations themselves): class frequency among train videos; labels per video and how classes
combine, for train and for val+test (whose labels were refined by the dense annotation); per class the
share of weak labels heard only / seen only / both / neither (from the dense val+test labels); per class
and modality the histogram of positive snippets; the histogram of 10-snippet event patterns per
modality; how the audio and visual patterns of a class heard and seen relate, by snippets heard; event
durations and events per video per modality.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from avvp.annotations import load_split
from avvp.classes import CLASSES, NUM_SNIPPETS

DEFAULT_ANNOTATIONS = Path(__file__).resolve().parents[1].parent / "shared" / "llp"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "avvp" / "data" / "llp_stats.json"
BIT_WEIGHTS = 1 << np.arange(NUM_SNIPPETS)
"""Snippet t is bit t of a pattern integer."""


def run_starts(dense: np.ndarray) -> np.ndarray:
    """True where a maximal run of positives starts: (..., 10) bool."""
    before = np.concatenate([np.zeros_like(dense[..., :1]), dense[..., :-1]], axis=-1)
    return dense & ~before


def run_lengths(dense: np.ndarray) -> np.ndarray:
    """Lengths of all maximal runs in a (..., 10) bool array, flattened."""
    rows = dense.reshape(-1, NUM_SNIPPETS).astype(np.int8)
    edges = np.diff(np.pad(rows, ((0, 0), (1, 1))), axis=1).ravel()  # +1 at a run's start, -1 after its end
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def histogram(values: np.ndarray, size: int) -> list[int]:
    return np.bincount(np.asarray(values, dtype=np.int64).ravel(), minlength=size)[:size].tolist()


def label_sets(weak: np.ndarray) -> dict:
    """How labels combine in videos: labels per video, class counts of one-label and of multi-label videos,
    and the class co-occurrence counts of multi-label videos (25 x 25, zero diagonal)."""
    count = weak.sum(1)
    multi = weak[count >= 2].astype(np.int64)
    cooccurrence = multi.T @ multi
    np.fill_diagonal(cooccurrence, 0)
    return {
        "labels_per_video": histogram(count, 8),
        "single_class_count": weak[count == 1].sum(0).tolist(),
        "multi_class_count": multi.sum(0).tolist(),
        "cooccurrence": cooccurrence.tolist(),
    }


def compute_stats(annotations: Path) -> dict:
    """All figures the generator needs, as plain JSON-able values."""
    train, val, test = (load_split(annotations, name) for name in ("train", "val", "test"))
    weak = np.concatenate([val.weak.labels, test.weak.labels])  # (M, 25)
    audio = np.concatenate([val.dense.audio, test.dense.audio])  # (M, 25, 10)
    visual = np.concatenate([val.dense.visual, test.dense.visual])
    heard, seen = audio.any(-1), visual.any(-1)  # (M, 25)

    both = weak & heard & seen
    audio_both, visual_both = audio[both], visual[both]  # (B, 10)
    equal = (audio_both == visual_both).all(-1)
    visual_covers = ((audio_both | visual_both) == visual_both).all(-1)
    audio_covers = ((audio_both | visual_both) == audio_both).all(-1)
    coverage = audio_both.sum(-1)

    def patterns(dense: np.ndarray, present: np.ndarray) -> list[list[int]]:
        codes = dense[present] @ BIT_WEIGHTS
        values, counts = np.unique(codes, return_counts=True)
        return [[int(v), int(c)] for v, c in zip(values, counts, strict=True)]

    return {
        "description": "Aggregate figures of the LLP annotations for LLP-sim; written by scripts/llp_stats.py.",
        "classes": list(CLASSES),
        "videos": {"train": len(train.video_ids), "val": len(val.video_ids), "test": len(test.video_ids)},
        "train_class_count": train.weak.labels.sum(0).tolist(),
        "label_sets": {"train": label_sets(train.weak.labels), "eval": label_sets(weak)},
        "modality_share": {
            "audio_only": (weak & heard & ~seen).sum(0).tolist(),
            "visual_only": (weak & ~heard & seen).sum(0).tolist(),
            "both": both.sum(0).tolist(),
            "neither": (weak & ~heard & ~seen).sum(0).tolist(),
        },
        "events_outside_weak_labels": int(((heard | seen) & ~weak).sum()),
        "coverage": {
            "audio": [histogram(audio[:, c].sum(-1)[heard[:, c]], NUM_SNIPPETS + 1) for c in range(len(CLASSES))],
            "visual": [histogram(visual[:, c].sum(-1)[seen[:, c]], NUM_SNIPPETS + 1) for c in range(len(CLASSES))],
        },
        "patterns": {"audio": patterns(audio, heard), "visual": patterns(visual, seen)},
        "both_relation": {  # by the number of snippets heard (0..10)
            "equal": histogram(coverage[equal], NUM_SNIPPETS + 1),
            "visual_superset": histogram(coverage[visual_covers & ~equal], NUM_SNIPPETS + 1),
            "audio_superset": histogram(coverage[audio_covers & ~equal], NUM_SNIPPETS + 1),
            "other": histogram(coverage[~visual_covers & ~audio_covers], NUM_SNIPPETS + 1),
        },
        "event_duration": {
            "audio": histogram(run_lengths(audio), NUM_SNIPPETS + 1),
            "visual": histogram(run_lengths(visual), NUM_SNIPPETS + 1),
        },
        "events_per_video": {
            "audio": histogram(run_starts(audio).sum((1, 2)), 16),
            "visual": histogram(run_starts(visual).sum((1, 2)), 16),
        },
        "classes_per_video": {"audio": histogram(heard.sum(1), 8), "visual": histogram(seen.sum(1), 8)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS, help="folder with the AVVP_*.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    args = parser.parse_args()
    stats = compute_stats(args.annotations)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
