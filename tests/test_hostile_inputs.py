"""The hostile-input harness: every command of the command lines, run on the inputs of `avvp.benchmarks.hostile.CASES`.

Each case holds the invariants of the output and input layers (benchmarks/hostile.py says which): one error
line naming the file, field or option, or exit 0; nothing outside the case's folder touched; nothing staged
left; memory under a cap. A command without cases fails `test_every_command_has_cases`: add its cases to
`COMMAND_CASES` in benchmarks/hostile.py. The long version: `python -m avvp.benchmarks.hostile --cases 2000`.
"""

from __future__ import annotations

import pytest
from conftest import run_cli, trained_tiny_run

from avvp.benchmarks.hostile import CASES, COMMAND_CASES, Sandbox, commands, describe, run_case


def test_every_command_has_cases():
    assert [command for command in commands() if not COMMAND_CASES.get(command)] == []
    assert [command for command in COMMAND_CASES if command not in commands()] == []


@pytest.fixture(scope="module")
def tiny_run(tiny_llp, tmp_path_factory):
    return trained_tiny_run("base", tiny_llp, tmp_path_factory.mktemp("hostile_run") / "run")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_input_holds_the_invariants(case, tiny_llp, tmp_path, request):
    run = request.getfixturevalue("tiny_run") if case.needs_run else None
    outcome = run_case(case, Sandbox(tmp_path, tiny_llp, run), runner=run_cli)
    assert outcome.violations == [], describe(outcome)


def test_the_memory_cap_holds_inside_a_case():
    import numpy as np

    from avvp.benchmarks.hostile import memory_cap

    with memory_cap(256 << 20), pytest.raises(MemoryError):
        np.ones(1 << 30, dtype=np.uint8)  # 1 GiB past a 256 MiB cap
    np.ones(1 << 28, dtype=np.uint8)  # the cap is gone after the block


def test_the_harness_sees_a_traceback_a_touched_sentinel_and_a_staged_file(tiny_llp, tmp_path):
    """A command that breaks every invariant at once is reported for each (the harness can fail)."""
    from avvp.benchmarks.hostile import Case

    def vandal(main, *args):
        (sandbox.sentinel / "victim.txt").write_text("overwritten")
        (sandbox.work / ".out.stage-abcdefgh.tmp").write_text("left")
        return 1, "", "Traceback (most recent call last):\nValueError: boom\n"

    sandbox = Sandbox(tmp_path, tiny_llp)
    case = Case("avvp data baselines", "vandal", lambda sb: ["--annotations", sb.corpus], ("baselines",))
    outcome = run_case(case, sandbox, runner=vandal)
    found = " | ".join(outcome.violations)
    for violation in ("a traceback", "not exactly one error line", "lacks", "changed outside", "left behind"):
        assert violation in found, found


# --- what needs a process of its own: a full disk (RLIMIT_FSIZE) and Ctrl-C ---

SMALL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from avvp.commands import entry
getattr(entry, sys.argv.pop(1))()
"""


def run_script(script: str, *args, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-c", script, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)


@pytest.mark.parametrize("command", ["refine", "parse"])
def test_a_full_disk_while_writing_hdf5_is_one_line_and_leaves_nothing(command, tiny_llp, tiny_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    if command == "refine":
        args = ["finetune", "refine", "--run", tiny_run, "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
                "--out", out / "labels.h5"]  # fmt: skip
        limit, named = 16_000, out / "labels.h5"
    else:
        args = ["avvp", "parse", "--run", tiny_run, "--features", tiny_llp / "llp.h5", "--out", out / "events.json",
                "--csv", out / "csv", "--probabilities", out / "p.h5"]  # fmt: skip
        limit, named = 555_000, out / "p.h5"  # the JSON (537 kB) and CSVs fit, the probabilities (571 kB) do not
    result = run_script(SMALL_DISK, limit, *args, tmp_path=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith(f"error: {named}: ") and "cannot write it" in lines[-1], result.stderr[-3000:]
    assert [p.name for p in out.rglob("*")] == []  # no file of the set, nothing staged, no lock


CTRL_C_AT_THE_LOCK = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if the runner ignores SIGINT
fired = []
def hook(event, args):  # Ctrl-C the moment the command opens its output's lock
    if event == "open" and not fired and str(args[0]).endswith(".lock"):
        fired.append(True)
        os.kill(os.getpid(), signal.SIGINT)
sys.addaudithook(hook)
from avvp.commands import entry
getattr(entry, sys.argv.pop(1))()
"""


