"""The official LLP evaluation (segment- and event-level F1), vectorised over all videos at once.

Inputs are (N, 25, 10) bool matrices per modality. Per video and class with any positive snippet in
prediction or ground truth, F1 = 2TP / (2TP + FP + FN); a video's score is the mean over those classes
(1.0 when there is none); the reported figure is the mean over videos, x100. Audio-visual is the AND of
audio and visual; Type@AV the mean of Audio, Visual and AV; Event@AV pools the audio and visual counts
per class before the F1. At event level an event is a maximal run of positive snippets; a predicted
event is a true positive when its IoU with some true event of its class is >= 0.5, and a true event with
no prediction at IoU >= 0.5 is a false negative.
"""

from __future__ import annotations

import numpy as np

from avvp.annotations import DenseLabels
from avvp.classes import NUM_SNIPPETS

MODALITIES = ("audio", "visual", "av")
SCORE_NAMES = ("audio", "visual", "av", "type_av", "event_av")
SCORE_TITLES = {"audio": "Audio", "visual": "Visual", "av": "AV", "type_av": "Type@AV", "event_av": "Event@AV"}
LEVELS = ("segment", "event")
MAX_RUNS = (NUM_SNIPPETS + 1) // 2
"""At most five maximal runs fit in ten snippets."""
DECISION_THRESHOLD = 0.5
"""The official inference's probability threshold (inclusive), for the video-level and the snippet decisions."""


