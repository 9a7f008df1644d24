"""Shared fixtures."""

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

# One compute thread per test process, and for every command a test starts (they inherit the environment): the
# suite runs two xdist workers on two cores, and PyTorch's default of a thread per core gave each core two spinning
# OpenMP threads (tests/test_bench_finetune.py's throughput test: 77 s against 12 s with one thread, on 2 loaded
# cores). Set before anything imports torch, which reads it once. An OMP_NUM_THREADS already set is kept.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

SHARED_LLP = Path(__file__).resolve().parents[1].parent / "shared" / "llp"
LONGEST_FILES_FIRST = (
    "test_first_hour.py",
    "test_finetune_train.py",
    "test_tables.py",
    "test_stage_server.py",
    "test_benchmarks.py",
    "test_pretrain_release.py",
    "test_hostile_inputs.py",
    "test_extract_pipeline.py",
    "test_pretrain_train.py",
    "test_real_llp_path.py",
    "test_fault_injection.py",
    "test_refine.py",
    "test_reproduce_tables.py",
    "test_packaging.py",
    "test_runs.py",
    "test_benchmark_interrupts.py",
    "test_synth.py",
    "test_extract_nets.py",
)
"""The test files that take longest in total (pytest --durations=0 summed per file; remeasure when a file grows),
longest first: they start first."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest files first, each file's tests in their own order, the other files after them as collected.

    scripts/test.sh hands whole files to two xdist workers in this order (`--dist loadfile --no-loadscope-reorder`;
    xdist's default reorder, most tests first, left the 3-test, 95-second test_first_hour.py to start last while
    the other worker ran out of files). Longest first keeps the two workers' ends within a short file of each other.
    """
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: each file stays in order


@pytest.fixture(scope="session")
def real_llp() -> Path:
    """The real LLP annotation files in ../shared/llp; the test is skipped where they are absent."""
    if not (SHARED_LLP / "AVVP_test_pd.csv").is_file():
        pytest.skip("../shared/llp (real LLP annotations) not present")
    return SHARED_LLP


@pytest.fixture(scope="session")
def tiny_llp(tmp_path_factory) -> Path:
    """An LLP-sim `tiny` corpus (seed 0): llp.h5, pretrain.h5 and the five LLP annotation files, in one folder."""
    from avvp.synth import synthesize

    out = tmp_path_factory.mktemp("tiny_llp")
    synthesize(out, preset="tiny", seed=0)
    return out


@pytest.fixture
def run_avvp(monkeypatch, capsys):
    """Run the `avvp` command line in-process as a user would: returns (exit code, stdout, stderr)."""
    import sys

    from avvp.commands.app import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["avvp", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return run


class Launched:
    """What `accelerate launch` left: its exit status and output, and each rank's own stderr (from --log_dir)."""

    def __init__(self, completed, log_dir: Path):
        self.returncode, self.stdout, self.stderr = completed.returncode, completed.stdout, completed.stderr
        self.log_dir = log_dir

    def rank_errors(self, tail: int = 4000) -> str:
        """Each rank's stderr (its last `tail` characters), then the launcher's: for a failing assertion."""
        parts = []
        for log in sorted(self.log_dir.glob("**/stderr.log")):
            parts.append(f"--- rank {log.parent.name} ({log}) ---\n{log.read_text(errors='replace')[-tail:]}")
        parts.append(f"--- launcher (exit {self.returncode}) ---\n{self.stderr[-tail:]}")
        return "\n".join(parts)


@pytest.fixture
def launch_two_cpu_processes(tmp_path):
    """Run a console script as two real CPU processes under `accelerate launch`: returns a `Launched`.

    Accelerate 1.x starts a single process for `accelerate launch --cpu --num_processes 2` (its multi-CPU path
    goes through mpirun; huggingface/accelerate#2741), so the two CPU processes come from the torch.distributed
    launcher behind `--multi_gpu`, kept on the CPU by ACCELERATE_USE_CPU (what `--cpu` sets); they join with gloo.
    The port stays reserved for the launch: a socket bound to it with SO_REUSEADDR (not listening) keeps every
    other process's ephemeral ports off it, while the launcher's store (which sets SO_REUSEADDR too) can listen
    on it. Each rank's stderr goes to its own file as well (--tee 3), for `Launched.rank_errors`.
    """
    import socket
    import subprocess
    import sys

    def launch(script: str, *args) -> Launched:
        bin_dir = Path(sys.executable).parent
        log_dir = tmp_path / "rank_logs"
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
        with socket.socket() as reserved:
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reserved.bind(("127.0.0.1", 0))
            port = reserved.getsockname()[1]
            command = [
                bin_dir / "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
                "--main_process_port", port, "--tee", "3", "--log_dir", log_dir, bin_dir / script, *args,
            ]  # fmt: skip
            completed = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=240)
        return Launched(completed, log_dir)

    return launch


def run_cli(main, *args) -> tuple[int, str, str]:
    """Run a console entry point's `main` in this process as a user would: (exit status, stdout, stderr).

    Test modules import it (`from conftest import run_cli`): one helper for every in-process CLI test.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["prog", *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main()
                code = 0
            except SystemExit as exit_info:
                code = exit_info.code or 0
    finally:
        sys.argv = argv
    return code, stdout.getvalue(), stderr.getvalue()


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    """A CLI result (exit status, stdout, stderr) that is one `error: ...` line holding every fragment, status 1.

    Test modules import it (`from conftest import assert_one_line_error`), as they do `run_cli`.
    """
    code, _, stderr = result
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def trained_tiny_run(model: str, tiny_llp: Path, out: Path) -> Path:
    """A `model` parser trained one epoch on LLP-sim tiny into `out` (for the parse tests' module fixtures)."""
    from avvp.finetune.config import FinetuneConfig
    from avvp.finetune.train import train

    features, annotations = str(tiny_llp / "llp.h5"), str(tiny_llp)
    cfg = FinetuneConfig.from_preset(
        "tiny", model=model, features=features, annotations=annotations, out=str(out), epochs=1
    )
    train(cfg, show_progress=False)
    return out


@pytest.fixture
def one_thread_fresh_accelerate_state():
    """One torch thread during the test, then the thread count back and Accelerate's process state reset (for test
    modules that train in this process: `pytestmark = pytest.mark.usefixtures(...)`)."""
    import torch
    from accelerate.state import AcceleratorState

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    AcceleratorState._reset_state(reset_partial_state=True)
