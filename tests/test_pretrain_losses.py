"""AVG losses: hand-worked 3-snippet cases, the pair sets of each variant, in-batch negatives, accuracy."""

import itertools
from dataclasses import replace

import pytest
import torch

from avvp.errors import ConfigError
from avvp.pretrain.losses import (
    VARIANTS,
    LossSettings,
    accuracy_from_counts,
    avg_loss,
    grounding_counts,
    in_batch_negative_loss,
    pair_mask,
    pretrain_losses,
)

# Three snippets in 2-d with easy cosines. Audio: a0 = (1, 0), a1 = (.6, .8), a2 = (0, 1), so
# cos(a0,a1) = .6, cos(a0,a2) = 0, cos(a1,a2) = .8. Visual: v0 = (.8, .6), v1 = (1, 0), v2 = (0, 1), so
# cos(v0,v1) = .8, cos(v0,v2) = .6, cos(v1,v2) = 0. Cross (row audio i, column visual j):
#   a0: .8  1   0
#   a1: .96 .6  .8
#   a2: .6  0   1
# Grounding: snippets 0 and 1 in one component, 2 alone.
AUDIO = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])
VISUAL = torch.tensor([[[0.8, 0.6], [1.0, 0.0], [0.0, 1.0]]])
GROUNDED = torch.tensor([[[1, 1, 0], [1, 1, 0], [0, 0, 1]]], dtype=torch.bool)

# Hand-worked sums of G[p - s]+ + (1 - G)[s - n]+ over the counted ordered pairs:
# p = n = .7
#   a-a: (0,1),(1,0) grounded s=.6 -> .1 each; (1,2),(2,1) not grounded s=.8 -> .1 each; (0,2),(2,0) s=0 -> 0: .4
#   v-v: (0,1) grounded s=.8 -> 0; (0,2) s=.6 <= .7 -> 0; (1,2) s=0 -> 0: 0
#   a-v: (1,1) grounded s=.6 -> .1; (1,2) not grounded s=.8 -> .1; the others 0: .2; v-a (the transpose) .2
# p = .9, n = .5
#   a-a: (0,1) x2 s=.6 -> .3 each; (1,2) x2 s=.8 -> .3 each: 1.2
#   v-v: (0,1) x2 s=.8 -> .1 each; (0,2) x2 s=.6 -> .1 each: .4
#   a-v: (0,0) s=.8 -> .1; (1,1) s=.6 -> .3; (1,2) s=.8 -> .3; (2,0) s=.6 -> .1: .8; v-a .8
# Counted pairs per video: uni 2 x 3 x 2 = 12 (no snippet with itself), cross 2 x 9 = 18, multi 30.
HAND_WORKED = {
    (0.7, 0.7): {"uni": 0.4 / 12, "cross": 0.4 / 18, "multi": 0.8 / 30},
    (0.9, 0.5): {"uni": 1.6 / 12, "cross": 1.6 / 18, "multi": 3.2 / 30},
}


@pytest.mark.parametrize("margins", list(HAND_WORKED))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_avg_loss_hand_worked(variant, margins):
    pos_margin, neg_margin = margins
    expected = HAND_WORKED[margins][variant]
    loss = avg_loss(AUDIO, VISUAL, GROUNDED, variant, pos_margin, neg_margin)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # Embeddings are normalised first: scaling snippets changes nothing.
    scale = torch.tensor([[[3.0], [0.5], [7.0]]])
    assert avg_loss(AUDIO * scale, VISUAL * 2, GROUNDED, variant, pos_margin, neg_margin).item() == pytest.approx(
        expected, abs=1e-6
    )


def test_avg_loss_per_video_and_batch_mean():
    audio = torch.cat([AUDIO, VISUAL])
    visual = torch.cat([VISUAL, AUDIO])
    grounded = torch.cat([GROUNDED, torch.eye(3, dtype=torch.bool)[None]])
    per_video = avg_loss(audio, visual, grounded, "uni", reduction="none")
    assert per_video.shape == (2,)
    assert per_video[0].item() == pytest.approx(0.4 / 12, abs=1e-6)
    # Video 2 (all snippets alone): a-a are the old v-v cosines .8 (x2) and .6, .0 -> [.8 - .7]+ x2 = .2; v-v the
    # old a-a: .6, 0, .8 -> [.8 - .7]+ x2 = .2; 0.4 / 12.
    assert per_video[1].item() == pytest.approx(0.4 / 12, abs=1e-6)
    assert avg_loss(audio, visual, grounded, "uni").item() == pytest.approx(per_video.mean().item())


def test_avg_loss_matches_a_slow_oracle():
    generator = torch.Generator().manual_seed(0)
    audio, visual = torch.randn(4, 10, 8, generator=generator), torch.randn(4, 10, 8, generator=generator)
    grounded = torch.rand(4, 10, 10, generator=generator) < 0.4
    grounded = grounded | grounded.transpose(1, 2) | torch.eye(10, dtype=torch.bool)
    streams = {"audio": audio, "visual": visual}
    for variant, (p, n) in itertools.product(VARIANTS, [(0.7, 0.7), (0.3, 0.1)]):
        total, count = 0.0, 0
        for b, (x, y), i, j in itertools.product(range(4), VARIANTS[variant], range(10), range(10)):
            if x == y and i == j:
                continue
            s = torch.cosine_similarity(streams[x][b, i], streams[y][b, j], dim=0).item()
            total += max(p - s, 0) if grounded[b, i, j] else max(s - n, 0)
            count += 1
        assert avg_loss(audio, visual, grounded, variant, p, n).item() == pytest.approx(total / count, abs=1e-5)


