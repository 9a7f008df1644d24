"""The vectorised metrics against the per-video oracle, and hand-worked cases of the evaluation protocol."""

import math

import numpy as np
import pytest

from avvp.annotations import DenseLabels, load_split
from avvp.baselines import reference_predictions
from avvp.benchmarks import oracles
from avvp.classes import CLASS_INDEX, NUM_CLASSES, NUM_SNIPPETS
from avvp.metrics import (
    SCORE_NAMES,
    evaluate,
    event_counts,
    gate_predictions,
    per_class_f1,
    segment_counts,
    video_scores,
)

SPEECH, DOG = CLASS_INDEX["Speech"], CLASS_INDEX["Dog"]


def dense(n: int = 1) -> np.ndarray:
    return np.zeros((n, NUM_CLASSES, NUM_SNIPPETS), dtype=bool)


def labels(audio: np.ndarray, visual: np.ndarray) -> DenseLabels:
    return DenseLabels(video_ids=[f"vid{i:05d}_0_10" for i in range(len(audio))], audio=audio, visual=visual)


def random_dense(rng: np.random.Generator, n: int, density: float) -> np.ndarray:
    """A few active classes per video, snippets positive with `density`, plus all-empty and all-full rows."""
    active = rng.random((n, NUM_CLASSES, 1)) < 0.2
    matrix = active & (rng.random((n, NUM_CLASSES, NUM_SNIPPETS)) < density)
    matrix[rng.random((n, NUM_CLASSES)) < 0.03] = True
    matrix[rng.random((n, NUM_CLASSES)) < 0.03] = False
    return matrix


@pytest.fixture(scope="module")
def random_case() -> tuple[DenseLabels, DenseLabels]:
    rng = np.random.default_rng(2021)
    pred_parts, true_parts = [], []
    for density in (0.05, 0.2, 0.5, 0.8, 1.0):
        for _ in range(2):  # audio, visual
            pred_parts.append(random_dense(rng, 120, density))
            true_parts.append(random_dense(rng, 120, rng.choice([0.1, 0.5, 0.9])))
    pred_audio, pred_visual = np.concatenate(pred_parts[0::2]), np.concatenate(pred_parts[1::2])
    true_audio, true_visual = np.concatenate(true_parts[0::2]), np.concatenate(true_parts[1::2])
    # Whole videos: nothing anywhere, everything everywhere, and nothing predicted against full truth.
    for i, (p, t) in enumerate([(False, False), (True, True), (False, True), (True, False)]):
        pred_audio[i] = pred_visual[i] = p
        true_audio[i] = true_visual[i] = t
    return labels(pred_audio, pred_visual), labels(true_audio, true_visual)


def test_fast_metrics_equal_oracle_on_random_videos(random_case):
    pred, truth = random_case
    assert len(truth.video_ids) == 600
    fast, slow = evaluate(pred, truth), oracles.evaluate(pred, truth)
    for level in ("segment", "event"):
        for name in SCORE_NAMES:
            assert fast[level][name] == pytest.approx(slow[level][name], abs=1e-9), (level, name)
        fast_videos, slow_videos = video_scores(pred, truth, level), oracles.video_scores(pred, truth, level)
        for name in SCORE_NAMES:
            np.testing.assert_allclose(fast_videos[name], slow_videos[name], rtol=0, atol=1e-9, err_msg=name)
    # The constructed whole-video cases: all-empty scores 1.0, all-full 1.0, one side empty 0.0.
    segment = video_scores(pred, truth, "segment")
    for name in SCORE_NAMES:
        assert segment[name][:4].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_fast_per_class_f1_equals_oracle(random_case):
    pred, truth = random_case
    for level in ("segment", "event"):
        fast, slow = per_class_f1(pred, truth, level), oracles.per_class_f1(pred, truth, level)
        for name in ("audio", "visual", "av"):
            np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-9, err_msg=f"{level} {name}")


def test_event_counts_equal_oracle_on_every_row_against_every_single_event():
    """Every one of the 1024 predicted rows against every truth row with at most one event."""
    rows = ((np.arange(2**NUM_SNIPPETS)[:, None] >> np.arange(NUM_SNIPPETS)) & 1).astype(bool)  # (1024, 10)
    truths = [np.zeros(NUM_SNIPPETS, dtype=bool)]
    for onset in range(NUM_SNIPPETS):
        for offset in range(onset + 1, NUM_SNIPPETS + 1):
            row = np.zeros(NUM_SNIPPETS, dtype=bool)
            row[onset:offset] = True
            truths.append(row)
    pred = np.repeat(rows, len(truths), axis=0)[:, None, :]  # (1024 * 56, 1, 10)
    truth = np.tile(np.stack(truths), (len(rows), 1))[:, None, :]
    fast_event = event_counts(pred, truth)[:, :, 0].T.tolist()  # (1024 * 56, 3)
    fast_segment = segment_counts(pred, truth)[:, :, 0].T.tolist()
    for p, t, event, segment in zip(pred[:, 0].tolist(), truth[:, 0].tolist(), fast_event, fast_segment, strict=True):
        assert tuple(event) == oracles.event_counts(p, t), (p, t)
        assert tuple(segment) == oracles.segment_counts(p, t), (p, t)


