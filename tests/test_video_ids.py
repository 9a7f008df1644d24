"""A store named by YouTube id (the LLP release's file names) meets the annotations' filenames: the one matcher,
and finetune, evaluate and parse reading such a store as if it were named by filename."""

import json

import numpy as np
import pytest

import avvp.video_ids
from avvp.annotations import load_split
from avvp.errors import StoreError
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.evaluate import evaluate_run
from avvp.finetune.train import train
from avvp.store import read_store, write_store
from avvp.video_ids import match_videos, store_ids_for, youtube_id

FILENAMES = ["-3ghZB8awDC_30_40", "BjCEufrlXm4_20_30", "7nSYwyaP4QE_50_60"]


def test_match_by_filename_or_youtube_id():
    match = match_videos(["-3ghZB8awDC", "BjCEufrlXm4_20_30", "7nSYwyaP4QE", "unrelated"], FILENAMES)
    assert match.names == {
        "-3ghZB8awDC_30_40": "-3ghZB8awDC",
        "BjCEufrlXm4_20_30": "BjCEufrlXm4_20_30",
        "7nSYwyaP4QE_50_60": "7nSYwyaP4QE",
    }
    assert match.by_youtube_id == 2 and match.missing == [] and match.shared == {} and match.doubled == []
    assert match.unmatched(["-3ghZB8awDC", "unrelated"]) == ["unrelated"]
    assert youtube_id("P7x4FV4lg_570_580") == "P7x4FV4lg_5"  # the release loaders open filename[:11] whatever it is


def test_a_youtube_id_two_filenames_share_is_neither_of_theirs():
    twin = "-3ghZB8awDC_100_110"
    match = match_videos(["-3ghZB8awDC", "BjCEufrlXm4"], [*FILENAMES, twin])
    assert match.shared == {"-3ghZB8awDC": ["-3ghZB8awDC_30_40", twin]}
    assert match.names == {"BjCEufrlXm4_20_30": "BjCEufrlXm4"} and match.missing == ["7nSYwyaP4QE_50_60"]
    # One of the two in the store by its filename: the YouTube id is the other's alone.
    match = match_videos(["-3ghZB8awDC", "-3ghZB8awDC_30_40"], ["-3ghZB8awDC_30_40", twin])
    assert match.names == {"-3ghZB8awDC_30_40": "-3ghZB8awDC_30_40", twin: "-3ghZB8awDC"} and match.doubled == []


def test_readers_refuse_what_is_not_one_to_one(tmp_path):
    store = tmp_path / "s.h5"
    with pytest.raises(StoreError) as error:
        store_ids_for(store, ["-3ghZB8awDC"], ["-3ghZB8awDC_30_40", "-3ghZB8awDC_100_110"], "AVVP_test_pd.csv")
    assert str(error.value) == (
        f"{store}: store video '-3ghZB8awDC' would be the features of 2 videos of AVVP_test_pd.csv "
        "('-3ghZB8awDC_30_40', '-3ghZB8awDC_100_110'; 1 YouTube id(s) in all); a store named by YouTube id needs "
        "one video per id (import with --annotations to name them by filename)"
    )
    with pytest.raises(StoreError, match=r"video 'BjCEufrlXm4_20_30' of train.csv is in the store twice, as "):
        store_ids_for(store, ["BjCEufrlXm4", "BjCEufrlXm4_20_30"], ["BjCEufrlXm4_20_30"], "train.csv")
    with pytest.raises(StoreError, match=r"1 of the 3 videos of x.csv are not in the store \('7nSYwyaP4QE_50_60'\), "):
        store_ids_for(store, ["-3ghZB8awDC", "BjCEufrlXm4"], FILENAMES, "x.csv")


