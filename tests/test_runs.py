"""The run layer (avvp.runs): no unpickling on --resume, one writer per output, full disks, signals during saves."""

import errno
import json
import os
import pickle
import shutil
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from avvp.benchmarks.fault_injection import pretrain_data
from avvp.errors import AvvpError
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.train import train
from avvp.output import OutputLock
from avvp.runs import CHECKPOINTS, checkpoint_dirs, load_checkpoint, save_checkpoint


def one_line_error(result: tuple[int, str, str], *fragments) -> str:
    code, _, stderr = result
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    return lines[0]


def finetune_main():
    from avvp.finetune.cli import main

    main()


def pretrain_main():
    from accelerate.state import AcceleratorState

    from avvp.pretrain.cli import main

    try:
        main()
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def avvp_main():
    from avvp.commands.app import main

    main()


def groundtruth_main():
    from avvp.grounding.cli import main

    main()


def snapshot(path: Path) -> dict:
    """Every file under `path` (or `path` itself) with its bytes."""
    if path.is_file():
        return {path: path.read_bytes()}
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} if path.exists() else {}


@pytest.fixture(scope="module")
def stopped_run(tiny_llp, tmp_path_factory) -> Path:
    """A tiny finetuning run stopped after its first epoch: config.json and checkpoints/000001."""
    out = tmp_path_factory.mktemp("runs") / "stopped"
    cfg = FinetuneConfig.from_preset(
        "tiny", model="base", features=str(tiny_llp / "llp.h5"), annotations=str(tiny_llp), out=str(out)
    )
    train(cfg, stop_after_epoch=1, show_progress=False)
    return out


def copy_run(source: Path, target: Path, **ignore) -> Path:
    """A copy of a run folder that is a run of its own (its config.json names it as --out)."""
    shutil.copytree(source, target, **ignore)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "out": str(target)}, indent=2) + "\n")
    return target


def finetune_args(tiny_llp, out, *extra):
    return ["--model", "base", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--out", out,
            "--preset", "tiny", "--quiet", *extra]  # fmt: skip


class Planted:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- nothing in a run folder is unpickled ---


def test_a_pickle_planted_in_a_checkpoint_is_never_run(stopped_run, tiny_llp, tmp_path):
    run, marker = copy_run(stopped_run, tmp_path / "run"), tmp_path / "PWNED"
    (checkpoint,) = checkpoint_dirs(run)
    payload = pickle.dumps(Planted(marker))
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(payload)  # Accelerate's name; not ours, never read
    (checkpoint / "random_states_0.pkl").write_bytes(payload)
    (checkpoint / "optimizer.safetensors").write_bytes(payload)  # in place of a file that is read
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"]["optimizer.safetensors"] = len(payload)  # as if saved so: the parse itself must refuse it
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli(finetune_main, *finetune_args(tiny_llp, run, "--resume"))
    one_line_error(result, checkpoint / "optimizer.safetensors", "not a safetensors file", "--overwrite")
    assert not marker.exists()


def test_old_pickled_state_is_refused_by_name_with_how_to_restart(stopped_run, tiny_llp, tmp_path):
    marker = tmp_path / "PWNED"
    run = tmp_path / "finetune-run"
    shutil.copytree(stopped_run, run, ignore=shutil.ignore_patterns(CHECKPOINTS))
    (run / "state").mkdir()  # the layout of earlier versions: Accelerate's save_state
    (run / "state" / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Planted(marker)))
    result = run_cli(finetune_main, *finetune_args(tiny_llp, run, "--resume"))
    one_line_error(result, run / "state" / "custom_checkpoint_0.pkl", "pickled state", "--overwrite")

    data = pretrain_data(tmp_path / "data")
    out = tmp_path / "pretrain-run"
    (out / "checkpoints" / "step_5").mkdir(parents=True)
    (out / "pretrain_config.json").write_text("{}")
    (out / "checkpoints" / "step_5" / "random_states_0.pkl").write_bytes(pickle.dumps(Planted(marker)))
    args = ["--features", data / "pre.h5", "--labels", data / "avg.h5", "--out", out, "--preset", "tiny", "--resume"]
    one_line_error(run_cli(pretrain_main, *args), out / "checkpoints" / "step_5" / "random_states_0.pkl", "pickled")
    assert not marker.exists()