def _mixed_hessian_blocks(variant):
    """Largest |d2L / da_i da_j| (i != j) and |d2L / da dv| with every hinge active (p = 1, n = -1)."""
    generator = torch.Generator().manual_seed(1)
    audio, visual = torch.randn(1, 3, 4, generator=generator), torch.randn(1, 3, 4, generator=generator)

    def loss(a, v):
        return avg_loss(a, v, GROUNDED, variant, pos_margin=1.0, neg_margin=-1.0)

    (aa, av), _ = torch.autograd.functional.hessian(loss, (audio, visual))
    aa = aa.reshape(3, 4, 3, 4)
    audio_audio = max(aa[i, :, j].abs().max().item() for i in range(3) for j in range(3) if i != j)
    return audio_audio, av.abs().max().item()


def test_uni_uses_no_cross_modal_pair():
    audio_audio, audio_visual = _mixed_hessian_blocks("uni")
    assert audio_visual == 0.0  # no term holds an audio and a visual embedding together
    assert audio_audio > 1e-3
    # Rotating the visual space changes every a-v cosine and leaves the uni loss as it is.
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    for p, n in HAND_WORKED:
        assert avg_loss(AUDIO, VISUAL @ rotation, GROUNDED, "uni", p, n).item() == pytest.approx(
            avg_loss(AUDIO, VISUAL, GROUNDED, "uni", p, n).item(), abs=1e-6
        )
        assert avg_loss(AUDIO, VISUAL @ rotation, GROUNDED, "cross", p, n).item() != pytest.approx(
            avg_loss(AUDIO, VISUAL, GROUNDED, "cross", p, n).item(), abs=1e-3
        )


def test_cross_uses_no_same_modal_pair():
    audio_audio, audio_visual = _mixed_hessian_blocks("cross")
    assert audio_audio == 0.0  # no term holds two audio snippets together
    assert audio_visual > 1e-3
    multi_audio_audio, _ = _mixed_hessian_blocks("multi")
    assert multi_audio_audio > 1e-3


def test_pair_mask_leaves_out_only_the_same_modality_diagonal():
    mask = pair_mask("multi", 10)
    assert mask.shape == (4, 10, 10)
    assert mask.sum().item() == 2 * 90 + 2 * 100
    assert not mask[0].diagonal().any() and mask[2].diagonal().all()


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="--variant 'both': expected one of uni, cross, multi"):
        avg_loss(AUDIO, VISUAL, GROUNDED, "both")


# Two videos of two snippets: video 0 a = (1,0),(0,1), v = (1,0),(1,0); video 1 a = (.6,.8),(1,0),
# v = (0,1),(.8,.6). With n = .5, uni: a(0)-a(1) cosines .6, 1, .8, 0 -> .1 + .5 + .3 = .9, and the same from
# video 1's anchors; v(0)-v(1) cosines 0, .8, 0, .8 -> .3 + .3 = .6, twice. 3.0 over 2 video pairs x 4 x 2 = 16.
IB_AUDIO = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [1.0, 0.0]]])
IB_VISUAL = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.8, 0.6]]])


def test_in_batch_negatives_hand_worked():
    loss = in_batch_negative_loss(IB_AUDIO, IB_VISUAL, torch.tensor([0, 1]), "uni", neg_margin=0.5)
    assert loss.item() == pytest.approx(3.0 / 16)
    # A video never is its own negative, even when it appears twice in a batch.
    assert in_batch_negative_loss(IB_AUDIO, IB_VISUAL, torch.tensor([4, 4]), "uni", 0.5).item() == 0.0


def test_in_batch_negatives_gathered_across_processes_match_one_process():
    generator = torch.Generator().manual_seed(2)
    audio, visual = torch.randn(4, 10, 8, generator=generator), torch.randn(4, 10, 8, generator=generator)
    index = torch.arange(4)
    whole = in_batch_negative_loss(audio, visual, index, "multi", 0.2)
    # Two "processes" with two videos each; gather puts the local part in its place among all of them.
    halves = []
    for rank in (0, 1):
        local = slice(2 * rank, 2 * rank + 2)
        a, v = audio[local].clone().requires_grad_(), visual[local].clone().requires_grad_()

        def gather(tensor, rank=rank):
            if tensor.dtype == torch.long:
                return index
            everything = torch.nn.functional.normalize(torch.stack([audio, visual], 1), dim=-1)
            return torch.cat([everything[: 2 * rank], tensor, everything[2 * rank + 2 :]])

        loss = in_batch_negative_loss(a, v, index[local], "multi", 0.2, gather=gather)
        loss.backward()
        assert a.grad is not None and a.grad.abs().sum() > 0
        halves.append(loss.item())
    assert sum(halves) / 2 == pytest.approx(whole.item(), rel=1e-5)


