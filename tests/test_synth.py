"""LLP-sim (`avvp.synth`), the reference predictions, `avvp data synth|stats|baselines`."""

import json
from dataclasses import replace

import numpy as np
import pytest

from avvp.annotations import (
    FILENAME_PATTERN,
    WeakLabels,
    load_split,
    write_events,
    write_weak_labels,
)
from avvp.baselines import REFERENCE_NOTES, REFERENCES, reference_predictions, reference_scores
from avvp.classes import CLASS_INDEX, NUM_CLASSES, NUM_SNIPPETS
from avvp.errors import AnnotationError
from avvp.stats import COLUMNS, class_modality_counts, format_counts, plot_counts
from avvp.store import RAW_WIDTHS, read_store, store_info
from avvp.synth import PRESETS, SIM_VERSIONS, FeatureModel, output_paths, synthesize

TINY = PRESETS["tiny"]


def test_tiny_writes_every_file_with_the_schema(tiny_llp):
    splits = {name: load_split(tiny_llp, name) for name in ("train", "val", "test")}
    assert [len(s.video_ids) for s in splits.values()] == [TINY.train, TINY.val, TINY.test]
    assert splits["train"].dense is None and splits["test"].dense is not None
    every_id = [v for s in splits.values() for v in s.video_ids]
    assert all(FILENAME_PATTERN.match(v) and len(v.rsplit("_", 2)[0]) == 11 for v in every_id)
    for s in splits.values():
        assert s.weak.labels.any(1).all(), "every video has at least one label"

    llp = read_store(tiny_llp / "llp.h5", widths=RAW_WIDTHS)
    assert llp.video_ids == every_id
    pretrain = read_store(tiny_llp / "pretrain.h5", widths=RAW_WIDTHS)
    assert len(pretrain) == TINY.pretrain and not set(pretrain.video_ids) & set(every_id)
    for path in (tiny_llp / "llp.h5", tiny_llp / "pretrain.h5"):
        info = store_info(path)
        assert sorted(info["streams"]) == ["audio", "motion", "visual"]  # features only: no labels
        assert {s["dtype"] for s in info["streams"].values()} == {"float16"}
    for store in (llp, pretrain):
        assert store["visual"].min() >= 0 and store["motion"].min() >= 0
        assert store["audio"].min() < 0 < store["audio"].max()


def test_events_follow_the_weak_labels(tiny_llp):
    for name in ("val", "test"):
        split = load_split(tiny_llp, name)
        heard_or_seen = split.dense.audio.any(-1) | split.dense.visual.any(-1)
        assert not (heard_or_seen & ~split.weak.labels).any()
        assert heard_or_seen.sum() >= 0.9 * split.weak.labels.sum()


def test_adjacent_snippets_of_one_content_are_near_parallel(tiny_llp):
    """Grounding by thresholded cosine similarity must be meaningful: same content close, new content less so."""
    split = load_split(tiny_llp, "test")
    store = read_store(tiny_llp / "llp.h5", video_ids=split.video_ids)
    for stream, dense in (("audio", split.dense.audio), ("visual", split.dense.visual)):
        features = store[stream] / np.linalg.norm(store[stream], axis=-1, keepdims=True)
        cosine = (features[:, 1:] * features[:, :-1]).sum(-1)  # (N, 9)
        same = (dense[:, :, 1:] == dense[:, :, :-1]).all(1)
        assert np.median(cosine[same]) > 0.97
        assert np.median(cosine[~same]) < np.median(cosine[same]) - 0.03


def test_same_seed_same_bytes_other_seed_other_data(tiny_llp, tmp_path):
    synthesize(tmp_path / "again", preset="tiny", seed=0)
    for name, path in output_paths(tiny_llp).items():
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), name
    synthesize(tmp_path / "other", preset="tiny", seed=1)
    for name, path in output_paths(tiny_llp).items():
        assert (tmp_path / "other" / path.name).read_bytes() != path.read_bytes(), name


def test_existing_files_are_refused_before_anything_is_written(tiny_llp, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "AVVP_test_pd.csv").write_text("mine\n")
    with pytest.raises(Exception, match="already exists"):
        synthesize(out, preset="tiny")
    assert sorted(p.name for p in out.iterdir()) == ["AVVP_test_pd.csv"]
    synthesize(out, preset="tiny", overwrite=True)
    assert (out / "AVVP_test_pd.csv").read_bytes() == (tiny_llp / "AVVP_test_pd.csv").read_bytes()


