"""The labels-vs-latent-events diagnostic: a hand-worked case, and LLP-sim's replayed events match its store."""

import numpy as np
import pytest

from avvp.grounding.stats import shared_event_agreement
from avvp.store import read_store
from avvp.synth import latent_pretrain_events


def test_shared_event_agreement_hand_worked():
    # One video, one latent class heard at snippets 0-4 and seen at 0-1. Components: 0-1 together, the rest alone.
    heard = np.zeros((1, 1, 10), dtype=bool)
    heard[0, 0, :5] = True
    seen = np.zeros_like(heard)
    seen[0, 0, :2] = True
    components = np.array([[0, 0, 1, 2, 3, 4, 5, 6, 7, 8]])
    figures = shared_event_agreement(components, heard, seen)
    # audio pairs i < j sharing: C(5, 2) = 10 of 45; grounded: only (0, 1), which shares. Recall 1/10,
    # precision 1, specificity 1: balanced accuracy (0.1 + 1) / 2.
    assert figures["audio"] == pytest.approx(
        {"shared_share": 10 / 45, "recall": 0.1, "precision": 1.0, "balanced_accuracy": 0.55}
    )
    # visual: only (0, 1) shares and is grounded: perfect.
    assert figures["visual"]["recall"] == 1.0 and figures["visual"]["balanced_accuracy"] == 1.0
    # cross (audio i, visual j): shared for i < 5, j < 2: 10 of 100; grounded: i, j in {0, 1} (4 pairs, all shared)
    # and the 8 diagonal pairs (i, i) for i >= 2, none shared: recall 4/10, specificity 82/90.
    assert figures["cross"]["recall"] == pytest.approx(0.4)
    assert figures["cross"]["precision"] == pytest.approx(4 / 12)
    assert figures["cross"]["balanced_accuracy"] == pytest.approx((0.4 + 82 / 90) / 2)


def test_replayed_events_are_those_of_the_store(tiny_llp):
    """Snippets sharing a replayed visual event look alike in the store; others do not (AUC well above chance)."""
    from avvp.pretrain.evaluation import roc_auc

    audio_events, visual_events = latent_pretrain_events("tiny", seed=0)
    visual = read_store(tiny_llp / "pretrain.h5", streams=("visual",))["visual"].astype(np.float64)
    assert visual_events.shape == (len(visual), 60, 10) and audio_events.shape == visual_events.shape
    unit = visual - visual.mean(axis=(0, 1))
    unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
    similarity = unit @ unit.transpose(0, 2, 1)  # (N, 10, 10)
    seen = visual_events.transpose(0, 2, 1).astype(float)
    shared = seen @ seen.transpose(0, 2, 1) > 0
    upper = np.triu(np.ones((10, 10), dtype=bool), k=1)
    assert roc_auc(similarity[:, upper], shared[:, upper]) > 0.75
    wrong_audio, wrong_visual = latent_pretrain_events("tiny", seed=1)
    wrong = wrong_visual.transpose(0, 2, 1).astype(float)
    assert roc_auc(similarity[:, upper], (wrong @ wrong.transpose(0, 2, 1) > 0)[:, upper]) < 0.6
