"""Kill a tiny finetuning run and a tiny pretraining run with SIGKILL at instants drawn from a seed, resume each,
and check that every one ends byte-identical to the uninterrupted run.

An instant is the N-th line the toolkit's own code executes (avvp/, finetune/, pretrain/), counted by a trace
function in a forked child that sends itself SIGKILL there: deterministic, and anywhere, the middle of a
checkpoint save included. The instants are drawn in turn from the lines inside `avvp.runs.save_checkpoint` (the
fsyncs, the rename, the pruning), from the run once its folder is set up (training, validation, the final
writes) and from the whole run (start-up included). After each kill the run is resumed (`--resume`; a run
killed before its config.json was written is started again) in a fresh child, and its results are compared with
the uninterrupted run's: finetune's model.safetensors, metrics.json, pred_audio.csv and pred_visual.csv byte for
byte, config.json apart from `out` (the run folder's own name); pretraining's model.safetensors, config.json (the
encoder's) and log.jsonl byte for byte, pretrain_config.json apart from `out`, and metrics.json apart from the
setting `out` it records and its two timings (train_seconds, videos_per_second). No
temporary file or folder may be left behind.

    python -m avvp.benchmarks.fault_injection [--kills 20] [--seed 0] [--trainer both|finetune|pretrain]

tests/test_fault_injection.py runs a few instants of each; this script is the long version.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOTS = tuple(str(Path(__file__).resolve().parents[1] / name) + os.sep for name in ("avvp", "finetune", "pretrain"))
"""The toolkit's own code, whose lines are counted."""
SAVE_FUNCTION = "save_checkpoint"
START_FUNCTION = "start_run_dir"
"""Where a fresh run folder is made: lines after it kill a run that --resume continues."""
TIMINGS = ("train_seconds", "videos_per_second")
"""Pretraining metrics that measure time, not results."""


class LineCounter:
    """A trace function counting the lines the toolkit executes; SIGKILL to this process at line `kill_at`.

    Also records which line numbers ran inside `avvp.runs.save_checkpoint`, to draw kills during saves.
    """

    def __init__(self, kill_at: int | None = None):
        self.kill_at, self.count, self.save_depth, self.save_lines = kill_at, 0, 0, []
        self.started_at: int | None = None
        """The line count when the run folder was first set up (`start_run_dir` returned)."""

    def __call__(self, frame, event, arg):  # the global trace function: called on each new frame
        if not frame.f_code.co_filename.startswith(ROOTS):
            return None
        if frame.f_code.co_name == SAVE_FUNCTION and frame.f_code.co_filename.endswith("runs.py"):
            self.save_depth += 1
        return self.local

    def local(self, frame, event, arg):
        if event == "line":
            self.count += 1
            if self.save_depth:
                self.save_lines.append(self.count)
            if self.count == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        elif event == "return" and frame.f_code.co_filename.endswith("runs.py"):
            if frame.f_code.co_name == SAVE_FUNCTION:
                self.save_depth -= 1
            elif frame.f_code.co_name == START_FUNCTION and self.started_at is None:
                self.started_at = self.count
        return self.local


@dataclass
class ChildResult:
    killed: bool
    status: int
    lines: int
    save_lines: list[int]
    started_at: int


