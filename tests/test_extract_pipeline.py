"""`avvp data extract` and `avvp parse --video` end to end on videos written in the test, with random weights.

The features test runs the CLI with `--weights DIR --offline`: the three published architectures loaded from random
weight files (nothing downloaded); its video holds two distinct pictures, which the pipeline sends through each
network once, so ResNet-152 stays cheap. The tests of
windows, padding, resuming, bad files and the CLI (the release's sample has 80 distinct frames) use
`light_networks`, random linear maps of pooled pixels with the networks' output widths: they test the plumbing,
not the networks.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli, trained_tiny_run
from extract_media import change_video, write_audio_only, write_video

from avvp.commands.app import main
from avvp.extract import pipeline
from avvp.extract.pipeline import ExtractConfig, Networks, extract, list_videos, parts_dir
from avvp.store import read_store, store_info

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "llp" / "sample" / "BjCEufrlXm4.mp4"


class PooledLinear(torch.nn.Module):
    """A stand-in network: average-pool the input to a few cells, then a random linear map to `width`."""

    def __init__(self, cells: int, width: int):
        super().__init__()
        self.linear = torch.nn.Linear(cells, width)

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(inputs.reshape(len(inputs), -1, *inputs.shape[-2:]), (3, 4, 4))
        return self.linear(pooled.flatten(1))

    forward = forward_features


def light_networks() -> Networks:
    torch.manual_seed(0)
    return Networks(PooledLinear(48, 2048), PooledLinear(48, 512), PooledLinear(48, 128))


@pytest.fixture(scope="module")
def change_store(tmp_path_factory) -> Path:
    """The issue's video (red until 3 s then blue, silence until 6 s then a tone) and a silent copy, extracted by
    the CLI with `--weights DIR --offline`: the three published architectures with random float16 weight files
    (`test_extract_nets`' helpers; each file made the registry's, so that its sha256 check passes)."""
    from test_extract_nets import (
        published_r2plus1d_18,
        published_resnet152,
        published_vggish,
        random_state_dict,
        write_weights,
    )

    folder = tmp_path_factory.mktemp("change")
    (folder / "videos").mkdir()
    change_video(folder / "videos" / "change.mp4")
    change_video(folder / "videos" / "mute.mp4", audio=False)
    weights, out = folder / "weights", folder / "store.h5"
    keys = {"resnet152": published_resnet152(), "r2plus1d_18": published_r2plus1d_18(), "vggish": published_vggish()}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, shapes in keys.items():
            write_weights(monkeypatch, weights, name, random_state_dict(shapes, dtype=torch.float16))
        code, stdout, stderr = run_cli(
            main, "data", "extract", folder / "videos", "--out", out, "--weights", weights, "--offline"
        )
    assert code == 0, stderr
    assert "mute (10.00 s): no audio stream; audio features are those of silence" in stdout
    return out


def test_store_layout(change_store):
    info = store_info(change_store)
    assert info["videos"] == 2
    assert info["streams"] == {
        "audio": {"shape": [2, 10, 128], "dtype": "float16"},
        "visual": {"shape": [2, 10, 2048], "dtype": "float16"},
        "motion": {"shape": [2, 10, 512], "dtype": "float16"},
    }
    assert read_store(change_store).video_ids == ["change", "mute"]
    assert info["attrs"]["source"] == pipeline.SOURCE
    extractor = json.loads(info["attrs"]["extractor"])
    assert "ResNet-152" in extractor["visual"]["network"] and "CenterCrop(224)" in extractor["visual"]["preprocessing"]
    assert extractor["settings"]["audio_embedding"] == "raw"
    weights = Path(change_store).parent / "weights" / extractor["visual"]["weights"]["file"]
    assert extractor["visual"]["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_features_follow_the_picture_and_the_sound(change_store):
    store = read_store(change_store)
    for stream in ("visual", "motion"):
        features = store[stream][0]  # (10, W)
        assert np.array_equal(features[0], features[1]) and np.array_equal(features[0], features[2]), stream
        assert not np.allclose(features[3], features[0], atol=1e-3), stream  # the second holding the change
        assert np.array_equal(features[5], features[9]), stream
    audio = store["audio"][0]
    for second in range(1, 5):
        assert np.array_equal(audio[second], audio[0])
    assert not np.allclose(audio[6], audio[0], atol=1e-4)  # the example holding 6 s
    # the copy without audio has the features of silence, which the silent seconds of the original share
    assert np.array_equal(store["audio"][1], np.repeat(audio[:1], 10, axis=0))
    assert np.array_equal(store["visual"][1], store["visual"][0])


def test_long_and_short_videos(tmp_path):
    write_video(tmp_path / "long.mp4", 35, colour_at=lambda t: (20 * int(t // 10), 90, 40))
    write_video(tmp_path / "short.mp4", 2)
    result = extract(list_videos([tmp_path]), tmp_path / "out.h5", ExtractConfig(workers=0), networks=light_networks)
    store = read_store(tmp_path / "out.h5")
    assert store.video_ids == ["long@0", "long@10", "long@20", "long@30", "short"]
    assert result.windows == 5 and result.videos == 2
    assert any(note.startswith("long") and "4 windows" in note for note in result.notes)
    assert any("long@30 padded from 5.00 s" in note for note in result.notes)
    assert any("short padded from 2.00 s" in note for note in result.notes)
    # a padded window repeats its last frame: its later seconds equal its last real one
    assert np.array_equal(store["visual"][4][2], store["visual"][4][9])
    assert not np.allclose(store["visual"][0][0], store["visual"][1][0], atol=1e-3)  # another colour each window


class Killed(Exception):
    """Stands for the process being killed (SIGKILL, a full node) between two batches."""


def test_resume_after_a_kill(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        write_video(tmp_path / f"{name}.mp4", 2, colour_at=lambda t, n=name: (ord(n) * 2, 50, 50))
    videos, out = list_videos([tmp_path]), tmp_path / "out" / "store.h5"
    config = ExtractConfig(workers=0, batch_windows=1)
    calls, armed = [], [True]
    features = Networks.features

    def killed_on_the_second_batch(self, windows, frame_batch=80):
        calls.append([w.video_id for w in windows])
        if armed[0] and len(calls) == 2:
            raise Killed
        return features(self, windows, frame_batch)

    monkeypatch.setattr(Networks, "features", killed_on_the_second_batch)
    networks = light_networks()
    with pytest.raises(Killed):
        extract(videos, out, config, networks=networks)
    assert not out.exists() and len(list(parts_dir(out).glob("part-*.h5"))) == 1
    calls.clear()
    armed[0] = False
    result = extract(videos, out, config, networks=networks)
    assert calls == [["b"], ["c"]] and result.resumed == 1  # video a is not extracted twice
    assert read_store(out).video_ids == ["a", "b", "c"] and not parts_dir(out).exists()
    monkeypatch.setattr(Networks, "features", features)
    fresh = extract(videos, tmp_path / "fresh.h5", config, networks=networks)
    assert fresh.resumed == 0
    for stream in ("audio", "visual", "motion"):
        np.testing.assert_array_equal(read_store(out)[stream], read_store(tmp_path / "fresh.h5")[stream])


@pytest.fixture
def cli_networks(monkeypatch):
    """The CLI's networks: `light_networks` instead of the published weights (nothing downloaded)."""
    monkeypatch.setattr(Networks, "load", classmethod(lambda cls, config, device: light_networks()))


