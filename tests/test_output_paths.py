"""Outputs that cannot be written are refused up front, in one line, with nothing created or replaced."""

import sys

import numpy as np
import pytest

from avvp.errors import AvvpError
from avvp.grounding.cli import main as groundtruth_main
from avvp.io import atomic_dir, atomic_path, check_picture, check_writable
from avvp.store import write_store


def run_groundtruth(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `avvp-groundtruth ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["avvp-groundtruth", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        groundtruth_main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def snapshot(folder) -> dict:
    """Every file and folder under `folder`, with the bytes of each file."""
    return {path: path.read_bytes() if path.is_file() else None for path in sorted(folder.rglob("*"))}


def assert_one_line_error(status: int, stderr: str, *fragments: str) -> None:
    assert status == 1, stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


@pytest.mark.parametrize("target", ["afile/x.h5", "afile/sub/x.h5"])
def test_a_file_where_a_folder_should_be_is_refused(tmp_path, target):
    (tmp_path / "afile").write_text("not a folder\n")
    with pytest.raises(AvvpError, match=r"x\.h5: .*afile is not a folder"):
        check_writable(tmp_path / target, overwrite=True)
    with pytest.raises(AvvpError, match="afile is not a folder"), atomic_path(tmp_path / target, overwrite=True):
        pass
    assert (tmp_path / "afile").read_text() == "not a folder\n"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_where_a_file_should_be_is_refused(tmp_path, overwrite):
    (tmp_path / "out").mkdir()
    with pytest.raises(AvvpError, match=r"out: is a directory; expected a file"):
        check_writable(tmp_path / "out", overwrite)
    assert check_writable(tmp_path / "out", overwrite=True, directory=True) == tmp_path / "out"


def test_check_writable_creates_nothing_and_atomic_writes_create_the_folder(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "x.h5", overwrite=False)
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "new" / "x.txt") as tmp:
        tmp.write_text("hello\n")
    assert (tmp_path / "new" / "x.txt").read_text() == "hello\n"
    with atomic_dir(tmp_path / "other" / "run") as tmp:
        (tmp / "a.txt").write_text("a\n")
    assert (tmp_path / "other" / "run" / "a.txt").read_text() == "a\n"


@pytest.mark.parametrize("name", ["plot.png", "plot.PDF", "plot.svg", "plot.jpg", "plot.jpeg"])
def test_picture_formats(tmp_path, name):
    assert check_picture(tmp_path / name, overwrite=False) == tmp_path / name


@pytest.mark.parametrize("name", ["plot.txt", "plot"])
def test_unknown_picture_format_is_refused(tmp_path, name):
    with pytest.raises(AvvpError, match=r"--plot .*: expected a \.png, \.pdf, \.svg or \.jpg picture"):
        check_picture(tmp_path / name, overwrite=False)


def test_synth_into_a_file_is_one_line(tmp_path, run_avvp):
    (tmp_path / "afile").write_text("mine\n")
    status, stdout, stderr = run_avvp("data", "synth", "--preset", "tiny", "--out", tmp_path / "afile")
    assert_one_line_error(status, stderr, "afile is not a folder")
    assert stdout == "" and (tmp_path / "afile").read_text() == "mine\n"


def test_synth_replaces_nothing_when_one_output_is_a_folder(tmp_path, run_avvp):
    out = tmp_path / "sim"
    out.mkdir()
    (out / "llp.h5").write_bytes(b"old corpus")
    (out / "pretrain.h5").mkdir()
    before = snapshot(tmp_path)
    status, _, stderr = run_avvp("data", "synth", "--preset", "tiny", "--out", out, "--overwrite")
    assert_one_line_error(status, stderr, "pretrain.h5: is a directory")
    assert snapshot(tmp_path) == before


def test_synth_refuses_a_negative_seed(tmp_path, run_avvp):
    status, _, stderr = run_avvp("data", "synth", "--preset", "tiny", "--out", tmp_path / "sim", "--seed", "-1")
    assert_one_line_error(status, stderr, "--seed -1: must be at least 0")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["afile/x.png", "plot.txt"])
def test_stats_plot_is_checked_before_the_table(tiny_llp, tmp_path, run_avvp, name):
    (tmp_path / "afile").write_text("mine\n")
    status, stdout, stderr = run_avvp("data", "stats", tiny_llp, "--plot", tmp_path / name)
    assert_one_line_error(status, stderr, "--plot" if name.endswith(".txt") else "afile is not a folder")
    assert stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_stats_plot_is_not_replaced_without_overwrite(tiny_llp, tmp_path, run_avvp):
    plot = tmp_path / "fig.png"
    plot.write_bytes(b"my picture")
    status, stdout, stderr = run_avvp("data", "stats", tiny_llp, "--plot", plot)
    assert_one_line_error(status, stderr, "fig.png: already exists; pass --overwrite")
    assert stdout == "" and plot.read_bytes() == b"my picture"
    status, _, stderr = run_avvp("data", "stats", tiny_llp, "--plot", plot, "--overwrite")
    assert status == 0, stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_plot_as_pdf(tiny_llp, tmp_path, run_avvp):
    status, _, stderr = run_avvp("data", "stats", tiny_llp, "--split", "test", "--plot", tmp_path / "fig.pdf")
    assert status == 0, stderr
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"


def test_groundtruth_build_into_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    streams = {name: rng.standard_normal((4, 10, 8)).astype(np.float32) for name in ("audio", "visual")}
    store = write_store(tmp_path / "s.h5", ["a", "b", "c", "d"], streams)
    (tmp_path / "afile").write_text("mine\n")
    before = snapshot(tmp_path)
    status, stdout, stderr = run_groundtruth(
        monkeypatch, capsys, "build", "--features", store, "--out", tmp_path / "afile" / "x.h5", "--quiet"
    )
    assert_one_line_error(status, stderr, "afile is not a folder")
    assert stdout == "" and snapshot(tmp_path) == before


def test_outputs_get_the_mode_open_would_give_even_from_private_writers(tmp_path):
    import os

    import torch
    from safetensors.torch import save_file

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "w.safetensors") as tmp:
            save_file({"w": torch.zeros(1)}, str(tmp))  # safetensors writes 0600
        with atomic_dir(tmp_path / "run") as tmp:
            save_file({"w": torch.zeros(1)}, str(tmp / "model.safetensors"))
    finally:
        os.umask(umask)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "run" / "model.safetensors").stat().st_mode & 0o777 == 0o644