def test_nothing_predicted_nothing_true_scores_one():
    empty = labels(dense(), dense())
    for level in ("segment", "event"):
        scores = video_scores(empty, empty, level)
        assert {name: float(s[0]) for name, s in scores.items()} == dict.fromkeys(SCORE_NAMES, 1.0)
        assert evaluate(empty, empty)[level] == dict.fromkeys(SCORE_NAMES, 100.0)


def one_class_case(pred_audio_row, true_audio_row, pred_visual_row=None, true_visual_row=None):
    """Speech rows given as (onset, offset) lists; the visual rows default to empty."""

    def build(runs):
        matrix = dense()
        for onset, offset in runs or []:
            matrix[0, SPEECH, onset:offset] = True
        return matrix

    return (
        labels(build(pred_audio_row), build(pred_visual_row)),
        labels(build(true_audio_row), build(true_visual_row)),
    )


def test_iou_exactly_half_is_a_match():
    pred, truth = one_class_case([(0, 2)], [(0, 4)])  # IoU 2/4
    assert event_counts(pred.audio, truth.audio)[:, 0, SPEECH].tolist() == [1, 0, 0]
    assert video_scores(pred, truth, "event")["audio"][0] == 1.0
    assert oracles.iou((0, 2), (0, 4)) == 0.5
    # Segment level sees 2 of 4 snippets: F1 = 4 / 6.
    assert video_scores(pred, truth, "segment")["audio"][0] == pytest.approx(2 / 3, abs=1e-12)


def test_iou_just_below_half_is_no_match():
    pred, truth = one_class_case([(0, 4)], [(0, 9)])  # IoU 4/9, the largest value below 1/2 in ten snippets
    assert event_counts(pred.audio, truth.audio)[:, 0, SPEECH].tolist() == [0, 1, 1]
    assert video_scores(pred, truth, "event")["audio"][0] == 0.0
    assert video_scores(pred, truth, "segment")["audio"][0] == pytest.approx(8 / 13, abs=1e-12)
    pred, truth = one_class_case([(2, 6)], [(0, 4), (5, 10)])  # IoU 2/6 and 1/8: no match, 1 FP + 2 FN
    assert event_counts(pred.audio, truth.audio)[:, 0, SPEECH].tolist() == [0, 1, 2]


def test_two_predictions_matching_one_true_event_are_two_true_positives():
    # Maximal runs of one row are separated by a gap, so two of them can never both reach IoU 0.5 with one
    # run (the test above checks every row against every single event); the rule is seen with event lists.
    assert oracles.match_events([(0, 2), (0, 3)], [(0, 4)]) == (2, 0, 0)
    assert oracles.match_events([(0, 2), (5, 6)], [(0, 4)]) == (1, 1, 0)
    # One prediction matching one of two true events: the other is a FN.
    pred, truth = one_class_case([(0, 3)], [(0, 4), (6, 8)])
    assert event_counts(pred.audio, truth.audio)[:, 0, SPEECH].tolist() == [1, 0, 1]
    assert video_scores(pred, truth, "event")["audio"][0] == pytest.approx(2 / 3, abs=1e-12)


def test_event_av_pools_counts_over_audio_and_visual():
    # Segment level: audio TP 1 FP 9 (F1 2/11), visual TP 1 (F1 1); pooled TP 2 FP 9 -> 4/13, not the mean 13/22.
    pred, truth = one_class_case([(0, 10)], [(0, 1)], [(0, 1)], [(0, 1)])
    scores = video_scores(pred, truth, "segment")
    assert scores["audio"][0] == pytest.approx(2 / 11, abs=1e-12)
    assert scores["visual"][0] == 1.0
    assert scores["event_av"][0] == pytest.approx(4 / 13, abs=1e-12)
    assert (scores["audio"][0] + scores["visual"][0]) / 2 == pytest.approx(13 / 22, abs=1e-12)
    # AV: predicted on snippet 0 only, true on snippet 0 only.
    assert scores["av"][0] == 1.0
    assert scores["type_av"][0] == pytest.approx((2 / 11 + 1 + 1) / 3, abs=1e-12)
    # Event level: audio three matched events (F1 1), visual one FP and one FN (F1 0); pooled 6 / 8, not 1/2.
    pred, truth = one_class_case([(0, 2), (3, 5), (6, 8)], [(0, 2), (3, 5), (6, 8)], [(0, 2)], [(5, 10)])
    scores = video_scores(pred, truth, "event")
    assert (scores["audio"][0], scores["visual"][0]) == (1.0, 0.0)
    assert scores["event_av"][0] == pytest.approx(0.75, abs=1e-12)