def gate_predictions(
    video_prob: np.ndarray, audio_prob: np.ndarray, visual_prob: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Official inference: a snippet is positive when its probability and its video's are both >= threshold.

    video_prob (N, 25); audio_prob, visual_prob (N, 25, 10). Returns audio, visual predictions (N, 25, 10) bool.
    """
    video_on = (np.asarray(video_prob) >= threshold)[:, :, None]  # (N, 25, 1)
    return (np.asarray(audio_prob) >= threshold) & video_on, (np.asarray(visual_prob) >= threshold) & video_on


def _row_codes(dense: np.ndarray) -> np.ndarray:
    """Each row of 10 snippets as the integer whose bit t is snippet t: (..., 10) bool -> (...) int64."""
    return dense.astype(bool, copy=False) @ (1 << np.arange(NUM_SNIPPETS))


BIT_COUNT = np.array([bin(code).count("1") for code in range(2**NUM_SNIPPETS)])
"""Positive snippets of a row, by row code."""


def segment_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """TP, FP, FN per video and class over the snippets: (3, N, 25) int."""
    pred_code, true_code = _row_codes(pred), _row_codes(truth)  # (N, 25)
    return np.stack(
        [
            BIT_COUNT[pred_code & true_code],
            BIT_COUNT[pred_code & ~true_code],
            BIT_COUNT[~pred_code & true_code],
        ]
    )


def _run_masks(dense: np.ndarray) -> np.ndarray:
    """One mask per maximal run of each row: (..., 10) -> (..., MAX_RUNS, 10) bool, empty slots all False."""
    dense = dense.astype(bool)
    starts = dense & ~np.concatenate([np.zeros_like(dense[..., :1]), dense[..., :-1]], axis=-1)
    run_id = np.where(dense, np.cumsum(starts, axis=-1), 0)  # (..., 10): 1-based run index, 0 off
    return run_id[..., None, :] == np.arange(1, MAX_RUNS + 1)[:, None]


def _run_table() -> tuple[np.ndarray, np.ndarray]:
    """Onset and offset of the maximal runs of every possible row, by row code: two (2**10, MAX_RUNS) int arrays.

    Empty run slots have onset = offset = 0.
    """
    rows = (np.arange(2**NUM_SNIPPETS)[:, None] >> np.arange(NUM_SNIPPETS)) & 1  # (1024, 10)
    runs = _run_masks(rows.astype(bool))  # (1024, R, 10)
    length = runs.sum(-1)
    onset = np.where(length > 0, runs.argmax(-1), 0)
    return onset, onset + length


RUN_ONSET, RUN_OFFSET = _run_table()


def event_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """TP, FP, FN events per video and class: (3, N, 25) int."""
    # A row has only 2**10 possible values, so each distinct (prediction, truth) pair of non-empty rows is
    # scored once; a pair of empty rows counts nothing.
    pair_codes = (_row_codes(pred) << NUM_SNIPPETS | _row_codes(truth)).ravel()  # (N * 25,)
    active = np.flatnonzero(pair_codes)
    pairs, inverse = np.unique(pair_codes[active], return_inverse=True)  # (U,), (len(active),)
    pred_code, true_code = pairs >> NUM_SNIPPETS, pairs & (2**NUM_SNIPPETS - 1)
    pred_on, pred_off = RUN_ONSET[pred_code][:, :, None], RUN_OFFSET[pred_code][:, :, None]  # (U, R, 1)
    true_on, true_off = RUN_ONSET[true_code][:, None, :], RUN_OFFSET[true_code][:, None, :]  # (U, 1, R)
    inter = np.maximum(np.minimum(pred_off, true_off) - np.maximum(pred_on, true_on), 0)  # (U, R, R)
    union = (pred_off - pred_on) + (true_off - true_on) - inter
    # IoU >= 0.5 in exact integers; an empty slot never matches (its intersection is 0).
    match = (inter > 0) & (2 * inter >= union)
    pred_exists, true_exists = pred_off[:, :, 0] > pred_on[:, :, 0], true_off[:, 0, :] > true_on[:, 0, :]  # (U, R)
    tp = (match.any(-1) & pred_exists).sum(-1)
    fp = (~match.any(-1) & pred_exists).sum(-1)
    fn = (~match.any(-2) & true_exists).sum(-1)
    counts = np.zeros((3, pair_codes.size), dtype=np.int64)
    counts[:, active] = np.stack([tp, fp, fn])[:, inverse]
    return counts.reshape((3, *pred.shape[:-1]))


def video_f1(counts: np.ndarray) -> np.ndarray:
    """Mean F1 over the classes that have any positive, per video; 1.0 where none has. counts (3, N, 25) -> (N,)."""
    tp, fp, fn = counts.astype(np.float64)
    denominator = 2 * tp + fp + fn
    active = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=active)
    n_active = active.sum(-1)
    return np.where(n_active > 0, f1.sum(-1) / np.maximum(n_active, 1), 1.0)


def video_scores(pred: DenseLabels, truth: DenseLabels, level: str = "segment") -> dict[str, np.ndarray]:
    """Per-video scores (not x100): audio, visual, av, type_av, event_av, each (N,)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
    _check_aligned(pred, truth)
    count = segment_counts if level == "segment" else event_counts
    counts = {
        "audio": count(pred.audio, truth.audio),
        "visual": count(pred.visual, truth.visual),
        "av": count(pred.audio_visual, truth.audio_visual),
    }
    scores = {name: video_f1(c) for name, c in counts.items()}
    scores["type_av"] = (scores["audio"] + scores["visual"] + scores["av"]) / 3
    scores["event_av"] = video_f1(counts["audio"] + counts["visual"])
    return scores


def evaluate(pred: DenseLabels, truth: DenseLabels) -> dict[str, dict[str, float]]:
    """The ten numbers of the LLP evaluation: {level: {score: value x100}} for level segment and event."""
    return {
        level: {
            name: float(100 * s.mean()) if len(s) else float("nan")
            for name, s in video_scores(pred, truth, level).items()
        }
        for level in LEVELS
    }


def per_class_f1(pred: DenseLabels, truth: DenseLabels, level: str = "segment") -> dict[str, np.ndarray]:
    """F1 per class, counts pooled over all videos: {audio, visual, av: (25,)}; NaN for a class never positive."""
    _check_aligned(pred, truth)
    count = segment_counts if level == "segment" else event_counts
    result = {}
    for name, p, t in (
        ("audio", pred.audio, truth.audio),
        ("visual", pred.visual, truth.visual),
        ("av", pred.audio_visual, truth.audio_visual),
    ):
        tp, fp, fn = count(p, t).sum(axis=1).astype(np.float64)  # (25,) each
        denominator = 2 * tp + fp + fn
        result[name] = np.divide(2 * tp, denominator, out=np.full_like(tp, np.nan), where=denominator > 0)
    return result


def _check_aligned(pred: DenseLabels, truth: DenseLabels) -> None:
    if list(pred.video_ids) != list(truth.video_ids):
        raise ValueError("predictions and ground truth must list the same videos in the same order")
    for name in ("audio", "visual"):
        if getattr(pred, name).shape != getattr(truth, name).shape:
            raise ValueError(
                f"{name} predictions have shape {getattr(pred, name).shape}; ground truth {getattr(truth, name).shape}"
            )


def format_table(scores: dict[str, dict[str, float]]) -> str:
    """The ten numbers as a small fixed-width table, under a line that says what they are."""
    header = (
        f"F1 in %, higher is better (segment- and event-level; Type@AV: mean of Audio, Visual, AV)\n{'level':<8}"
        + "".join(f"{SCORE_TITLES[name]:>10}" for name in SCORE_NAMES)
    )
    lines = [header]
    for level in LEVELS:
        lines.append(f"{level:<8}" + "".join(f"{scores[level][name]:>10.1f}" for name in SCORE_NAMES))
    return "\n".join(lines)
