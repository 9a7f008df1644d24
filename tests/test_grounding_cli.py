"""`avvp-groundtruth`: build, calibrate and stats end to end, and a one-line error per bad input, with no output."""

import re
import sys

import numpy as np
import pytest

from avvp.avg_labels import read_avg_labels
from avvp.grounding.cli import main
from avvp.store import write_store

SNIPPETS = 10


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `avvp-groundtruth ARGS` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["avvp-groundtruth", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def random_store(path, videos=12, streams=("audio", "visual"), nan_video=None):
    rng = np.random.default_rng(0)
    widths = {"audio": 16, "visual": 32}
    arrays = {name: rng.standard_normal((videos, SNIPPETS, widths[name])).astype(np.float32) for name in streams}
    if nan_video is not None:
        arrays["visual"][nan_video, 3, 7] = np.nan
    return write_store(path, [f"v{i:03d}" for i in range(videos)], arrays)


def test_build_stats_calibrate_on_llp_sim(tiny_llp, tmp_path, monkeypatch, capsys):
    features, out, plot = tiny_llp / "pretrain.h5", tmp_path / "avg.h5", tmp_path / "stats.png"
    args = ["--recipe", "release", "--quiet"]
    status, stdout, _ = run_cli(monkeypatch, capsys, "build", "--features", features, "--out", out, *args)
    assert status == 0 and f"wrote {out}: 200 videos" in stdout
    labels = read_avg_labels(out)
    assert labels.components.shape == (200, SNIPPETS)
    assert labels.attrs["visual_threshold"] == 0.96 and labels.attrs["audio_threshold"] == 0.99
    assert labels.attrs["rule"] == "or" and labels.attrs["engine"] == "fast"
    assert labels.attrs["source"] == str(features) and labels.attrs["thresholds_from"] == "fixed"

    status, stdout, _ = run_cli(monkeypatch, capsys, "stats", out, "--plot", plot, "--latent")
    assert status == 0 and "positive pairs:" in stdout and "videos with n components" in stdout
    assert "grounded share per pair type: audio-audio" in stdout and "audio-visual" in stdout
    assert "labels against LLP-sim's latent events" in stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    status, stdout, _ = run_cli(
        monkeypatch, capsys, "calibrate", "--features", features, "--quantile", 0.5, "--quantile", 0.9
    )
    assert status == 0
    rows = [line.split() for line in stdout.splitlines() if line.strip().startswith(("0.5 ", "0.9 "))]
    assert [row[0] for row in rows] == ["0.5", "0.9"]
    median_visual, median_audio = float(rows[0][1]), float(rows[0][2])

    calibrated = tmp_path / "calibrated.h5"
    args = ["--visual-quantile", 0.5, "--audio-quantile", 0.5, "--rule", "and", "--quiet"]
    status, _, _ = run_cli(monkeypatch, capsys, "build", "--features", features, "--out", calibrated, *args)
    attrs = read_avg_labels(calibrated).attrs
    assert status == 0 and attrs["thresholds_from"] == "quantile" and attrs["rule"] == "and"
    assert attrs["visual_threshold"] == pytest.approx(median_visual, abs=1e-4)
    assert attrs["audio_threshold"] == pytest.approx(median_audio, abs=1e-4)
    assert attrs["visual_quantile"] == 0.5 and attrs["neighbours"] == 10 and attrs["sample_videos"] == 200


def test_balanced_thresholds_are_the_default(tiny_llp, tmp_path, monkeypatch, capsys):
    """Calibrated so that the stated share of pairs is grounded after the components are joined."""
    from avvp.grounding.stats import label_stats

    features = tiny_llp / "pretrain.h5"
    for share in (0.5, 0.3):
        out = tmp_path / f"avg-{share}.h5"
        args = ["--grounded-share", share] if share != 0.5 else []
        status, _, _ = run_cli(monkeypatch, capsys, "build", "--features", features, "--out", out, "--quiet", *args)
        labels = read_avg_labels(out)
        assert status == 0 and labels.attrs["thresholds_from"] == "balanced"
        assert labels.attrs["grounded_share"] == share
        # The sample is the whole store (200 videos): the labels written hold the share reached on it.
        assert label_stats(labels.components).positive_pairs == pytest.approx(labels.attrs["sample_grounded_share"])
        assert labels.attrs["sample_grounded_share"] == pytest.approx(share, abs=0.01)
        assert labels.attrs["visual_quantile"] == labels.attrs["audio_quantile"]
    status, _, err = run_cli(monkeypatch, capsys, "build", "--features", features, "--out", out, "--grounded-share", 1)
    assert status == 1 and "--grounded-share 1.0: a share of snippet pairs lies strictly between 0 and 1" in err


def test_silence_rule_is_recorded(tmp_path, monkeypatch, capsys):
    store, out = random_store(tmp_path / "s.h5"), tmp_path / "avg.h5"
    silence = tmp_path / "silence.npy"
    np.save(silence, np.ones((1, 16), dtype=np.float32))  # the authors' file holds one row
    args = ["--exclude-silence", silence, "--silence-threshold", 0.5, "--quiet"]
    status, _, _ = run_cli(monkeypatch, capsys, "build", "--features", store, "--out", out, *args)
    attrs = read_avg_labels(out).attrs
    assert status == 0 and attrs["exclude_silence"] == str(silence) and attrs["silence_threshold"] == 0.5


BAD_INPUTS = {
    "no audio stream": (
        dict(streams=("visual",)),
        [],
        r"s\.h5: no stream 'audio'; grounding needs 'audio' and 'visual' \(the store has visual\)",
    ),
    "no visual stream": (
        dict(streams=("audio",)),
        [],
        r"s\.h5: no stream 'visual'; grounding needs 'audio' and 'visual' \(the store has audio\)",
    ),
    "out is the store": ({}, ["--out", "STORE", "--overwrite"], r"--out .*s\.h5: that is the feature store itself"),
    "NaN in a later chunk": (
        dict(nan_video=9),
        ["--batch-size", "4"],
        r"s\.h5: stream 'visual' of video 'v009' holds NaN or infinite values",
    ),
    "visual threshold above 1": ({}, ["--visual-threshold", "1.5"], r"--visual-threshold 1\.5: .* in \[-1, 1\]"),
    "audio threshold below -1": ({}, ["--audio-threshold", "-1.2"], r"--audio-threshold -1\.2: .* in \[-1, 1\]"),
    "quantile 0": ({}, ["--visual-quantile", "0"], r"--visual-quantile 0\.0: a quantile must lie strictly between"),
    "quantile 1": ({}, ["--audio-quantile", "1"], r"--audio-quantile 1\.0: a quantile must lie strictly between"),
    "threshold and quantile": (
        {},
        ["--visual-threshold", "0.9", "--visual-quantile", "0.5"],
        "give --visual-threshold or --visual-quantile, not both",
    ),
    "silence of the wrong width": (
        {},
        ["--exclude-silence", "SILENCE"],
        r"silence\.npy: silence embedding has shape \(128,\); expected \(16,\) or \(1, 16\)",
    ),
    "unknown engine": ({}, ["--engine", "igraph"], "--engine 'igraph': choose one of fast, networkx"),
    "missing store": ({}, ["--features", "MISSING"], r"missing\.h5: no such feature store"),
    "negative seed": ({}, ["--visual-quantile", "0.9", "--seed", "-1"], "--seed -1: must be at least 0"),
    "no videos": (dict(videos=0), [], r"s\.h5: the feature store holds no videos"),
    "out is a folder": ({}, ["--out", "FOLDER", "--overwrite"], r"folder: is a directory; expected a file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_no_output(case, tmp_path, monkeypatch, capsys):
    store_options, extra, message = BAD_INPUTS[case]
    store = random_store(tmp_path / "s.h5", **store_options)
    np.save(tmp_path / "silence.npy", np.ones(128, dtype=np.float32))
    (tmp_path / "folder").mkdir()
    replace = {
        "SILENCE": tmp_path / "silence.npy",
        "MISSING": tmp_path / "missing.h5",
        "STORE": store,
        "FOLDER": tmp_path / "folder",
    }
    extra = [replace.get(arg, arg) for arg in extra]
    features = [] if "--features" in extra else ["--features", store]
    out = [] if "--out" in extra else ["--out", tmp_path / "out" / "avg.h5"]
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    status, stdout, stderr = run_cli(monkeypatch, capsys, "build", *features, *out, *extra, "--quiet")
    assert status == 1 and stdout == ""
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: ")
    assert re.search(message, stderr), stderr
    assert not (tmp_path / "out" / "avg.h5").exists()
    if case != "NaN in a later chunk":  # refused before the pass: not even the folder is created
        assert not (tmp_path / "out").exists()
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert after == before  # nothing new, nothing changed


def test_features_too_large_for_float32(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    streams = {name: rng.standard_normal((3, SNIPPETS, 8)).astype(np.float32) for name in ("audio", "visual")}
    streams["visual"][1] *= 1e30  # finite, but its squares are not
    store = write_store(tmp_path / "s.h5", ["a", "b", "c"], streams, dtype="float32")
    status, _, stderr = run_cli(
        monkeypatch, capsys, "build", "--features", store, "--out", tmp_path / "o.h5", "--quiet"
    )
    assert (
        status == 1 and stderr == f"error: {store}: stream 'visual' of video 'b' is too large to compare in float32\n"
    )
    assert not (tmp_path / "o.h5").exists()


def test_existing_out_is_kept_without_overwrite(tmp_path, monkeypatch, capsys):
    store, out = random_store(tmp_path / "s.h5"), tmp_path / "avg.h5"
    out.write_bytes(b"earlier labels")
    status, _, stderr = run_cli(monkeypatch, capsys, "build", "--features", store, "--out", out, "--quiet")
    assert status == 1 and stderr == f"error: {out}: already exists; pass --overwrite to replace it\n"
    assert out.read_bytes() == b"earlier labels"
    status, _, _ = run_cli(monkeypatch, capsys, "build", "--features", store, "--out", out, "--overwrite", "--quiet")
    assert status == 0 and read_avg_labels(out).components.shape == (12, SNIPPETS)


def test_calibrate_refuses_a_bad_quantile(tmp_path, monkeypatch, capsys):
    store = random_store(tmp_path / "s.h5")
    status, stdout, stderr = run_cli(monkeypatch, capsys, "calibrate", "--features", store, "--quantile", 1.0)
    assert status == 1 and stdout == ""
    assert stderr == "error: --quantile 1.0: a quantile must lie strictly between 0 and 1\n"


def test_calibrate_refuses_a_negative_seed(tmp_path, monkeypatch, capsys):
    store = random_store(tmp_path / "s.h5")
    status, stdout, stderr = run_cli(monkeypatch, capsys, "calibrate", "--features", store, "--seed", -1)
    assert status == 1 and stdout == "" and stderr == "error: --seed -1: must be at least 0 and at most 4,294,967,295\n"


def test_stats_plot_needs_overwrite_and_a_picture_format(tmp_path, monkeypatch, capsys):
    store, labels, plot = random_store(tmp_path / "s.h5"), tmp_path / "avg.h5", tmp_path / "p.png"
    assert run_cli(monkeypatch, capsys, "build", "--features", store, "--out", labels, "--quiet")[0] == 0
    plot.write_bytes(b"my picture")
    status, stdout, stderr = run_cli(monkeypatch, capsys, "stats", labels, "--plot", plot)
    assert status == 1 and stdout == "" and stderr == f"error: {plot}: already exists; pass --overwrite to replace it\n"
    assert plot.read_bytes() == b"my picture"
    status, _, stderr = run_cli(monkeypatch, capsys, "stats", labels, "--plot", plot, "--overwrite")
    assert status == 0 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    status, stdout, stderr = run_cli(monkeypatch, capsys, "stats", labels, "--plot", tmp_path / "p.txt")
    assert status == 1 and stdout == "" and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: --plot {tmp_path / 'p.txt'}: expected a .png, .pdf, .svg or .jpg picture")
    status, _, stderr = run_cli(monkeypatch, capsys, "stats", labels, "--plot", tmp_path / "p.svg")
    assert status == 0 and (tmp_path / "p.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_stats_of_a_file_that_is_not_a_label_file(tmp_path, monkeypatch, capsys):
    store = random_store(tmp_path / "s.h5")
    status, _, stderr = run_cli(monkeypatch, capsys, "stats", store, "--plot", tmp_path / "p.png")
    assert status == 1 and "no 'components' dataset" in stderr and len(stderr.splitlines()) == 1
    assert not (tmp_path / "p.png").exists()
