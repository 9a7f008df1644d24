"""Modality-aware label refinement (MA): partners, the release's decision rule, the batched swaps, the label file."""

import numpy as np
import pytest
import torch

from avvp.classes import NUM_CLASSES
from avvp.errors import AvvpError, ConfigError
from avvp.modality_labels import EVIDENCE, label_quality, read_modality_labels, train_truth
from finetune.data import SplitData
from finetune.models import FinetuneModel, build_parser
from finetune.refine import choose_partners, class_error, decide, refine_split, swap_evidence

WIDTHS = {"audio": 8, "visual": 12, "motion": 6}


def random_weak(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weak = rng.random((n, NUM_CLASSES)) < 0.08
    weak[np.arange(n), rng.integers(0, 6, n)] = True  # a few frequent classes, so many videos overlap
    return weak


def random_split(n: int, seed: int = 0) -> SplitData:
    generator = torch.Generator().manual_seed(seed)
    return SplitData(
        name="train",
        video_ids=[f"v{i:04d}_0_10" for i in range(n)],
        features={name: torch.randn(n, 10, width, generator=generator) for name, width in WIDTHS.items()},
        labels=torch.from_numpy(random_weak(n, seed)).float(),
    )


def test_partners_share_no_label_and_repeat_with_their_seed():
    weak = random_weak(400)
    partners = choose_partners(weak, seed=3)
    assert partners.shape == (400,) and partners.dtype == np.int64
    assert not (weak & weak[partners]).any()
    assert np.array_equal(partners, choose_partners(weak, seed=3))
    assert not np.array_equal(partners, choose_partners(weak, seed=4))
    # drawn among all the compatible videos, not a fixed one per label set
    same_set = np.flatnonzero((weak == weak[0]).all(1))
    assert len(same_set) == 1 or len(set(partners[same_set].tolist())) > 1


def test_a_video_overlapping_every_other_has_no_partner():
    weak = random_weak(20)
    weak[7] = True
    with pytest.raises(ConfigError, match="'v7' shares a label with every other training video"):
        choose_partners(weak, seed=0, video_ids=[f"v{i}" for i in range(20)])


def test_class_error_is_the_share_of_wrong_stream_predictions():
    prob = np.full((2, NUM_CLASSES), 0.1, np.float32)
    prob[:, :2] = [[0.6, 0.4], [0.2, 0.9]]
    weak = np.zeros((2, NUM_CLASSES), bool)
    weak[0, :2] = True
    error = class_error(prob, weak)
    assert error[:2].tolist() == [0.0, 1.0] and not error[2:].any()
    prob[0, 0] = 0.5  # not above 0.5: predicted absent, as the release's `prob > 0.5`
    assert class_error(prob, weak)[0] == 0.5


def hand_worked_case():
    """Four videos; class 0 and 1 have normalised error 0.5 and 1 in both streams (bars 0.25, 0.5); class 2 has 0."""
    weak = np.zeros((4, NUM_CLASSES), bool)
    weak[:, :3] = True
    weak[3, 1] = False
    high = np.full((4, NUM_CLASSES), 0.9, np.float32)
    evidence = {name: high.copy() for name in EVIDENCE}
    # video 0, class 1: with the audio swapped both streams lose it -> heard, not seen
    evidence["audio_swap_audio_prob"][0, 1], evidence["audio_swap_visual_prob"][0, 1] = 0.3, 0.2
    # video 1, class 1: with the visual swapped both streams lose it -> seen, not heard
    evidence["visual_swap_audio_prob"][1, 1], evidence["visual_swap_visual_prob"][1, 1] = 0.1, 0.4
    # video 2, class 1: one stream stays above the bar after either swap -> both kept
    evidence["audio_swap_audio_prob"][2, 1], evidence["audio_swap_visual_prob"][2, 1] = 0.1, 0.6
    evidence["visual_swap_audio_prob"][2, 1], evidence["visual_swap_visual_prob"][2, 1] = 0.7, 0.1
    # video 0, class 0: 0.3 is below class 1's bar but not class 0's (0.25) -> kept; 0.2 / 0.1 -> dropped
    evidence["audio_swap_audio_prob"][0, 0], evidence["audio_swap_visual_prob"][0, 0] = 0.3, 0.3
    evidence["visual_swap_audio_prob"][0, 0], evidence["visual_swap_visual_prob"][0, 0] = 0.2, 0.1
    # video 3, class 1 (not labelled) and every video's class 2 (error 0): nothing can go, however low
    for name in EVIDENCE[2:]:
        evidence[name][3, 1] = 0.0
        evidence[name][:, 2] = 0.0
    audio_error = np.zeros(NUM_CLASSES, np.float32)
    visual_error = np.zeros(NUM_CLASSES, np.float32)
    audio_error[:2], visual_error[:2] = [0.2, 0.4], [0.1, 0.2]
    return weak, evidence, audio_error, visual_error


def test_decision_rule_on_a_hand_worked_case():
    weak, evidence, audio_error, visual_error = hand_worked_case()
    audio, visual = decide(weak, evidence, audio_error, visual_error)
    assert audio[:, :3].tolist() == [[False, True, True], [True, False, True], [True, True, True], [True, False, True]]
    assert visual[:, :3].tolist() == [[True, False, True], [True, True, True], [True, True, True], [True, False, True]]
    assert not (audio[:, 3:] | visual[:, 3:]).any()
    # the thresholds are the release's 0.5 by default; 0.1 keeps every label of this case, 2.0 drops video 2's
    audio, visual = decide(weak, evidence, audio_error, visual_error, audio_threshold=0.1, visual_threshold=0.1)
    assert (audio == weak).all() and (visual == weak).all()
    audio, visual = decide(weak, evidence, audio_error, visual_error, audio_threshold=2.0, visual_threshold=2.0)
    assert not audio[2, 1] and not visual[2, 1]


@pytest.mark.parametrize("name", ["han", "base-adv-skip-gcaa"])
def test_batched_swaps_equal_one_forward_pass_per_condition(name):
    torch.manual_seed(0)
    model = FinetuneModel(build_parser(name, WIDTHS, d_model=16, ff_dim=16)).eval()
    data = random_split(13)
    partners = choose_partners(data.labels.numpy() > 0, seed=0)
    from accelerate import Accelerator

    evidence = swap_evidence(model, data, partners, Accelerator(mixed_precision="no"), batch_size=5)
    own = data.features
    conditions = {
        "": own,
        "audio_swap_": {**own, "audio": own["audio"][partners]},
        "visual_swap_": {**own, "visual": own["visual"][partners], "motion": own["motion"][partners]},
    }
    with torch.no_grad():
        for prefix, features in conditions.items():
            output = model(features)
            for stream in ("audio", "visual"):
                expected = getattr(output, f"{stream}_prob").numpy()
                np.testing.assert_allclose(evidence[f"{prefix}{stream}_prob"], expected, atol=1e-5)


def test_a_parser_without_modality_heads_is_refused():
    class JointOnly(torch.nn.Module):
        def forward(self, features, adv_strength=0.0):
            batch = len(features["audio"])
            return type("Output", (), {"video_prob": torch.full((batch, NUM_CLASSES), 0.5)})()

    with pytest.raises(ConfigError, match="no video-level audio and visual probabilities"):
        refine_split(FinetuneModel(JointOnly()), random_split(10), what="the run r")


def test_label_quality_hand_worked():
    truth = np.zeros((2, NUM_CLASSES), bool)
    labels = np.zeros((2, NUM_CLASSES), bool)
    truth[0, :2] = True
    labels[0, 0] = labels[1, 0] = True
    quality = label_quality(labels, truth)
    assert (quality["precision"], quality["recall"]) == (50.0, 50.0)
    assert quality["per_class_precision"][0] == 50.0 and np.isnan(quality["per_class_precision"][1])


def test_llp_sim_writes_the_training_truth(tiny_llp):
    from avvp.annotations import load_split

    train = load_split(tiny_llp, "train")
    heard, seen = train_truth(tiny_llp, train.video_ids)
    assert not ((heard | seen) & ~train.weak.labels).any()  # events only of labelled classes
    assert (heard & ~seen).any() and (seen & ~heard).any() and (heard & seen).any()
    assert train_truth(tiny_llp / "nowhere", train.video_ids) is None


def test_not_a_label_file_is_one_line(tiny_llp):
    with pytest.raises(AvvpError, match="expected a modality-aware label file"):
        read_modality_labels(tiny_llp / "llp.h5")