def test_pretrain_losses_named_terms():
    grounded = torch.ones(2, 2, 2, dtype=torch.bool)
    hinge = LossSettings("hinge", 0.7, 0.5, in_batch_negatives=False, temperature=0.1)
    terms = pretrain_losses(IB_AUDIO, IB_VISUAL, grounded, torch.arange(2), "uni", hinge)
    assert set(terms) == {"avg"}
    terms = pretrain_losses(
        IB_AUDIO, IB_VISUAL, grounded, torch.arange(2), "uni", replace(hinge, in_batch_negatives=True)
    )
    assert set(terms) == {"avg", "in_batch_negative"}
    assert terms["in_batch_negative"].item() == pytest.approx(3.0 / 16)


def test_grounding_accuracy_hand_worked():
    counts = grounding_counts(AUDIO, VISUAL, GROUNDED, "uni", 0.7, 0.7)
    # a-a: grounded (0,1) x2 s=.6 wrong; others (0,2) x2 right, (1,2) x2 s=.8 wrong.
    # v-v: grounded (0,1) x2 s=.8 right; others (0,2), (1,2) x2 each right.
    assert counts.tolist() == [[2.0, 4.0, 6.0, 8.0]]
    accuracy = accuracy_from_counts(counts)
    assert accuracy == {
        "accuracy": 8 / 12,
        "positive_accuracy": 0.5,
        "negative_accuracy": 0.75,
        "balanced_accuracy": 0.625,
    }


def test_margins_are_checked():
    from avvp.pretrain.losses import RELEASE_MARGIN, check_margins

    check_margins(RELEASE_MARGIN, RELEASE_MARGIN)  # p = n: the release's setting
    check_margins(0.8, 0.3)
    with pytest.raises(ConfigError, match=r"--pos-margin 0.3 is below --neg-margin 0.5: grounded pairs would be"):
        check_margins(0.3, 0.5)
    for p, n, flag in ((1.5, 0.2, "--pos-margin 1.5"), (0.5, -1.2, "--neg-margin -1.2"), (float("nan"), 0, "nan")):
        with pytest.raises(ConfigError, match=rf"{flag}.*: a cosine margin lies in \[-1, 1\]"):
            check_margins(p, n)


def test_info_nce_matches_a_direct_computation():
    from avvp.pretrain.losses import info_nce_loss

    generator = torch.Generator().manual_seed(3)
    audio, visual = torch.randn(3, 4, 5, generator=generator), torch.randn(3, 4, 5, generator=generator)
    grounded = torch.rand(3, 4, 4, generator=generator) < 0.5
    grounded = grounded | grounded.transpose(1, 2) | torch.eye(4, dtype=torch.bool)
    index = torch.tensor([7, 2, 7])  # videos 0 and 2 are one video seen twice
    streams = {"audio": torch.nn.functional.normalize(audio, dim=-1),
               "visual": torch.nn.functional.normalize(visual, dim=-1)}  # fmt: skip
    tau = 0.2
    for variant in VARIANTS:
        total, count = 0.0, 0
        for b, (x, y), i in itertools.product(range(3), VARIANTS[variant], range(4)):
            anchor = streams[x][b, i]
            positives, negatives = [], []
            for g, j in itertools.product(range(3), range(4)):
                s = (anchor @ streams[y][g, j]).item() / tau
                if index[g] != index[b] or not grounded[b, i, j]:
                    negatives.append(s)
                elif not (x == y and i == j):
                    positives.append(s)
            for s in positives:
                total += -s + torch.logsumexp(torch.tensor([s, *negatives]), dim=0).item()
                count += 1
        loss = info_nce_loss(audio, visual, grounded, index, variant, tau)
        assert loss.item() == pytest.approx(total / count, rel=1e-5)
    settings = LossSettings("infonce", 0.7, 0.7, in_batch_negatives=False, temperature=tau)
    terms = pretrain_losses(audio, visual, grounded, index, "multi", settings)
    assert set(terms) == {"infonce"}


def test_release_sampling_one_anchor_and_alternating_pairs():
    from avvp.pretrain.losses import release_variant

    # Anchor snippet 1 only, p = n = .7, uni: a-a (1,0) grounded s=.6 -> .1, (1,2) other s=.8 -> .1; v-v (1,0)
    # grounded s=.8 -> 0, (1,2) s=0 -> 0. Four counted pairs.
    assert avg_loss(AUDIO, VISUAL, GROUNDED, "uni", anchor=1).item() == pytest.approx(0.2 / 4)
    # cross, anchor 0: a0-v (.8, 1, 0) with G (1, 1, 0) -> .0; v0-a (.8, .96, .6) -> 0, 0, 0: all zero.
    assert avg_loss(AUDIO, VISUAL, GROUNDED, "cross", anchor=0).item() == pytest.approx(0.0)
    assert [release_variant("multi", epoch) for epoch in range(4)] == ["cross", "uni", "cross", "uni"]
    assert release_variant("uni", 0) == "uni" and release_variant("cross", 1) == "cross"