# --- one writer per output ---


def writer_commands(tiny_llp: Path, data: Path, tmp_path: Path) -> dict[str, tuple]:
    """Every command that writes a run or a corpus: (entry point, arguments given the output, output)."""
    features = tiny_llp / "llp.h5"
    return {
        "avvp-finetune": (finetune_main, lambda out: finetune_args(tiny_llp, out, "--overwrite"), "run"),
        "avvp-pretrain": (
            pretrain_main,
            lambda out: [
                "--features",
                data / "pre.h5",
                "--labels",
                data / "avg.h5",
                "--out",
                out,
                "--preset",
                "tiny",
                "--overwrite",
            ],  # fmt: skip
            "run",
        ),
        "avvp-pretrain export": (
            pretrain_main,
            lambda out: [
                "export",
                "--encoder",
                tmp_path / "encoder",
                "--features",
                features,
                "--out",
                out,
                "--overwrite",
            ],  # fmt: skip
            "file",
        ),
        "avvp data synth": (
            avvp_main,
            lambda out: ["data", "synth", "--out", out, "--preset", "tiny", "--overwrite"],
            "folder",
        ),
        "avvp data import-han": (
            avvp_main,
            lambda out: ["data", "import-han", tmp_path / "release", "--out", out, "--overwrite"],
            "file",
        ),
        "avvp-groundtruth build": (
            groundtruth_main,
            lambda out: ["build", "--features", features, "--out", out, "--overwrite", "--quiet"],
            "file",
        ),
    }


@pytest.mark.parametrize(
    "command",
    ["avvp-finetune", "avvp-pretrain", "avvp-pretrain export", "avvp data synth", "avvp data import-han",
     "avvp-groundtruth build"],
)  # fmt: skip
def test_a_second_writer_gets_one_line_naming_the_output_and_the_holder_and_changes_nothing(
    command, stopped_run, tiny_llp, tmp_path
):
    data = pretrain_data(tmp_path / "data") if command == "avvp-pretrain" else None
    main, args, kind = writer_commands(tiny_llp, data, tmp_path)[command]
    out = tmp_path / "out"
    if kind == "run":  # the output of an earlier command there, which the held one is replacing
        shutil.copytree(stopped_run, out)
        if command == "avvp-pretrain":
            (out / "pretrain_config.json").write_text("{}")
    elif kind == "folder":
        out.mkdir()
        (out / "llp.h5").write_bytes(b"the first command's corpus")
    else:
        out.write_bytes(b"the first command's output")
    before = snapshot(out)
    holder = OutputLock(out).acquire()  # the first command, still writing
    try:
        one_line_error(run_cli(main, *args(out)), out, f"another command (pid {os.getpid()}) is writing it")
    finally:
        holder.release()
    assert snapshot(out) == before
    assert not (tmp_path / ".out.lock").exists()


def test_a_folder_writer_waits_for_no_one_and_harms_no_one(tmp_path):
    """import-han (weights), import-release, export-han and pretrain init write through atomic_dir, which holds
    the lock: a second writer gets one line, the first's output is whole."""
    from avvp.io import atomic_dir

    out = tmp_path / "run"
    with atomic_dir(out) as staging:
        (staging / "config.json").write_text("first")
        with pytest.raises(AvvpError, match=f"{out}: another command \\(pid {os.getpid()}\\) is writing it"):
            with atomic_dir(out, overwrite=True) as second:
                (second / "config.json").write_text("second")
    assert (out / "config.json").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder, no lock file left


def test_two_synths_at_once_one_writes_the_other_is_refused(tmp_path, monkeypatch):
    import avvp.synth as synth
    from avvp.store import read_store

    out, started, finish = tmp_path / "corpus", threading.Event(), threading.Event()
    real_write_corpus = synth._write_corpus

    def held_write_corpus(*args, **kwargs):  # the first synth waits here until the second has been refused
        started.set()
        assert finish.wait(60)
        return real_write_corpus(*args, **kwargs)

    monkeypatch.setattr(synth, "_write_corpus", held_write_corpus)
    first = threading.Thread(target=synth.synthesize, args=(out,), kwargs=dict(preset="tiny"))
    first.start()
    assert started.wait(60)
    with pytest.raises(AvvpError, match=f"{out}: another command \\(pid {os.getpid()}\\) is writing it"):
        synth.synthesize(out, preset="tiny", overwrite=True)
    finish.set()
    first.join(120)
    assert len(read_store(out / "llp.h5", streams=("audio",)).video_ids) > 0
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".lock"))]


