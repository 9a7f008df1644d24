"""Modality-aware label refinement (MA): partners, the release's decision rule, the batched swaps, the label file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avvp.classes import NUM_CLASSES
from avvp.errors import AvvpError, ConfigError
from avvp.finetune.data import SplitData
from avvp.finetune.models import FinetuneModel, ParserSizes, build_parser
from avvp.finetune.refine import choose_partners, class_error, decide, refine_split, swap_evidence
from avvp.modality_labels import EVIDENCE, label_quality, read_modality_labels, train_truth

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
    model = FinetuneModel(
        build_parser(name, WIDTHS, ParserSizes(hidden_size=16, num_heads=1, intermediate_size=16, dropout=0.1))
    ).eval()
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


# ------------------------------------------------------------------------------- end to end, LLP-sim tiny


@pytest.fixture
def finetune_cli(monkeypatch, capsys):
    """`avvp-finetune ARGS` in this process: (exit status, stdout, stderr)."""
    import sys

    from avvp.finetune.cli import main

    def run(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["avvp-finetune", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_line_error(result: tuple[int, str, str], *fragments: str) -> str:
    code, _, stderr = result
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def first_run(tiny_llp, tmp_path_factory):
    """HAN trained on LLP-sim tiny: the first model of MA."""
    from avvp.finetune.config import FinetuneConfig
    from avvp.finetune.train import train

    out = tmp_path_factory.mktemp("ma") / "han"
    cfg = FinetuneConfig.from_preset(
        "tiny", model="han", features=str(tiny_llp / "llp.h5"), annotations=str(tiny_llp), out=str(out)
    )
    return train(cfg, show_progress=False)


def refine_args(first_run, tiny_llp, out, *extra):
    return ("refine", "--run", first_run, "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--out", out,
            *extra)  # fmt: skip


def test_refine_reports_against_the_truth_and_repeats_with_its_seed(first_run, tiny_llp, tmp_path, finetune_cli):
    code, stdout, stderr = finetune_cli(*refine_args(first_run, tiny_llp, tmp_path / "a.h5"))
    assert code == 0, stderr
    assert "against LLP-sim's truth" in stdout and "at a recall loss of" in stdout and "videos/s" in stdout
    assert finetune_cli(*refine_args(first_run, tiny_llp, tmp_path / "b.h5"))[0] == 0
    assert finetune_cli(*refine_args(first_run, tiny_llp, tmp_path / "c.h5", "--seed", "1"))[0] == 0
    a, b, c = (read_modality_labels(tmp_path / f"{name}.h5") for name in "abc")
    for name in ("weak", "audio", "visual", "partners"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert all(np.array_equal(a.evidence[name], b.evidence[name]) for name in EVIDENCE)
    assert not np.array_equal(a.partners, c.partners)
    assert not (a.weak & a.weak[a.partners]).any()
    assert a.attrs["seed"] == 0 and a.attrs["rule"] == "release" and a.attrs["visual_threshold"] == 0.5
    report = a.attrs["report"]
    assert report["truth"] and report["audio"]["weak"]["recall"] == 100.0
    one_line_error(finetune_cli(*refine_args(first_run, tiny_llp, tmp_path / "a.h5")), "already exists", "--overwrite")


def test_without_training_truth_the_report_shows_the_changes(first_run, tiny_llp, tmp_path, finetune_cli):
    import shutil

    folder = tmp_path / "real-like"
    folder.mkdir()
    for path in tiny_llp.glob("AVVP_*.csv"):
        shutil.copy(path, folder)
    code, stdout, stderr = finetune_cli(
        "refine", "--run", first_run, "--features", tiny_llp / "llp.h5", "--annotations", folder,
        "--out", tmp_path / "l.h5",
    )  # fmt: skip
    assert code == 0, stderr
    assert "no training-split truth" in stdout and "precision" not in stdout and "visual dropped" in stdout
    assert read_modality_labels(tmp_path / "l.h5").attrs["report"]["truth"] is False


def test_labels_change_only_the_modality_terms():
    from avvp.finetune.config import FinetuneConfig
    from avvp.finetune.losses import parser_loss
    from avvp.finetune.models import ParserOutput

    generator = torch.Generator().manual_seed(0)
    batch = 6
    output = ParserOutput(
        video_prob=torch.rand(batch, NUM_CLASSES, generator=generator),
        audio_prob=torch.rand(batch, NUM_CLASSES, generator=generator),
        visual_prob=torch.rand(batch, NUM_CLASSES, generator=generator),
        snippet_prob=torch.rand(batch, 10, 2, NUM_CLASSES, generator=generator),
        modality_logits=torch.randn(batch, 10, 2, generator=generator),
    )
    weak = torch.zeros(batch, NUM_CLASSES)
    weak[:, :3] = 1
    weights = FinetuneConfig().loss_weights()
    plain = parser_loss(output, weak, weights)
    assert parser_loss(output, weak, weights, modality_labels=torch.stack([weak, weak], 1)).guided == plain.guided
    refined = torch.stack([weak, weak], 1)
    refined[0, 0, 1] = 0  # video 0's class 1 only seen, video 1's class 2 only heard
    refined[1, 1, 2] = 0
    terms = parser_loss(output, weak, weights, modality_labels=refined)
    assert terms.wsl == plain.wsl and terms.adv == plain.adv and terms.guided != plain.guided
    # L_g by hand: the taken labels are targets of exactly 0, the others smoothed as before (visual 0.95 / 0.05)
    audio_target = weak.clone()
    audio_target[0, 1] = 0
    visual_target = 0.9 * weak + 0.05
    visual_target[1, 2] = 0
    bce = torch.nn.functional.binary_cross_entropy
    expected = bce(output.audio_prob, audio_target) + bce(output.visual_prob, visual_target)
    assert terms.guided.item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_on_refined_labels(first_run, tiny_llp, tmp_path, finetune_cli):
    import json

    from safetensors.torch import load_file

    from avvp.modality_labels import write_modality_labels

    assert finetune_cli(*refine_args(first_run, tiny_llp, tmp_path / "ma.h5"))[0] == 0
    labels = read_modality_labels(tmp_path / "ma.h5")
    assert (labels.audio != labels.weak).any() or (labels.visual != labels.weak).any()
    labels.audio, labels.visual = labels.weak.copy(), labels.weak.copy()
    write_modality_labels(tmp_path / "unchanged.h5", labels)

    def train_on(name: str) -> tuple[int, str, str]:
        return finetune_cli(
            "--model", "han", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--out",
            tmp_path / name, "--preset", "tiny", "--quiet", "--labels", tmp_path / f"{name}.h5",
        )  # fmt: skip

    for name in ("ma", "unchanged"):
        code, stdout, stderr = train_on(name)
        assert code == 0, stderr
        assert "with the refined labels" in stdout
        assert json.loads((tmp_path / name / "config.json").read_text())["labels"] == str(tmp_path / f"{name}.h5")
    first = load_file(first_run / "model.safetensors")
    unchanged, refined = (load_file(tmp_path / name / "model.safetensors") for name in ("unchanged", "ma"))
    assert all(torch.equal(first[key], unchanged[key]) for key in first)  # the weak labels as refined: same run
    assert not all(torch.equal(first[key], refined[key]) for key in first)


def test_a_label_file_of_other_videos_is_refused(first_run, tiny_llp, tmp_path, finetune_cli):
    from avvp.modality_labels import ModalityLabels, write_modality_labels

    assert finetune_cli(*refine_args(first_run, tiny_llp, tmp_path / "ma.h5"))[0] == 0
    labels = read_modality_labels(tmp_path / "ma.h5")
    keep = slice(1, None)
    fewer = ModalityLabels(
        video_ids=labels.video_ids[keep], weak=labels.weak[keep], audio=labels.audio[keep],
        visual=labels.visual[keep], partners=labels.partners[keep] % (len(labels.video_ids) - 1),
    )  # fmt: skip
    write_modality_labels(tmp_path / "fewer.h5", fewer)
    train_args = ("--model", "han", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--preset", "tiny",
                  "--quiet")  # fmt: skip
    one_line_error(
        finetune_cli(*train_args, "--out", tmp_path / "r", "--labels", tmp_path / "fewer.h5"),
        "fewer.h5", "1 of the split's videos are not in it", f"(e.g. {labels.video_ids[0]!r})",
    )  # fmt: skip
    labels.weak[0], labels.audio[0], labels.visual[0] = True, False, False
    write_modality_labels(tmp_path / "other-weak.h5", labels)
    one_line_error(
        finetune_cli(*train_args, "--out", tmp_path / "r", "--labels", tmp_path / "other-weak.h5"),
        "the weak labels of 1 video(s) differ from", "AVVP_train.csv",
    )  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_a_store_of_other_widths_is_refused(first_run, tiny_llp, tmp_path, finetune_cli):
    from avvp.store import read_store, write_store

    store = read_store(tiny_llp / "llp.h5")
    narrow = {"audio": store["audio"], "visual": store["visual"][..., :512], "motion": store["motion"]}
    write_store(tmp_path / "narrow.h5", store.video_ids, narrow)
    one_line_error(
        finetune_cli(
            "refine", "--run", first_run, "--features", tmp_path / "narrow.h5", "--annotations", tiny_llp,
            "--out", tmp_path / "l.h5",
        ),
        "narrow.h5", "'visual': 512", "'visual': 2048",
    )  # fmt: skip
    assert not (tmp_path / "l.h5").exists()


def test_ma_rows_of_the_tables_refine_the_first_run_of_each_seed(tiny_llp, tmp_path):
    from avvp.benchmarks.tables import ROW_NAMES, run_tables, select_rows

    assert [row.name for row in select_rows(["HAN+MA"])] == ["HAN+MA"]
    assert ROW_NAMES["Base+Adv+Skip+GCAA+MA (paper recipe)"].refine_from == "Base+Adv+Skip+GCAA (paper recipe)"
    report = run_tables("tiny", 1, tmp_path / "results", data=tiny_llp, rows=["HAN", "HAN+MA"], verbose=False)
    assert report["stages_run"] == ["finetune-han-seed0", "refine-han-seed0", "finetune-han-ma-seed0"]
    first, ma = report["rows"]["HAN"], report["rows"]["HAN+MA"]
    config = json.loads((Path(ma["runs"][0]) / "config.json").read_text())
    labels = read_modality_labels(config["labels"])
    assert Path(labels.attrs["run"]) == Path(first["runs"][0]) and labels.attrs["seed"] == 0
    assert ma["labels"]["truth"] and ma["labels"]["audio_weak_recall"]["mean"] == 100.0
    difference = ma["segment"]["type_av"]["mean"] - first["segment"]["type_av"]["mean"]
    assert ma["minus_without_ma"]["segment"]["type_av"]["mean"] == pytest.approx(difference)
    table = (tmp_path / "results" / "tables.md").read_text()
    assert "| *HAN+MA minus HAN* |" in table and "**MA labels**" in table and "| HAN+MA | " in table


def test_data_stats_scores_a_label_file(first_run, tiny_llp, tmp_path, finetune_cli, run_avvp):
    assert finetune_cli(*refine_args(first_run, tiny_llp, tmp_path / "ma.h5"))[0] == 0
    code, stdout, stderr = run_avvp("data", "stats", tiny_llp, "--labels", tmp_path / "ma.h5")
    assert code == 0, stderr
    refined = read_modality_labels(tmp_path / "ma.h5").attrs["report"]["audio"]["refined"]
    assert "against LLP-sim's truth" in stdout and f"{refined['precision']:>11.1f}{refined['recall']:>9.1f}" in stdout
    other = tmp_path / "other"
    other.mkdir()
    for path in tiny_llp.glob("AVVP_*.csv"):
        lines = path.read_text().splitlines(keepends=True)
        (other / path.name).write_text("".join(lines[:-1] if path.name == "AVVP_train.csv" else lines))
    code, _, stderr = run_avvp("data", "stats", other, "--labels", tmp_path / "ma.h5")
    assert code == 1 and len(stderr.strip().splitlines()) == 1 and "of its videos are not in the split" in stderr