@pytest.fixture(scope="module")
def prefix_store(tiny_llp, tmp_path_factory):
    """The tiny LLP-sim store with its videos named by YouTube id, as import-han names the release's files."""
    store = read_store(tiny_llp / "llp.h5", dtype=None)
    path = tmp_path_factory.mktemp("prefix") / "llp-ytid.h5"
    write_store(path, [youtube_id(v) for v in store.video_ids], store.streams, source="LLP-sim, ids cut to 11")
    return path


@pytest.fixture(scope="module")
def runs(tiny_llp, prefix_store, tmp_path_factory):
    """One-epoch `base` runs, on the tiny store and on its YouTube-id copy: {name: (run dir, stderr)}."""
    import contextlib
    import io

    avvp.video_ids._NOTED.clear()
    root = tmp_path_factory.mktemp("prefix_runs")
    result = {}
    for name, features in (("filename", tiny_llp / "llp.h5"), ("youtube-id", prefix_store)):
        paths = dict(features=str(features), annotations=str(tiny_llp), out=str(root / name))
        cfg = FinetuneConfig.from_preset("tiny", model="base", epochs=1, **paths)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            train(cfg, show_progress=False)
        result[name] = (root / name, stderr.getvalue())
    return result


def test_finetune_on_a_youtube_id_store_matches_the_annotations(runs, prefix_store):
    (named, named_err), (cut, cut_err) = runs["filename"], runs["youtube-id"]
    assert "names its videos by YouTube id" not in named_err
    assert cut_err.count(f"note: {prefix_store} names its videos by YouTube id") == 1  # once for three splits
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (named, cut)]
    assert metrics[0]["test"] == metrics[1]["test"]  # the same videos, features and labels
    assert (named / "pred_audio.csv").read_text() == (cut / "pred_audio.csv").read_text()  # by filename


def test_evaluate_a_run_on_a_youtube_id_store(runs, prefix_store, tiny_llp):
    run, _ = runs["filename"]
    expected = json.loads((run / "metrics.json").read_text())["test"]
    scores = evaluate_run(run, "test", features=prefix_store, annotations=tiny_llp)
    for level in ("segment", "event"):
        assert scores[level] == pytest.approx(expected[level])


def test_parse_names_a_youtube_id_store_by_filename(runs, prefix_store, tiny_llp, tmp_path, run_avvp):
    run, _ = runs["youtube-id"]
    test = load_split(tiny_llp, "test")
    videos = ",".join(test.video_ids[:2] + [youtube_id(test.video_ids[2])])  # either name is taken
    code, stdout, stderr = run_avvp(
        "parse", "--run", run, "--features", prefix_store, "--annotations", tiny_llp, "--videos", videos,
        "--out", tmp_path / "events.json",
    )  # fmt: skip
    assert code == 0, stderr
    assert list(json.loads((tmp_path / "events.json").read_text())["videos"]) == test.video_ids[:3]

    # Every video, as LLP eval CSVs: they score with `avvp evaluate` as the run's own test figures.
    code, _, stderr = run_avvp(
        "parse", "--run", run, "--features", prefix_store, "--annotations", tiny_llp, "--csv", tmp_path / "csv",
        "--out", tmp_path / "all.json",
    )  # fmt: skip
    assert code == 0, stderr
    code, stdout, stderr = run_avvp(
        "evaluate", "--pred-audio", tmp_path / "csv" / "pred_audio.csv", "--pred-visual",
        tmp_path / "csv" / "pred_visual.csv", "--annotations", tiny_llp, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    scores = json.loads(stdout)
    expected = json.loads((run / "metrics.json").read_text())["test"]
    for level in ("segment", "event"):
        assert scores[level] == pytest.approx(expected[level])

    # Without --annotations the store's own ids are reported, as before.
    code, _, stderr = run_avvp("parse", "--run", run, "--features", prefix_store, "--out", tmp_path / "ids.json")
    assert code == 0, stderr
    names = list(json.loads((tmp_path / "ids.json").read_text())["videos"])
    assert names[:3] == [youtube_id(v) for v in load_split(tiny_llp, "train").video_ids[:3]]
    assert np.all([len(name) == 11 for name in names])
