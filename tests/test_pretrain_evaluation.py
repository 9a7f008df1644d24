"""Held-out grounding figures: the ROC AUC against hand-worked cases, the pair layout, the per-variant criterion."""

import numpy as np
import pytest
import torch

from avvp.pretrain.evaluation import grounding_figures, pair_values, roc_auc


def test_roc_auc_hand_worked():
    # Positives .9, .4, .7; negatives .1, .4, .8. Pairs (pos > neg): .9 beats all 3; .4 beats .1, ties .4 (1/2),
    # loses to .8; .7 beats .1 and .4. (3 + 1.5 + 2) / 9.
    scores = np.array([0.9, 0.1, 0.4, 0.4, 0.7, 0.8])
    labels = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    assert roc_auc(scores, labels) == pytest.approx(6.5 / 9)
    assert roc_auc(-scores, labels) == pytest.approx(2.5 / 9)
    assert roc_auc(np.ones(4), np.array([1, 0, 1, 0], dtype=bool)) == 0.5  # all tied
    assert np.isnan(roc_auc(scores, np.ones(6, dtype=bool)))


def test_grounding_figures_per_pair_type():
    # Audio snippets alternate between two directions; visual all alike; labels: the even snippets together, the odd
    # together. Audio separates the groups perfectly, visual not at all; cross: audio i vs the common visual vector.
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(5, 1)[None]  # (1, 10, 2)
    visual = torch.tensor([[1.0, 1.0]]).repeat(10, 1)[None]
    parity = torch.arange(10) % 2
    grounded = (parity[:, None] == parity[None, :])[None]
    values = pair_values(audio, visual, grounded)
    assert values.shape == (1, 2, 190)
    figures = grounding_figures(values.numpy(), "multi")
    assert figures["auc_audio"] == 1.0 and figures["auc_visual"] == 0.5 and figures["auc_cross"] == 0.5
    assert figures["auc"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert grounding_figures(values.numpy(), "uni")["auc"] == pytest.approx(0.75)
    # Within-video audio cosines: 20 pairs of 1 (same parity) and 25 of 0; visual all 1, no spread.
    assert figures["similarity_audio"] == pytest.approx(20 / 45)
    assert figures["spread_audio"] == pytest.approx(np.std([1.0] * 20 + [0.0] * 25))
    assert figures["spread_visual"] == pytest.approx(0.0, abs=1e-6)
    assert figures["grounded_share"] == pytest.approx(20 / 45)