# --- full disks ---


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_nothing_staged(tiny_llp, tmp_path, monkeypatch):
    import safetensors.torch

    real_save = safetensors.torch.save_file
    calls = []

    def save_then_fill_the_disk(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 2:  # the first checkpoint, half written
            Path(filename).write_bytes(b"partial")
            no_space()
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_fill_the_disk)
    out = tmp_path / "run"
    one_line_error(run_cli(finetune_main, *finetune_args(tiny_llp, out)), out, "no space left on the device")
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".lock"))]
    assert checkpoint_dirs(out) == []


@pytest.mark.parametrize("where", ["store", "labels", "free space"])
def test_a_full_disk_while_writing_a_corpus_is_one_line_and_leaves_nothing(where, tiny_llp, tmp_path, monkeypatch):
    import avvp.avg_labels
    import avvp.output
    import avvp.store

    if where == "store":
        monkeypatch.setattr(avvp.store.StoreWriter, "append", no_space)
    elif where == "labels":
        monkeypatch.setattr(avvp.avg_labels.AvgLabelWriter, "append", no_space)
    else:
        monkeypatch.setattr(avvp.output, "free_space", lambda path: 10_000)
    out = tmp_path / "new" / ("avg.h5" if where == "labels" else "corpus")
    if where == "labels":
        result = run_cli(groundtruth_main, "build", "--features", tiny_llp / "llp.h5", "--out", out, "--quiet")
    else:
        result = run_cli(avvp_main, "data", "synth", "--out", out, "--preset", "tiny")
    message = "not enough free space: it needs about" if where == "free space" else "no space left on the device"
    one_line_error(result, out, message)
    assert list(tmp_path.iterdir()) == []  # not even the folders made for it


# --- a signal at each step of a save ---


class OneProcess:
    """What save_checkpoint and load_checkpoint use of an Accelerator, for one process."""

    is_main_process, process_index, num_processes, scaler, step = True, 0, 1, None, 0

    def wait_for_everyone(self):
        pass

    def unwrap_model(self, model):
        return model


def tiny_training(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


class Interrupt:
    """A trace function raising `error` at the n-th line run in avvp/runs.py (as a signal handler would)."""

    def __init__(self, at: int | None, error: BaseException):
        self.at, self.error, self.lines = at, error, 0

    def __call__(self, frame, event, arg):
        return self.local if frame.f_code.co_filename.endswith(os.path.join("avvp", "runs.py")) else None

    def local(self, frame, event, arg):
        if event == "line":
            self.lines += 1
            if self.lines == self.at:
                raise self.error
        return self.local


def test_a_signal_at_each_line_of_a_save_leaves_no_temporary_folder_and_a_resumable_run(tmp_path):
    accelerator, (model, optimizer, scheduler) = OneProcess(), tiny_training()
    first = tmp_path / "first"
    save_checkpoint(first, accelerator, model, optimizer, scheduler, {"saved": 1}, {"best": model.state_dict()})
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    counter = Interrupt(None, KeyboardInterrupt())
    probe = tmp_path / "probe"
    shutil.copytree(first, probe)
    sys.settrace(counter)
    try:
        save_checkpoint(probe, accelerator, model, optimizer, scheduler, {"saved": 2}, {"best": model.state_dict()})
    finally:
        sys.settrace(None)
    assert counter.lines > 50
    outcomes = set()
    for line in range(1, counter.lines + 1):
        out = tmp_path / f"at_{line}"
        shutil.copytree(first, out)
        error = KeyboardInterrupt() if line % 2 else SystemExit(143)  # Ctrl-C, or SIGTERM through run_app
        sys.settrace(Interrupt(line, error))
        try:
            save_checkpoint(out, accelerator, model, optimizer, scheduler, {"saved": 2}, {"best": model.state_dict()})
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            sys.settrace(None)
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], line
        fresh_model, fresh_optimizer, fresh_scheduler = tiny_training(seed=1)
        checkpoint = load_checkpoint(out, accelerator, fresh_model, fresh_optimizer, fresh_scheduler)
        outcomes.add(checkpoint.progress["saved"])
        shutil.rmtree(out)
    assert outcomes == {1, 2}  # interrupted before the rename: the previous checkpoint; after it: the new one


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_with_a_note(tmp_path, capsys):
    accelerator, (model, optimizer, scheduler) = OneProcess(), tiny_training()
    save_checkpoint(tmp_path, accelerator, model, optimizer, scheduler, {"saved": 1})
    newest = save_checkpoint(tmp_path, accelerator, model, optimizer, scheduler, {"saved": 2})
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])  # cut short
    capsys.readouterr()
    checkpoint = load_checkpoint(tmp_path, accelerator, *tiny_training(seed=1))
    assert checkpoint.progress == {"saved": 1}
    note = capsys.readouterr().err
    assert note.startswith(f"note: {weights}: missing or not of the size saved; resuming from") and "000001" in note
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["000001"]  # the damaged one is gone
    restored = tiny_training(seed=1)[0]
    load_checkpoint(tmp_path, accelerator, restored, *tiny_training(seed=1)[1:])
    saved = model.state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in restored.state_dict().items())