def in_child(work: Callable[[], object], kill_at: int | None = None) -> ChildResult:
    """Run `work` in a forked child under a LineCounter; how it ended and, when it was not killed, its counts."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        status = 0
        try:
            import torch
            from accelerate.state import AcceleratorState

            torch.set_num_threads(1)
            AcceleratorState._reset_state(reset_partial_state=True)
            counter = LineCounter(kill_at)
            sys.settrace(counter)
            try:
                work()
            finally:
                sys.settrace(None)
            counts = {"lines": counter.count, "save_lines": counter.save_lines, "started_at": counter.started_at}
            os.write(write_end, json.dumps(counts).encode())
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            os.close(write_end)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, wait_status = os.waitpid(pid, 0)
    counts = json.loads(b"".join(chunks)) if chunks else {"lines": 0, "save_lines": [], "started_at": None}
    killed = os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
    status = os.waitstatus_to_exitcode(wait_status)
    return ChildResult(killed, status, counts["lines"], counts["save_lines"], counts["started_at"] or 0)


# --- the two trainers, tiny ---


def finetune_job(data: Path, out: Path, resume: bool = False) -> Callable[[], object]:
    from avvp.finetune.config import FinetuneConfig
    from avvp.finetune.train import train

    def work():
        cfg = FinetuneConfig.from_preset(
            "tiny", model="base-adv-skip", features=str(data / "llp.h5"), annotations=str(data), out=str(out)
        )
        train(cfg, resume=resume, overwrite=not resume, show_progress=False)

    return work


def pretrain_job(data: Path, out: Path, resume: bool = False) -> Callable[[], object]:
    from avvp.pretrain.config import PretrainConfig
    from avvp.pretrain.train import train

    def work():
        cfg = PretrainConfig.from_preset(
            "tiny",
            features=str(data / "pre.h5"),
            labels=str(data / "avg.h5"),
            out=str(out),
            hidden_size=32,
            batch_size=8,
            epochs=2,
            save_every=3,
            log_every=2,
            seed=3,
        )
        train(cfg, resume=resume, overwrite=not resume)

    return work


def finetune_data(folder: Path) -> Path:
    from avvp.synth import synthesize

    synthesize(folder, preset="tiny", seed=0)
    return folder


def pretrain_data(folder: Path, videos: int = 48) -> Path:
    """A small pretraining store (random features at small widths) and AVG labels from random components."""
    from avvp.avg_labels import write_avg_labels
    from avvp.store import write_store

    rng = np.random.default_rng(0)
    ids = [f"v{i:04d}" for i in range(videos)]
    streams = {
        name: rng.normal(size=(videos, 10, width)).astype(np.float32)
        for name, width in {"audio": 16, "visual": 24, "motion": 8}.items()
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_store(folder / "pre.h5", ids, streams, dtype="float32", source="fault injection")
    write_avg_labels(folder / "avg.h5", ids, rng.integers(0, 3, size=(videos, 10)).astype(np.int8))
    return folder


TRAINERS = {
    "finetune": (finetune_data, finetune_job, "config.json"),
    "pretrain": (pretrain_data, pretrain_job, "pretrain_config.json"),
}


INVOCATION = ("out",)
"""Settings that name the (other) run folder, not what it computed."""


def _without_out(settings: dict) -> dict:
    return {key: value for key, value in settings.items() if key not in INVOCATION}


def results(trainer: str, out: Path) -> dict[str, bytes | dict]:
    """What must equal the uninterrupted run's (the settings that record how it was invoked apart)."""
    if trainer == "finetune":
        found = {name: (out / name).read_bytes() for name in ("model.safetensors", "pred_audio.csv", "pred_visual.csv")}
        found["metrics.json"] = (out / "metrics.json").read_bytes()
        found["config.json"] = _without_out(json.loads((out / "config.json").read_text()))
        return found
    found = {name: (out / name).read_bytes() for name in ("model.safetensors", "config.json", "log.jsonl")}
    found["pretrain_config.json"] = _without_out(json.loads((out / "pretrain_config.json").read_text()))
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["config"] = _without_out(metrics["config"])
    found["metrics.json"] = {key: value for key, value in metrics.items() if key not in TIMINGS}
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary files or folders in the run folder (and the lock beside it)."""
    found = [str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith(".tmp")]
    return found + ([f"../.{out.name}.lock"] if (out.parent / f".{out.name}.lock").exists() else [])


@dataclass
class Trial:
    trainer: str
    kill_at: int
    where: str
    """during a save, after start-up, or anywhere (start-up included)."""
    killed: bool
    differ: list[str]
    """The results that are not as the uninterrupted run's (all of them where the resumed run failed)."""
    leftovers: list[str]
    restarted: bool

    def line(self) -> str:
        outcome = "identical" if not self.differ else f"DIFFERENT: {', '.join(self.differ)}"
        extra = f", left {self.leftovers}" if self.leftovers else ""
        return (
            f"{self.trainer}: SIGKILL at line {self.kill_at} ({self.where}): killed={self.killed}, "
            f"{'started again' if self.restarted else 'resumed'}, {outcome}{extra}"
        )

    @property
    def during_save(self) -> bool:
        return self.where == "during a save"

    @property
    def ok(self) -> bool:
        return self.killed and not self.differ and not self.leftovers