@pytest.fixture
def fake_annotations(tmp_path):
    """A small annotation folder in the real LLP format: 5 train, 2 val, 3 test videos."""
    folder = tmp_path / "llp"
    folder.mkdir()
    train_ids = [
        "BjCEufrlXm4_20_30",
        "7nSYwyaP4QE_50_60",
        "P7x4FV4lg_570_580",
        "a-b_c1234Z9_0_10",
        "zzzzzzzzzzz_1.5_11.5",
    ]
    train = np.zeros((5, NUM_CLASSES), bool)
    for row, names in enumerate([("Speech", "Dog"), ("Singing", "Banjo"), ("Car",), ("Cello",), ("Speech", "Cat")]):
        train[row, [CLASS_INDEX[n] for n in names]] = True
    write_weak_labels(folder / "AVVP_train.csv", WeakLabels(train_ids, train))
    eval_ids = ["4YdbENYcIyE_23_33", "KSRjje7GH44_60_70", "-0aXmPi5dPc_30_40", "00BDwKBD5i8_0_10", "0AHZfh-b3rY_0_10"]
    audio = np.zeros((5, NUM_CLASSES, NUM_SNIPPETS), bool)
    visual = np.zeros_like(audio)
    audio[0, CLASS_INDEX["Baby_cry_infant_cry"], 0:4] = True
    visual[0, CLASS_INDEX["Baby_cry_infant_cry"], 2:10] = True
    audio[1, CLASS_INDEX["Blender"], 8:10] = True
    audio[2, CLASS_INDEX["Speech"], [0, 1, 5]] = True
    visual[3, CLASS_INDEX["Dog"], :] = True
    audio[4, CLASS_INDEX["Violin_fiddle"], :] = True
    visual[4, CLASS_INDEX["Violin_fiddle"], 3:] = True
    weak = audio.any(-1) | visual.any(-1)
    write_weak_labels(folder / "AVVP_val_pd.csv", WeakLabels(eval_ids[:2], weak[:2]))
    write_weak_labels(folder / "AVVP_test_pd.csv", WeakLabels(eval_ids[2:], weak[2:]))
    write_events(folder / "AVVP_eval_audio.csv", eval_ids, audio)
    write_events(folder / "AVVP_eval_visual.csv", eval_ids, visual)
    return folder


def test_annotations_mode_keeps_ids_labels_and_events(fake_annotations, tmp_path):
    summary = synthesize(tmp_path / "sim", preset="tiny", annotations=fake_annotations)
    assert summary["videos"] == {"train": 5, "val": 2, "test": 3, "pretrain": TINY.pretrain}
    ids = []
    for name in ("train", "val", "test"):
        real, sim = load_split(fake_annotations, name), load_split(tmp_path / "sim", name)
        assert sim.video_ids == real.video_ids
        assert (sim.weak.labels == real.weak.labels).all()
        if real.dense is not None:
            assert (sim.dense.audio == real.dense.audio).all() and (sim.dense.visual == real.dense.visual).all()
        ids += real.video_ids
    assert read_store(tmp_path / "sim" / "llp.h5", streams=("audio",)).video_ids == ids


def test_bad_annotations_leave_no_output(fake_annotations, tmp_path):
    with open(fake_annotations / "AVVP_eval_visual.csv", "a") as handle:
        handle.write("00BDwKBD5i8_0_10\t3\t11\tDog\n")
    with pytest.raises(AnnotationError, match=r"AVVP_eval_visual.csv:\d+: offset '11'"):
        synthesize(tmp_path / "sim", preset="tiny", annotations=fake_annotations)
    assert not (tmp_path / "sim").exists()


def test_reference_predictions(tiny_llp):
    split = load_split(tiny_llp, "test")
    oracle = reference_predictions(split, "weak-oracle")
    assert (oracle.audio == split.weak.labels[:, :, None]).all() and (oracle.visual == oracle.audio).all()
    speech = reference_predictions(split, "speech-everywhere")
    assert speech.audio[:, CLASS_INDEX["Speech"]].all() and speech.audio.sum() == len(split.video_ids) * NUM_SNIPPETS
    assert not reference_predictions(split, "nothing").visual.any()
    scores = reference_scores(tiny_llp, "test")
    assert list(scores) == list(REFERENCES)
    assert scores["nothing"]["segment"]["audio"] < scores["weak-oracle"]["segment"]["audio"] < 100