@pytest.mark.parametrize("command", ["synth", "groundtruth build", "import-han"])
def test_ctrl_c_inside_a_command_prints_interrupted_and_leaves_nothing(command, tiny_llp, tmp_path):
    out = tmp_path / "out"
    args = {
        "synth": ["avvp", "data", "synth", "--out", out, "--preset", "tiny"],
        "groundtruth build": ["groundtruth", "build", "--features", tiny_llp / "llp.h5", "--out", out],
        "import-han": ["avvp", "data", "import-han", export_release(tiny_llp, tmp_path), "--out", out],
    }[command]
    result = run_script(CTRL_C_AT_THE_LOCK, *args, tmp_path=tmp_path)
    assert result.returncode == 130 and result.stderr.strip().splitlines()[-1] == "interrupted", result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out*")), sorted(tmp_path.iterdir())


def export_release(tiny_llp, tmp_path):
    from avvp.export_features import export_han
    from avvp.store import read_store, write_store

    small = read_store(tiny_llp / "llp.h5")
    ids = small.video_ids[:3]
    write_store(tmp_path / "small.h5", ids, {name: array[:3] for name, array in small.streams.items()})
    export_han(tmp_path / "small.h5", tmp_path / "release", naming="filename")
    return tmp_path / "release"


def test_export_han_checks_free_space_before_writing(tiny_llp, tmp_path, monkeypatch):
    import avvp.output
    from avvp.commands.app import main

    monkeypatch.setattr(avvp.output, "free_space", lambda path: 10_000)
    result = run_cli(main, "data", "export-han", tiny_llp / "llp.h5", "--out", tmp_path / "release")
    assert result[0] == 1 and result[2].startswith(f"error: {tmp_path / 'release'}: not enough free space"), result
    assert list(tmp_path.iterdir()) == []


def test_the_staged_folder_of_a_killed_synth_is_removed_by_the_next(tmp_path):
    from avvp.synth import synthesize

    leftover = tmp_path / "corpus" / ".synth.99999.tmp"
    leftover.mkdir(parents=True)
    (leftover / "llp.h5").write_bytes(b"x" * 1000)
    synthesize(tmp_path / "corpus", preset="tiny", seed=0)
    assert not leftover.exists() and not list((tmp_path / "corpus").glob(".*"))


def test_a_metadata_read_that_does_not_return_is_ended(monkeypatch, tmp_path):
    """HDF5 loops on some damaged files (inside C, where no signal reaches Python): the input layer's deadline
    ends the command with one error line (here recorded instead of exiting)."""
    import threading

    import avvp.inputs

    ended = threading.Event()
    monkeypatch.setattr(avvp.inputs, "METADATA_SECONDS", 0.05)
    monkeypatch.setattr(avvp.inputs, "ON_DEADLINE", lambda path: ended.set())
    with avvp.inputs.metadata_deadline(tmp_path / "damaged.h5"):
        assert ended.wait(30)  # a read that has not returned
    quick = threading.Event()
    monkeypatch.setattr(avvp.inputs, "ON_DEADLINE", lambda path: quick.set())
    monkeypatch.setattr(avvp.inputs, "METADATA_SECONDS", 5.0)
    with avvp.inputs.metadata_deadline(tmp_path / "fine.h5"):
        pass
    assert not quick.wait(0.1)  # a read that returned in time: the deadline is cancelled
