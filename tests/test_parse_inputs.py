"""`avvp parse` bad input: each a one-line error, checked before any output is written; pictures stay in --plot."""

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, trained_tiny_run

from avvp.annotations import load_split
from avvp.store import read_store, write_store


@pytest.fixture(scope="module")
def parse_run(tiny_llp, tmp_path_factory):
    """A `base` parser trained one epoch on LLP-sim tiny."""
    return trained_tiny_run("base", tiny_llp, tmp_path_factory.mktemp("parse_run") / "run")


@pytest.fixture
def parse_cli(parse_run, tiny_llp, run_avvp):
    """`avvp parse --run RUN` with the tiny store unless --features is given: (exit code, stdout, stderr)."""

    def run(*args):
        features = () if "--features" in args else ("--features", tiny_llp / "llp.h5")
        return run_avvp("parse", "--run", parse_run, *features, *args)

    return run


def store_with_ids(tiny_llp, path, video_ids):
    """A store with the features of the tiny store's first videos under the given ids."""
    store = read_store(tiny_llp / "llp.h5")
    streams = {name: array[: len(video_ids)] for name, array in store.streams.items()}
    return write_store(path, video_ids, streams, dtype="float32")


def test_plot_onto_a_file_is_an_error_before_any_output(parse_cli, tmp_path):
    (tmp_path / "plots").write_text("not a folder")
    result = parse_cli("--out", tmp_path / "events.json", "--csv", tmp_path / "csv", "--plot", tmp_path / "plots")
    assert_one_line_error(result, f"--plot {tmp_path / 'plots'}", "not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"]


def test_existing_picture_needs_overwrite(parse_cli, tiny_llp, tmp_path):
    video = load_split(tiny_llp, "test").video_ids[0]
    picture = tmp_path / "plots" / f"{video}.png"
    picture.parent.mkdir()
    picture.write_bytes(b"old")
    args = ("--videos", video, "--out", tmp_path / "events.json", "--plot", tmp_path / "plots")
    assert_one_line_error(parse_cli(*args), str(picture), "already exists; pass --overwrite")
    assert picture.read_bytes() == b"old" and not (tmp_path / "events.json").exists()
    code, _, stderr = parse_cli(*args, "--overwrite")
    assert code == 0, stderr
    assert picture.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("video_id", ["../escaped", "a/b"])
def test_ids_with_a_path_separator_are_refused_as_the_store_is_read(parse_cli, tiny_llp, tmp_path, video_id):
    features = store_with_ids(tiny_llp, tmp_path / "odd.h5", ["first", video_id])
    result = parse_cli("--features", features, "--out", tmp_path / "events.json", "--plot", tmp_path / "plots")
    assert_one_line_error(result, str(features), repr(video_id), "path separator")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.h5"]


def test_pictures_of_odd_ids_stay_in_the_folder(parse_cli, tiny_llp, tmp_path):
    video_ids = [".hidden", "x y", "plain-ID_1.5", "..."]
    features = store_with_ids(tiny_llp, tmp_path / "odd.h5", video_ids)
    plots = tmp_path / "out" / "plots"
    code, _, stderr = parse_cli("--features", features, "--out", tmp_path / "events.json", "--plot", plots)
    assert code == 0, stderr
    expected = ["_.hidden.png", "x_y.png", "plain-ID_1.5.png", "_....png"]
    assert sorted(p.name for p in plots.iterdir()) == sorted(expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plots"]
    assert list(json.loads((tmp_path / "events.json").read_text())["videos"]) == video_ids


@pytest.mark.parametrize("video_ids", [["a b", "a_b"], ["Clip", "clip"]])
def test_ids_drawn_to_one_file_are_an_error(parse_cli, tiny_llp, tmp_path, video_ids):
    features = store_with_ids(tiny_llp, tmp_path / "odd.h5", ["first", *video_ids])
    result = parse_cli("--features", features, "--out", tmp_path / "events.json", "--plot", tmp_path / "plots")
    assert_one_line_error(result, repr(video_ids[0]), repr(video_ids[1]), "--plot")
    assert not (tmp_path / "events.json").exists() and not (tmp_path / "plots").exists()


def test_listing_a_video_twice_is_an_error(parse_cli, tiny_llp, tmp_path):
    first, second = load_split(tiny_llp, "test").video_ids[:2]
    result = parse_cli("--videos", f"{first},{second}, {first}", "--out", tmp_path / "e.json", "--csv", tmp_path)
    assert_one_line_error(result, f"--videos: video {first!r} is listed twice")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("videos", [",", "", " , "])
def test_a_video_list_naming_no_video_is_an_error(parse_cli, tmp_path, videos):
    result = parse_cli("--videos", videos, "--out", tmp_path / "e.json")
    assert_one_line_error(result, "--videos", "names no video", "leave out --videos")
    assert list(tmp_path.iterdir()) == []


def test_a_store_without_videos_is_an_error(parse_cli, tmp_path):
    empty = {"audio": np.zeros((0, 10, 128)), "visual": np.zeros((0, 10, 2048)), "motion": np.zeros((0, 10, 512))}
    features = write_store(tmp_path / "empty.h5", [], empty)
    result = parse_cli("--features", features, "--out", tmp_path / "e.json")
    assert_one_line_error(result, f"{features}: holds no videos")
    assert not (tmp_path / "e.json").exists()


def test_outputs_on_top_of_each_other_are_an_error(parse_cli, tmp_path):
    out = tmp_path / "events.json"
    result = parse_cli("--out", out, "--plot", out)
    assert_one_line_error(result, f"--plot {out}/", f"its folder {out} is the --out file")
    assert_one_line_error(
        parse_cli("--out", tmp_path / "csv" / "pred_audio.csv", "--csv", tmp_path / "csv"), "same file", "--csv"
    )
    assert list(tmp_path.iterdir()) == []