def _rewrite_json(checkpoint: Path, name: str, change) -> None:
    """Change one JSON file of a checkpoint and record its new size in the manifest (a damage that passes the
    size check, as a hand edit or a hostile file would)."""
    import json

    data = json.loads((checkpoint / name).read_text())
    change(data)
    (checkpoint / name).write_text(json.dumps(data))
    if name != "manifest.json":
        manifest = json.loads((checkpoint / "manifest.json").read_text())
        manifest["files"][name] = (checkpoint / name).stat().st_size
        (checkpoint / "manifest.json").write_text(json.dumps(manifest))


def _files_a_list(m):
    m["files"] = list(m["files"])


def _file_outside(m):
    m["files"]["../../x.safetensors"] = 8


DAMAGES = {
    "manifest files a list": ("manifest.json", _files_a_list, "'files' is not an object"),
    "manifest entry ../../x": ("manifest.json", _file_outside, "not a file name inside the checkpoint"),
    "bad RNG entry": ("rng_0.json", lambda d: d.update(python=[3, "x", None]), "RNG state not as saved"),
    "epoch two": ("progress.json", lambda d: d["progress"].update(saved="two"), "progress.saved is string"),
    "bad scheduler entry": ("scheduler.json", lambda d: d.update(last_epoch="x"), "scheduler.last_epoch"),
    "tensor path ../../x": ("progress.json", lambda d: d.update(tensors=["../../x"]), "'../../x' is not a file name"),
    "optimizer groups": ("optimizer.json", lambda d: d.update(param_groups={}), "param_groups differ"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_any_damaged_manifest_entry_or_state_falls_back_to_the_previous_checkpoint(tmp_path, capsys, damage):
    name, change, fragment = DAMAGES[damage]
    accelerator, (model, optimizer, scheduler) = OneProcess(), tiny_training()
    save_checkpoint(tmp_path, accelerator, model, optimizer, scheduler, {"saved": 1})
    newest = save_checkpoint(tmp_path, accelerator, model, optimizer, scheduler, {"saved": 2})
    (tmp_path.parent / "x.safetensors").write_bytes(b"12345678")  # where ../../x would lead
    _rewrite_json(newest, name, change)
    capsys.readouterr()
    checkpoint = load_checkpoint(tmp_path, accelerator, *tiny_training(seed=1), progress_like={"saved": 0})
    assert checkpoint.progress == {"saved": 1}
    note = capsys.readouterr().err
    assert note.startswith(f"note: {newest}") and fragment in note and "resuming from" in note, note
    assert len(note.strip().splitlines()) == 1


def test_a_damaged_only_checkpoint_is_one_line(tmp_path):
    accelerator, (model, optimizer, scheduler) = OneProcess(), tiny_training()
    newest = save_checkpoint(tmp_path, accelerator, model, optimizer, scheduler, {"saved": 1})
    _rewrite_json(newest, "progress.json", lambda d: d["progress"].update(saved="two"))
    with pytest.raises(AvvpError, match="progress.saved is string.*damaged saved state"):
        load_checkpoint(tmp_path, accelerator, *tiny_training(seed=1), progress_like={"saved": 0})


# --- Ctrl-C at any point ---

SIGINT_DURING_IMPORT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if the runner ignores SIGINT
module = sys.argv.pop(1)
class Interrupt:  # Ctrl-C the moment `module` is first imported
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, Interrupt())
sys.argv[0] = "avvp-finetune"
from avvp.commands.entry import finetune
finetune()
"""


@pytest.mark.parametrize("module", ["typer", "rich", "numpy"])
def test_ctrl_c_during_start_up_or_the_command_is_no_traceback(module, tmp_path):
    """typer and rich are imported as the command line starts (before any handler of its own), numpy once the
    command runs."""
    import subprocess

    args = ["--model", "base", "--features", tmp_path / "x.h5", "--annotations", tmp_path, "--out", tmp_path / "r"]
    command = [sys.executable, "-c", SIGINT_DURING_IMPORT, module, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    if module != "numpy":
        assert result.stderr == "interrupted\n"
    assert not (tmp_path / "r").exists()


def test_run_flags_are_one_set_for_both_trainers(tmp_path):
    """--resume and --overwrite exclude each other in both commands, before any work; a pretrain_config.json written
    while the run flags were PretrainConfig fields still loads (they are read and ignored)."""
    from dataclasses import asdict

    from avvp.pretrain.config import PretrainConfig

    for main, inputs in (
        (finetune_main, ["--annotations", tmp_path]),
        (pretrain_main, ["--labels", tmp_path / "l"]),
    ):
        args = ["--features", tmp_path / "f.h5", *inputs, "--out", tmp_path / "run", "--resume", "--overwrite"]
        one_line_error(run_cli(main, *args), "--resume and --overwrite exclude each other")
    assert not (tmp_path / "run").exists()
    saved = tmp_path / "pretrain_config.json"
    saved.write_text(
        json.dumps({**asdict(PretrainConfig()), "resume": False, "overwrite": True, "keep_checkpoints": False})
    )
    assert PretrainConfig.load(saved) == PretrainConfig()
    saved.write_text(json.dumps({**asdict(PretrainConfig()), "resumes": False}))
    with pytest.raises(AvvpError, match="unknown fields resumes"):
        PretrainConfig.load(saved)


class OtherProcess:
    """`PartialState` as a non-main process of a two-process run sees it."""

    num_processes, process_index, is_main_process = 2, 1, False


def test_only_the_main_process_checks_a_run_folder_the_others_take_its_answer(tmp_path, monkeypatch):
    """The race of a two-process launch: the main process checked the new run folder and `start`ed it (its config
    written) before the other looked, which then refused it as an existing run. The other must not look; it takes
    what the main process found, or its error, with the same class and line."""
    import accelerate.utils

    from avvp import runs
    from avvp.errors import ConfigError
    from avvp.runs import RunChecks, RunFlags, open_run

    out = tmp_path / "run"
    out.mkdir()
    (out / "pretrain_config.json").write_text("{}")  # what the main process has just written
    sent, answers = [], iter([])

    def broadcast(objects):  # what this process sends, and what the main process sent
        sent.append(objects[0])
        return [next(answers)]

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", broadcast)
    monkeypatch.setattr(runs, "process_state", OtherProcess)
    answers = iter([(None, None, None), ((out, False), None, None)])  # the lock taken; the folder checked
    with open_run(out, "pretrain_config.json", RunFlags(), RunChecks()) as opened:
        assert opened.out == out and not opened.finished
    assert sent == [(None, None, None)] * 2  # this process decided nothing itself
    assert (out / "pretrain_config.json").read_text() == "{}"

    answers = iter([(None, None, None), (None, "ConfigError", f"{out}: a bad setting")])
    with pytest.raises(ConfigError, match="a bad setting"), open_run(out, "x.json", RunFlags(), RunChecks()):
        pass