def test_event_av_is_pooled_per_class_then_averaged_over_classes():
    pred, truth = labels(dense(), dense()), labels(dense(), dense())
    pred.audio[0, SPEECH, :2] = truth.audio[0, SPEECH, :4] = True  # Speech audio TP 2 FN 2
    pred.visual[0, DOG, :] = truth.visual[0, DOG, :2] = True  # Dog visual TP 2 FP 8
    scores = video_scores(pred, truth, "segment")
    # Per class: Speech 4/6, Dog 4/12, mean 1/2 (pooling over the classes too would give 8/22).
    assert scores["event_av"][0] == pytest.approx(0.5, abs=1e-12)
    assert scores["audio"][0] == pytest.approx(4 / 6, abs=1e-12)


def test_video_mean_and_times_100():
    pred, truth = labels(dense(2), dense(2)), labels(dense(2), dense(2))
    pred.audio[0, SPEECH, :2] = truth.audio[0, SPEECH, :4] = True  # video 0 audio 2/3; video 1 nothing: 1.0
    assert evaluate(pred, truth)["segment"]["audio"] == pytest.approx(100 * (2 / 3 + 1) / 2, abs=1e-9)


def test_gate_predictions_is_inclusive_at_half():
    video_prob = np.zeros((1, NUM_CLASSES))
    audio_prob = np.zeros((1, NUM_CLASSES, NUM_SNIPPETS))
    visual_prob = np.zeros((1, NUM_CLASSES, NUM_SNIPPETS))
    video_prob[0, :3] = [0.5, 0.4999, 0.9]
    audio_prob[0, 0, :3] = [0.5, 0.4999, 1.0]
    audio_prob[0, 1, :] = 0.9  # gated off by its video probability
    audio_prob[0, 2, 5] = 0.5
    visual_prob[0, 2, 9] = 0.75
    audio, visual = gate_predictions(video_prob, audio_prob, visual_prob)
    assert audio.dtype == bool and audio.shape == (1, NUM_CLASSES, NUM_SNIPPETS)
    assert np.flatnonzero(audio[0, 0]).tolist() == [0, 2]
    assert not audio[0, 1].any()
    assert np.flatnonzero(audio[0, 2]).tolist() == [5]
    assert np.argwhere(visual[0]).tolist() == [[2, 9]]


def test_per_class_f1_pools_counts_over_videos():
    pred, truth = labels(dense(2), dense(2)), labels(dense(2), dense(2))
    pred.audio[0, SPEECH, :3] = True
    truth.audio[0, SPEECH, :2] = True  # video 0: TP 2 FP 1
    truth.audio[1, SPEECH, 7] = True  # video 1: FN 1
    pred.visual[1, DOG, 4:6] = True  # Dog seen: FP 2 only
    result = per_class_f1(pred, truth, "segment")
    assert result["audio"][SPEECH] == pytest.approx(4 / 6, abs=1e-12)
    assert result["visual"][DOG] == 0.0
    assert math.isnan(result["visual"][SPEECH]) and math.isnan(result["audio"][DOG])
    assert np.isnan(result["av"]).all()
    # Event level: video 0 run [0,3) vs [0,2): IoU 2/3 -> TP; video 1: FN -> 2 / 3.
    assert per_class_f1(pred, truth, "event")["audio"][SPEECH] == pytest.approx(2 / 3, abs=1e-12)


def test_weak_label_oracle_on_real_test_split(real_llp):
    split = load_split(real_llp, "test")
    scores = evaluate(reference_predictions(split, "weak-oracle"), split.dense)
    rounded = {level: [round(scores[level][name], 1) for name in SCORE_NAMES] for level in scores}
    assert rounded == {"segment": [76.1, 60.3, 52.6, 63.0, 71.7], "event": [63.0, 55.8, 44.7, 54.5, 61.6]}
    slow = oracles.evaluate(reference_predictions(split, "weak-oracle"), split.dense)
    for level in scores:
        for name in SCORE_NAMES:
            assert scores[level][name] == pytest.approx(slow[level][name], abs=1e-9)