def test_corrupt_file_in_a_folder(tmp_path, cli_networks):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", 2)
    (folder / "b.mp4").write_bytes(bytes(range(256)) * 40)
    write_video(folder / "c.mp4", 2)
    out = tmp_path / "store.h5"
    result = run_cli(main, "data", "extract", folder, "--out", out, "--workers", "0")
    assert_one_line_error(result, str(folder / "b.mp4"), "--skip-bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]  # nothing written, not even a lock
    code, stdout, _ = run_cli(main, "data", "extract", folder, "--out", out, "--skip-bad", "--workers", "2")
    assert code == 0, stdout
    assert "skipped 1 file(s)" in stdout and "b.mp4" in stdout
    assert read_store(out).video_ids == ["a", "c"]


@pytest.mark.parametrize("case", ["not a video", "no video stream", "under one second"])
def test_bad_video_is_one_line(tmp_path, cli_networks, case):
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    if case == "not a video":
        path.write_text("no video here\n")
    elif case == "no video stream":
        write_audio_only(path)
    else:
        write_video(path, 0.5)
    expected = {"not a video": "not a video", "no video stream": "no video stream", "under one second": "at least 1 s"}
    assert_one_line_error(run_cli(main, "data", "extract", path, "--out", tmp_path / "s.h5"), str(path), expected[case])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_cli_says_what_it_padded_and_silenced(tmp_path, cli_networks):
    write_video(tmp_path / "short.mp4", 2)
    change_video(tmp_path / "mute.mp4", audio=False)
    code, stdout, stderr = run_cli(main, "data", "extract", tmp_path, "--out", tmp_path / "s.h5", "--dtype", "float32")
    assert code == 0, stderr
    assert "wrote " in stdout and "2 videos, 2 windows of 10 s (float32)" in stdout
    assert "short (2.00 s): short padded from 2.00 s to 10 s" in stdout
    assert "mute (10.00 s): no audio stream; audio features are those of silence" in stdout
    assert store_info(tmp_path / "s.h5")["streams"]["visual"]["dtype"] == "float32"


def test_missing_weights_offline(tmp_path):
    change_video(tmp_path / "v.mp4")
    (tmp_path / "weights").mkdir()
    out = tmp_path / "store.h5"
    result = run_cli(
        main, "data", "extract", tmp_path / "v.mp4", "--out", out, "--weights", tmp_path / "weights", "--offline"
    )
    assert_one_line_error(result, "resnet152-b121ed2d.pth", str(tmp_path / "weights"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4", "weights"]


def test_merge_rank_stores(tmp_path, cli_networks):
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.mp4", 2)
        assert run_cli(main, "data", "extract", tmp_path / f"{name}.mp4", "--out", tmp_path / f"{name}.h5")[0] == 0
    code, stdout, _ = run_cli(main, "data", "merge", tmp_path / "a.h5", tmp_path / "b.h5", "--out", tmp_path / "ab.h5")
    assert code == 0 and "2 videos" in stdout
    assert read_store(tmp_path / "ab.h5").video_ids == ["a", "b"]
    merged = read_store(tmp_path / "ab.h5")
    np.testing.assert_array_equal(merged["visual"][1], read_store(tmp_path / "b.h5")["visual"][0])
    assert_one_line_error(
        run_cli(main, "data", "merge", tmp_path / "a.h5", tmp_path / "a.h5", "--out", tmp_path / "aa.h5"),
        "video 'a' is also in",
    )


def test_compare_with_the_release_layout(tmp_path, cli_networks):
    write_video(tmp_path / "abcdefghijk.mp4", 2)
    out = tmp_path / "store.h5"
    assert run_cli(main, "data", "extract", tmp_path / "abcdefghijk.mp4", "--out", out)[0] == 0
    store = read_store(out)
    release = tmp_path / "release"
    for stream, folder in pipeline.RELEASE_FOLDERS.items():
        (release / folder).mkdir(parents=True)
        features = store[stream][0]
        if stream == "visual":
            features = np.repeat(features, 8, axis=0)  # the release keeps the 80 frames
        np.save(release / folder / "abcdefghijk.npy", features * (2.0 if stream == "audio" else 1.0))
    code, stdout, stderr = run_cli(
        main, "data", "extract", tmp_path / "abcdefghijk.mp4", "--out", out, "--overwrite", "--compare", release
    )
    assert code == 0, stderr
    for stream in ("audio", "visual", "motion"):  # a scale does not change the cosine
        assert f"{stream}: cosine to the release 1.0000 mean, 1.0000 min over 1 videos" in stdout
    assert_one_line_error(
        run_cli(main, "data", "extract", tmp_path / "abcdefghijk.mp4", "--out", out, "--compare", tmp_path / "no"),
        "--compare",
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_llp, tmp_path_factory) -> Path:
    return trained_tiny_run("base", tiny_llp, tmp_path_factory.mktemp("run") / "run")


def test_parse_the_sample_video(tmp_path, tiny_run, cli_networks):
    if not SAMPLE.is_file():
        pytest.skip("../shared/llp/sample (the release's sample video) not present")
    out, csv, plot = tmp_path / "events.json", tmp_path / "csv", tmp_path / "plots"
    code, stdout, stderr = run_cli(
        main, "parse", "--run", tiny_run, "--video", SAMPLE, "--out", out, "--csv", csv, "--plot", plot
    )
    assert code == 0, stderr
    document = json.loads(out.read_text())
    assert list(document["videos"]) == ["BjCEufrlXm4"] and document["windows"] == {"BjCEufrlXm4": ["BjCEufrlXm4"]}
    assert (csv / "pred_audio.csv").read_text().startswith("filename\tonset\toffset\tevent_labels")
    assert (csv / "pred_visual.csv").is_file()
    assert (plot / "BjCEufrlXm4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_a_long_video(tmp_path, tiny_run, cli_networks):
    write_video(tmp_path / "long.mp4", 35, colour_at=lambda t: (20 * int(t // 10), 90, 40))
    out, plot = tmp_path / "events.json", tmp_path / "plots"
    code, stdout, stderr = run_cli(
        main, "parse", "--run", tiny_run, "--video", tmp_path / "long.mp4", "--out", out, "--plot", plot
    )
    assert code == 0, stderr
    assert "4 windows" in stdout and "padded from 5.00 s" in stdout
    document = json.loads(out.read_text())
    assert document["windows"] == {"long": ["long@0", "long@10", "long@20", "long@30"]}
    assert sorted(p.name for p in plot.iterdir()) == ["long.png"]
    events = document["videos"]["long"]
    assert all(0 <= e["onset"] < e["offset"] <= 40 for e in events)


def test_shards_of_two_processes_merge_to_one_store(tmp_path, monkeypatch):
    """What `accelerate launch --num_processes 2` does, one rank after the other in this process."""
    from types import SimpleNamespace

    import avvp.runs

    for name in ("a", "b", "c"):
        write_video(tmp_path / f"{name}.mp4", 2, colour_at=lambda t, n=name: (ord(n) * 2, 50, 50))
    videos, config = list_videos([tmp_path]), ExtractConfig(workers=0)
    whole = extract(videos, tmp_path / "whole.h5", config, networks=light_networks())
    outputs = []
    for rank in (0, 1):
        state = SimpleNamespace(process_index=rank, num_processes=2, device="cpu", is_main_process=rank == 0)
        monkeypatch.setattr(avvp.runs, "process_state", lambda state=state: state)
        outputs.append(extract(videos, tmp_path / "store.h5", config, networks=light_networks()).path)
    assert [p.name for p in outputs] == ["store.rank0-of-2.h5", "store.rank1-of-2.h5"]
    assert read_store(outputs[0]).video_ids == ["a", "c"] and read_store(outputs[1]).video_ids == ["b"]
    assert run_cli(main, "data", "merge", *outputs, "--out", tmp_path / "store.h5")[0] == 0
    merged, single = read_store(tmp_path / "store.h5"), read_store(whole.path)
    order = [merged.video_ids.index(v) for v in single.video_ids]
    for stream in ("audio", "visual", "motion"):  # other batches: float16 rounding of float32 sums may differ
        np.testing.assert_allclose(merged[stream][order], single[stream], rtol=2e-3, atol=1e-3)


def test_benchmark_pipelines_agree():
    """avvp.benchmarks.bench_extract's two pipelines (the release's JPEG/WAV way and ours) give the same features."""
    from avvp.benchmarks.bench_extract import measure

    result = measure(videos=1, workers=0, light=True)
    assert result["release_videos_per_s"] > 0 and result["ours_videos_per_s"] > 0
    assert all(cosine > 0.999 for cosine in result["min_cosine_release_vs_ours"].values()), result


def test_parse_a_file_that_is_not_a_video(tmp_path, tiny_run, cli_networks):
    (tmp_path / "clip.mp4").write_text("no video here\n")
    result = run_cli(main, "parse", "--run", tiny_run, "--video", tmp_path / "clip.mp4", "--out", tmp_path / "e.json")
    assert_one_line_error(result, str(tmp_path / "clip.mp4"), "not a video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    both = run_cli(main, "parse", "--run", tiny_run, "--video", tmp_path / "clip.mp4", "--features", tmp_path / "f.h5",
                   "--out", tmp_path / "e.json")  # fmt: skip
    assert_one_line_error(both, "either --features STORE or --video FILE")