def draw_instants(rng: np.random.Generator, ran: ChildResult, kills: int) -> list[tuple[int, str]]:
    """`kills` instants, in turn: inside a checkpoint save, in the run once its folder is set up (training,
    validation, the final writes), and anywhere (start-up included)."""
    saves = set(ran.save_lines)
    instants = []
    for index in range(kills):
        kind = ("during a save", "after start-up", "anywhere")[index % 3]
        if kind == "during a save":
            line = int(rng.choice(ran.save_lines))
        else:
            line = int(rng.integers(ran.started_at + 1 if kind == "after start-up" else 1, ran.lines + 1))
        instants.append((line, "during a save" if line in saves else kind))
    return instants


def inject(
    trainer: str,
    work_dir: Path,
    kills: int,
    seed: int,
    report: Callable[[str], None] = print,
    data: Path | None = None,
) -> list[Trial]:
    """The uninterrupted run, then `kills` killed-and-resumed runs of `trainer`; one Trial each.

    `data`: the trainer's input folder (made in `work_dir` when not given).
    """
    make_data, job, config_name = TRAINERS[trainer]
    data = data or make_data(work_dir / "data")
    reference = work_dir / "uninterrupted"
    ran = in_child(job(data, reference))
    if ran.status != 0:
        raise RuntimeError(f"the uninterrupted {trainer} run failed (exit {ran.status})")
    expected = results(trainer, reference)
    report(
        f"{trainer}: uninterrupted run: {ran.lines} lines of the toolkit, the run folder set up at line "
        f"{ran.started_at}, {len(ran.save_lines)} lines inside saves"
    )
    trials = []
    rng = np.random.default_rng([seed, len(trainer)])
    for index, (kill_at, where) in enumerate(draw_instants(rng, ran, kills)):
        out = work_dir / f"killed_{index}"
        killed = in_child(job(data, out), kill_at=kill_at).killed
        restarted = not (out / config_name).is_file()  # killed before the run folder was set up
        finished = in_child(job(data, out, resume=not restarted))
        found = results(trainer, out) if finished.status == 0 else {}
        differ = [name for name in expected if found.get(name) != expected[name]]
        trial = Trial(trainer, kill_at, where, killed, differ, leftovers(out), restarted)
        report(trial.line())
        trials.append(trial)
    return trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="Kill instants per trainer.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the instants.")
    parser.add_argument("--trainer", choices=("both", *TRAINERS), default="both")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    trials = []
    with tempfile.TemporaryDirectory(prefix="avvp-fault-") as work:
        for trainer in TRAINERS if args.trainer == "both" else (args.trainer,):
            trials += inject(trainer, Path(work) / trainer, args.kills, args.seed)
    good = sum(trial.ok for trial in trials)
    during = sum(trial.during_save for trial in trials)
    print(
        f"{good} of {len(trials)} killed runs ({during} killed during a save) resumed to results identical to the "
        f"uninterrupted run, nothing temporary left ({time.perf_counter() - start:.0f} s)"
    )
    return 0 if good == len(trials) else 1


if __name__ == "__main__":
    from avvp.console import run_app

    run_app(lambda: sys.exit(main()))