def test_reference_scores_on_real_test(real_llp):
    scores = reference_scores(real_llp, "test")["weak-oracle"]
    assert [round(scores["segment"][k], 1) for k in ("audio", "visual", "av", "type_av", "event_av")] == [
        76.1,
        60.3,
        52.6,
        63.0,
        71.7,
    ]


def test_stats_table_and_plot(tiny_llp, tmp_path):
    counts = class_modality_counts(tiny_llp)
    assert counts["videos"] == TINY.val + TINY.test
    assert class_modality_counts(tiny_llp, ("val", "val"))["videos"] == TINY.val  # a split counts once
    assert (counts["heard"] == counts["both"] + counts["heard_only"]).all()
    assert (counts["seen"] == counts["both"] + counts["seen_only"]).all()
    any_event = counts["both"] + counts["heard_only"] + counts["seen_only"]
    assert (counts["labelled"] - counts["no_event"] + counts["unlabelled"] == any_event).all()  # the columns add up
    test = load_split(tiny_llp, "test")
    assert (
        class_modality_counts(tiny_llp, ("test",))["both"].sum()
        == (test.dense.audio.any(-1) & test.dense.visual.any(-1)).sum()
    )
    lines = format_counts(counts).splitlines()
    assert lines[0].split() == ["class", *COLUMNS] and len(lines) == 1 + NUM_CLASSES + 1
    assert max(map(len, lines)) <= 100
    png = plot_counts(counts, tmp_path / "stats.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_synth_refuses_existing_out(tiny_llp, tmp_path, run_avvp):
    out = tmp_path / "sim"
    code, stdout, stderr = run_avvp("data", "synth", "--preset", "tiny", "--out", out)
    assert code == 0, stderr
    assert "train 160, val 40, test 40" in stdout
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, stderr = run_avvp("data", "synth", "--preset", "tiny", "--out", out, "--seed", "3")
    assert code == 1 and "already exists; pass --overwrite" in stderr and len(stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, stderr = run_avvp("data", "synth", "--preset", "huge", "--out", tmp_path / "x")
    assert code == 1 and "unknown preset 'huge'" in stderr and not (tmp_path / "x").exists()


def test_cli_baselines_and_stats(tiny_llp, tmp_path, run_avvp):
    code, stdout, stderr = run_avvp("data", "baselines", "--annotations", tiny_llp, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["split"] == "test"
    assert all(len(result[name]["segment"]) == 5 and len(result[name]["event"]) == 5 for name in REFERENCES)
    code, stdout, stderr = run_avvp("data", "baselines", "--annotations", tiny_llp, "--split", "val")
    assert code == 0, stderr
    titles = [f"{n} (val): {REFERENCE_NOTES[n]}" for n in REFERENCES]  # each reference row explained in one line
    assert [line for line in stdout.splitlines() if " (val): " in line] == titles
    code, stdout, stderr = run_avvp("data", "stats", tiny_llp, "--plot", tmp_path / "fig.png")
    assert code == 0, stderr
    assert stdout.splitlines()[0] == f"LLP-sim (synthetic), val+test: {TINY.val + TINY.test} videos"
    assert (tmp_path / "fig.png").is_file()
    code, _, stderr = run_avvp("data", "stats", tiny_llp, "--split", "train")
    assert code == 1 and "only val and test" in stderr
    code, stdout, stderr = run_avvp("data", "stats", tiny_llp, "--split", "val", "--split", "val", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["videos"] == TINY.val and json.loads(stdout)["splits"] == ["val"]


def test_sigterm_midway_leaves_nothing(tmp_path):
    """A killed synth (SIGTERM, as from `kill` or a job scheduler) unwinds and removes its temporary folder."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "corpus"
    process = subprocess.Popen(
        [Path(sys.executable).parent / "avvp", "data", "synth", "--preset", "demo", "--out", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("**/.*.tmp")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "synth ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert [p for p in tmp_path.rglob("*") if p.is_file() or p.name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------------------- versions


def test_version_1_features_are_the_ones_every_figure_so_far_was_measured_on():
    """Version 1's fixed random parts, drawn from seed 0: a later version must never move them."""
    model = FeatureModel.create(0, SIM_VERSIONS[1])
    assert model.mixing is None
    expected = {
        "prototypes": (
            model.prototypes[:, 0, :3],
            [[0.05888, 0.095485, 0.091228], [-0.010681, 0.060362, 0.020295], [-0.050543, -0.007211, 0.031868]],
        ),  # fmt: skip
        "audio_map": (model.audio_map[1, :3], [0.611747, 0.97256, 0.041877]),
        "visual_bias": (model.visual_bias[:3], [-0.020114, -0.151389, 0.041177]),
        "silence": (model.silence[:3], [-0.001308, -0.0834, 0.207315]),
    }
    for name, (value, figures) in expected.items():
        np.testing.assert_allclose(value, figures, atol=2e-6, err_msg=name)
    for name in ("audio_map", "audio_offset", "visual_map", "visual_bias", "motion_map", "motion_bias", "silence"):
        assert np.array_equal(getattr(FeatureModel.create(0, SIM_VERSIONS[2]), name), getattr(model, name)), name


def _cosine(x: np.ndarray, y: np.ndarray) -> float:
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def test_version_2_look_alikes_depend_on_the_modality():
    """Car and Chainsaw sound alike (motors) but do not look alike; Speech and Clapping the other way round."""
    for seed in (0, 1):
        one, two = FeatureModel.create(seed, SIM_VERSIONS[1]), FeatureModel.create(seed, SIM_VERSIONS[2])
        audio, visual = 0, 1
        for a, b, alike_in, unlike_in in (("Car", "Chainsaw", audio, visual), ("Speech", "Clapping", visual, audio)):
            i, j = CLASS_INDEX[a], CLASS_INDEX[b]
            assert _cosine(two.prototypes[alike_in, i], two.prototypes[alike_in, j]) > 0.25, (seed, a, b)
            assert _cosine(two.prototypes[unlike_in, i], two.prototypes[unlike_in, j]) < 0.25, (seed, a, b)
        car, chainsaw = CLASS_INDEX["Car"], CLASS_INDEX["Chainsaw"]  # version 1: alike in both
        assert min(_cosine(one.prototypes[m, car], one.prototypes[m, chainsaw]) for m in (audio, visual)) > 0.25


def test_version_2_shares_a_sources_traits_between_its_sound_and_its_look():
    """The per-video variation of one event, audio against visual (each rotated back): correlated in version 2 only."""
    events = np.zeros((600, 60, NUM_SNIPPETS), dtype=bool)
    events[:, CLASS_INDEX["Dog"]] = True  # one dog heard and seen in every video, nothing else
    quiet = dict(gain_sigma=0.0, snippet_jitter=0.0, background=(0, 0, 0), drift=0.0, noise=(0, 0, 0), silent_videos=0)
    agreement = {}
    for version in (1, 2):
        model = FeatureModel.create(0, replace(SIM_VERSIONS[version], **quiet))
        mixing = FeatureModel.create(0, SIM_VERSIONS[2]).mixing  # version 1 has none: any fixed rotation will do
        latent = model.latent(np.random.default_rng(7), events, events)[:, :, 0]  # (3, n, L): snippet 0
        residual = latent - model.prototypes[:, CLASS_INDEX["Dog"]][:, None]  # the instance's own traits, roughly
        audio, visual = residual[0] @ mixing[0].T, residual[1] @ mixing[1].T  # undo each modality's rotation
        agreement[version] = float(np.mean(np.sum(audio * visual, 1) / np.linalg.norm(audio, axis=1)
                                           / np.linalg.norm(visual, axis=1)))  # fmt: skip
    assert abs(agreement[1]) < 0.05
    assert 0.3 < agreement[2] < 0.7  # half the variation is shared


def test_sim_version_is_recorded_and_an_unknown_one_is_a_one_line_error(tmp_path, run_avvp):
    out = tmp_path / "v2"
    code, stdout, stderr = run_avvp("data", "synth", "--preset", "tiny", "--out", out, "--sim-version", "2")
    assert code == 0, stderr
    assert "LLP-sim v2" in stdout
    assert store_info(out / "llp.h5")["attrs"]["sim_version"] == 2
    assert store_info(out / "pretrain.h5")["attrs"]["sim_version"] == 2
    code, _, stderr = run_avvp("data", "synth", "--preset", "tiny", "--out", tmp_path / "v9", "--sim-version", "9")
    assert code == 1 and "--sim-version 9: expected one of 1, 2" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "v9").exists()
