"""The LLP evaluation written the slow, obvious way: per video, per class, plain Python loops.

Written directly from the "Evaluation protocol" of docs/design.md, independently of `avvp.metrics` (it imports
nothing from it). It is the oracle the vectorised metrics are tested against and the slow path of
`avvp.benchmarks.bench_metrics`. Inputs are anything with `.audio` and `.visual` (N, 25, 10) bool arrays,
such as `avvp.annotations.DenseLabels`.
"""

from __future__ import annotations

SCORE_NAMES = ("audio", "visual", "av", "type_av", "event_av")
LEVELS = ("segment", "event")


def extract_events(row: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive positive snippets, as (onset, offset) with offset exclusive."""
    events = []
    onset = None
    for t, positive in enumerate(row):
        if positive and onset is None:
            onset = t
        elif not positive and onset is not None:
            events.append((onset, t))
            onset = None
    if onset is not None:
        events.append((onset, len(row)))
    return events


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two [onset, offset) intervals."""
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - intersection
    return intersection / union


def match_events(predicted: list[tuple[int, int]], true: list[tuple[int, int]]) -> tuple[int, int, int]:
    """TP, FP, FN: a prediction is a TP when some true event has IoU >= 0.5 with it (several may match the same
    true event), else a FP; a true event no prediction reaches at IoU >= 0.5 is a FN."""
    tp = fp = fn = 0
    for p in predicted:
        if any(iou(p, t) >= 0.5 for t in true):
            tp += 1
        else:
            fp += 1
    for t in true:
        if not any(iou(p, t) >= 0.5 for p in predicted):
            fn += 1
    return tp, fp, fn


def segment_counts(pred_row: list[bool], true_row: list[bool]) -> tuple[int, int, int]:
    """TP, FP, FN over the snippets of one (video, class) row."""
    tp = fp = fn = 0
    for p, t in zip(pred_row, true_row, strict=True):
        if p and t:
            tp += 1
        elif p:
            fp += 1
        elif t:
            fn += 1
    return tp, fp, fn


def event_counts(pred_row: list[bool], true_row: list[bool]) -> tuple[int, int, int]:
    """TP, FP, FN over the events of one (video, class) row."""
    return match_events(extract_events(pred_row), extract_events(true_row))


def video_f1(class_counts: list[tuple[int, int, int]]) -> float:
    """Mean over the classes with any positive of 2TP / (2TP + FP + FN); 1.0 when no class has one."""
    f1s = []
    for tp, fp, fn in class_counts:
        if tp + fp + fn > 0:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    if not f1s:
        return 1.0
    return sum(f1s) / len(f1s)


def _and(a: list[bool], b: list[bool]) -> list[bool]:
    return [x and y for x, y in zip(a, b, strict=True)]


def video_scores(pred, truth, level: str = "segment") -> dict[str, list[float]]:
    """Per-video scores (not x100) for audio, visual, av, type_av, event_av, each a list of N floats."""
    count = segment_counts if level == "segment" else event_counts
    pred_audio, pred_visual = pred.audio.tolist(), pred.visual.tolist()
    true_audio, true_visual = truth.audio.tolist(), truth.visual.tolist()
    scores = {name: [] for name in SCORE_NAMES}
    for v in range(len(true_audio)):
        audio, visual, av, pooled = [], [], [], []
        for c in range(len(true_audio[v])):
            a = count(pred_audio[v][c], true_audio[v][c])
            s = count(pred_visual[v][c], true_visual[v][c])
            audio.append(a)
            visual.append(s)
            av.append(count(_and(pred_audio[v][c], pred_visual[v][c]), _and(true_audio[v][c], true_visual[v][c])))
            pooled.append((a[0] + s[0], a[1] + s[1], a[2] + s[2]))
        scores["audio"].append(video_f1(audio))
        scores["visual"].append(video_f1(visual))
        scores["av"].append(video_f1(av))
        scores["type_av"].append((scores["audio"][-1] + scores["visual"][-1] + scores["av"][-1]) / 3)
        scores["event_av"].append(video_f1(pooled))
    return scores


def evaluate(pred, truth) -> dict[str, dict[str, float]]:
    """The ten numbers: {level: {score: mean over videos x100}}."""
    result = {}
    for level in LEVELS:
        scores = video_scores(pred, truth, level)
        result[level] = {name: 100 * sum(values) / len(values) for name, values in scores.items()}
    return result


def per_class_f1(pred, truth, level: str = "segment") -> dict[str, list[float]]:
    """F1 per class with TP, FP, FN summed over all videos: {audio, visual, av: 25 floats}, NaN if never positive."""
    count = segment_counts if level == "segment" else event_counts
    pred_audio, pred_visual = pred.audio.tolist(), pred.visual.tolist()
    true_audio, true_visual = truth.audio.tolist(), truth.visual.tolist()
    num_classes = len(true_audio[0]) if true_audio else 0
    result = {}
    for name in ("audio", "visual", "av"):
        f1s = []
        for c in range(num_classes):
            tp = fp = fn = 0
            for v in range(len(true_audio)):
                if name == "audio":
                    p, t = pred_audio[v][c], true_audio[v][c]
                elif name == "visual":
                    p, t = pred_visual[v][c], true_visual[v][c]
                else:
                    p = _and(pred_audio[v][c], pred_visual[v][c])
                    t = _and(true_audio[v][c], true_visual[v][c])
                counts = count(p, t)
                tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else float("nan"))
        result[name] = f1s
    return result
