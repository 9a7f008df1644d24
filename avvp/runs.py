"""The run layer: configs, checkpoints and RNG states of the trainers' run folders.

Writing (locks, staging, `--overwrite`, full disks) is the output layer's, `avvp.output`; its names that
callers imported from here before it existed are re-exported.

- **Checkpoints that never unpickle.** `save_checkpoint` writes the model, the optimizer (tensors plus JSON),
  the scheduler (JSON), each process's RNG states and the loop's own progress (JSON) into a temporary folder,
  fsyncs it and renames it to `RUN/checkpoints/NNNNNN`; the newest two are kept, so a kill at any instant
  leaves the previous checkpoint or the new one. `load_checkpoint` restores the newest that reads and checks
  (every manifest entry, the RNG, scheduler and loop state; any failure falls back to the one before, with a
  note); a run folder holding Accelerate's pickled state is refused.
- **Run folders.** `open_run`, the one way both trainers open theirs: the lock, `check_run_dir` (resume /
  overwrite / inputs inside the run, `RunChecks`), then `OpenRun.start` (a fresh folder, `start_run_dir`) or
  `OpenRun.restore` (the newest checkpoint, or a note that there is none yet) and `OpenRun.close` (the
  checkpoints of a finished run go). `RunFlags` holds `--resume`, `--overwrite` and `--keep-checkpoints` for both
  commands; `resume_differences` (the settings a resume must repeat) and `load_config` (a dataclass from JSON,
  checked field by field).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avvp.errors import AvvpError, ConfigError
from avvp.inputs import check_input_file
from avvp.output import (  # noqa: F401  (output_lock, hold_output, check_free_space, staging_dir: re-exported)
    check_free_space,
    check_writable,
    hold_output,
    main_decides,
    output_lock,
    staging_dir,
    writing,
)

if typing.TYPE_CHECKING:
    import torch
# torch and safetensors are imported where checkpoints are handled: the corpus writers lock without them.

CHECKPOINTS = "checkpoints"
"""Folder of a run holding its checkpoints, one folder each, named by a six-digit sequence number."""
FINISHED_MARK = "metrics.json"
"""Written by both trainers only once the last epoch is done: with no checkpoint beside it, a finished, pruned run."""
KEEP_CHECKPOINTS = 2
FORMAT = "avvp-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
"""Written last into a checkpoint: the format, the processes that saved it and every file with its size."""
MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS, OPTIMIZER_JSON = "optimizer.safetensors", "optimizer.json"
SCHEDULER_JSON = "scheduler.json"
PROGRESS_JSON = "progress.json"
PICKLED_SUFFIXES = (".pkl", ".bin", ".pt", ".pth")
"""Files of Accelerate's `save_state` (and torch.save) layouts: never read, since unpickling runs code."""


def process_state():
    """Accelerate's `PartialState` as the run's `Accelerator` will see it (ACCELERATE_USE_CPU: the CPU processes
    of `accelerate launch --multi_gpu`), available before the Accelerator is made."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


# --- run folders ---


def _entries(folder: Path) -> list[Path]:
    """What a folder holds, apart from the temporary files and folders (`.*.tmp`) a killed writer leaves."""
    return [p for p in folder.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))]


@dataclasses.dataclass(frozen=True)
class RunChecks:
    """What a trainer's run folder is checked against besides the run flags (`check_run_dir`)."""

    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    """Option name -> path of each input of the run: the run folder may not hold one."""
    settings: dict | None = None
    """This command's settings, which --resume must repeat (read back with `load_saved`)."""
    load_saved: typing.Callable[[Path], dict] | None = None
    """Reads the settings saved in the run's config file."""
    path_fields: tuple[str, ...] = ()
    """Settings naming files: compared as resolved paths."""
    ignore: tuple[str, ...] = ()
    """Settings the run fills in itself: not compared."""


def check_run_dir(out: str | os.PathLike, config_name: str, flags: RunFlags, checks: RunChecks = RunChecks()) -> Path:
    """Check a run folder against --resume / --overwrite before any work; creates nothing.

    A new run needs an absent or empty `out` (or --overwrite, which replaces only a run: a folder holding
    `config_name`); --resume needs `config_name` and a checkpoint layout it can read, and (given the `checks`'
    settings and `load_saved`) the saved settings (`check_resume`); `out` may not hold an input.
    """
    if not out:
        raise ConfigError("no run directory given (--out)")
    out = Path(out)
    check_writable(out, overwrite=True, directory=True)  # a file on the way to it; existing runs below
    if flags.resume:
        if not (out / config_name).is_file():
            raise AvvpError(f"{out}: nothing to resume (no {config_name}); start the run without --resume")
        refuse_pickled_state(out)
        if checks.settings is not None and checks.load_saved is not None:
            saved = checks.load_saved(out / config_name)
            check_resume(out / config_name, saved, checks.settings, checks.path_fields, checks.ignore)
    elif out.exists() and (not out.is_dir() or _entries(out)):
        if not flags.overwrite:
            raise AvvpError(f"{out}: already exists; pass --overwrite to replace it or --resume to continue it")
        if not out.is_dir():
            raise AvvpError(f"{out}: exists and is not a directory")
        if not (out / config_name).is_file():
            raise AvvpError(f"{out}: not a run (no {config_name}); --overwrite will not delete it")
    for name, source in checks.inputs.items():
        if source and (Path(source).resolve() == out.resolve() or out.resolve() in Path(source).resolve().parents):
            raise AvvpError(f"{out}: holds the input --{name} {source}; choose another run directory")
    return out


def start_run_dir(out: Path, config_name: str, config: dict) -> None:
    """A fresh run folder holding only `config_name` (an earlier run there, checked by `check_run_dir`, goes);
    where even that cannot be written (a full disk), no folder is left."""
    with writing(out):
        if out.is_dir():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        try:
            write_json(out / config_name, config)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise


@dataclasses.dataclass(frozen=True)
class RunFlags:
    """How a trainer's command treats its run folder, the same for both stages: not settings of the run (never
    saved in its config). Both commands' options `--resume`, `--overwrite` and `--keep-checkpoints`."""

    resume: bool = False
    """Continue the interrupted run in --out from its newest checkpoint (with the settings it was started with)."""
    overwrite: bool = False
    """Replace the run in --out."""
    keep_checkpoints: bool = False
    """Keep RUN/checkpoints/ once the run has finished (by default they go: only --resume reads them; a pretraining
    run of the release recipe keeps its last, for the end-to-end phase that continues its optimizer state)."""

    def __post_init__(self):
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")

    @classmethod
    def pop_from(cls, settings: dict) -> RunFlags:
        """The flags among a command's option values (`avvp.config_cli.config_command`), removed from `settings`."""
        return cls(**{f.name: settings.pop(f.name) for f in dataclasses.fields(cls) if f.name in settings})


@dataclasses.dataclass
class OpenRun:
    """A run folder checked against the run flags and held by this command (`open_run`)."""

    out: Path
    config_name: str
    """The run's config file: written first into a fresh folder, it marks the folder as a run."""
    flags: RunFlags
    finished: bool = False
    """--resume of a run that finished and pruned its checkpoints: there is nothing to do."""

    def start(self, accelerator, config: dict) -> None:
        """A new run: the folder holding only its config (an earlier run there, replaced by --overwrite, goes only
        now). Nothing under --resume. Every process waits for the main one."""
        if accelerator.is_main_process and not self.flags.resume:
            start_run_dir(self.out, self.config_name, config)
        accelerator.wait_for_everyone()

    def restore(
        self, accelerator, model, optimizer, scheduler, progress_like: dict | None, first: str
    ) -> Checkpoint | None:
        """Under --resume, the newest readable checkpoint restored into the prepared objects (`load_checkpoint`);
        None when not resuming, or (with a note saying the run starts from its `first` epoch or step) when the run
        saved none yet."""
        if not self.flags.resume:
            return None
        checkpoint = load_checkpoint(self.out, accelerator, model, optimizer, scheduler, progress_like)
        if checkpoint is None and accelerator.is_main_process:
            print(f"note: {self.out}: no checkpoint yet; starting the run from its first {first}", file=sys.stderr)
        return checkpoint

    def close(self, accelerator, keep_last: bool = False) -> None:
        """A finished run: its checkpoints go (`prune_checkpoints`; all but the newest with `keep_last`), unless
        --keep-checkpoints. Main process only."""
        if accelerator.is_main_process and not self.flags.keep_checkpoints:
            with writing(self.out):
                prune_checkpoints(self.out, keep_last=keep_last)


@contextlib.contextmanager
def open_run(out: str | os.PathLike, config_name: str, flags: RunFlags, checks: RunChecks) -> Iterator[OpenRun]:
    """Open a trainer's run folder for the command's life: one writer (`hold_output`, every process), the folder
    checked before any work (`check_run_dir`), a note where --resume finds a finished run (`OpenRun.finished`).
    The run then `start`s or `restore`s, and `close`s once finished."""
    if not out:
        raise ConfigError("no run directory given (--out)")
    state = process_state()

    def check() -> tuple[Path, bool]:
        folder = check_run_dir(out, config_name, flags, checks)
        return folder, flags.resume and finished_and_pruned(folder)

    with hold_output(out, state):
        # checked by the main process alone: another could otherwise look only after `start` made the new run
        folder, finished = main_decides(state, check)
        if finished and state.is_main_process:
            print(
                f"note: {folder}: finished already (checkpoints removed at its end); nothing to resume", file=sys.stderr
            )
        yield OpenRun(folder, config_name, flags, finished=finished)


def resume_differences(
    saved: dict, wanted: dict, path_fields: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
) -> list[str]:
    """`name value (saved value)` for every setting of `wanted` that --resume would change; paths compared resolved."""
    changed = []
    for name, value in wanted.items():
        if name in ignore:
            continue
        old = saved.get(name)
        if name in path_fields and value and old and Path(value).resolve() == Path(old).resolve():
            continue
        if value != old:
            changed.append(f"--{name.replace('_', '-')} {value!r} (saved {old!r})")
    return changed


def check_resume(config_path: Path, saved: dict, wanted: dict, path_fields=(), ignore=()) -> None:
    """One line naming every changed setting, unless --resume repeats the saved ones."""
    changed = resume_differences(saved, wanted, path_fields, ignore)
    if changed:
        raise ConfigError(f"{config_path}: --resume needs the saved settings; changed: {', '.join(changed)}")


T = typing.TypeVar("T")


def load_config(
    cls: type[T],
    path: str | os.PathLike,
    what: str,
    renamed: dict[str, str] | None = None,
    dropped: tuple[str, ...] = (),
) -> T:
    """A config dataclass from its JSON file; a missing or malformed file, unknown fields and values of the
    wrong type are one-line ConfigErrors naming the file (`what`: e.g. "the config.json of a finetuning run").

    `renamed` maps a field's old name to its name now: a file written before the rename loads (an error names
    the field as the file does). `dropped`: fields of older files that are no settings any more, ignored.
    """
    renamed = renamed or {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; expected {what}")
    check_input_file(path, what, ConfigError)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deep)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object: {what}")
    data = {name: value for name, value in data.items() if name not in dropped}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(name for name in data if renamed.get(name, name) not in known)
    if unknown:
        raise ConfigError(f"{path}: unknown fields {', '.join(unknown)}; expected {what}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        hint = hints[renamed.get(name, name)]
        if not _has_type(value, hint):
            raise ConfigError(f"{path}: {name} is {value!r}; expected {_type_name(hint)}")
    try:
        return cls(**{renamed.get(name, name): value for name, value in data.items()})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _type_name(annotation) -> str:
    plain = isinstance(annotation, type) and not typing.get_args(annotation)
    return annotation.__name__ if plain else str(annotation)


def _has_type(value, annotation) -> bool:
    """Whether a JSON value fits a field's type (bool, int, float, str, None, and lists/dicts/unions of them)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is dict or annotation is dict:
        return isinstance(value, dict) and (not args or all(_has_type(v, args[1]) for v in value.values()))
    if origin in (list, tuple) or annotation in (list, tuple):
        return isinstance(value, list) and (not args or all(_has_type(v, args[0]) for v in value))
    return True  # a type JSON cannot check here: the dataclass's own checks decide


# --- JSON and tensors ---


def write_json(path: Path, data, allow_nan: bool = True) -> None:
    """Write JSON atomically (a temporary file, fsynced, renamed)."""
    from avvp.output import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, allow_nan=allow_nan) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(path, "missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(path, f"not valid JSON ({error})") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(path, "missing") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f"not a safetensors file ({_one_line(error)})") from None


def _one_line(error: BaseException, limit: int = 160) -> str:
    return " ".join(str(error).split())[:limit]


def _cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in state.items()}


def optimizer_pieces(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's `state_dict()` as tensors ("state.PARAM.NAME") plus JSON (param groups, plain values)."""
    import torch

    tensors, state = {}, {}
    for param, entries in state_dict["state"].items():
        plain = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{param}.{name}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                plain[name] = value
        state[str(param)] = plain
    return tensors, {"param_groups": state_dict["param_groups"], "state": state}


def optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of `optimizer_pieces`."""
    state: dict[int, dict] = {int(param): dict(plain) for param, plain in meta["state"].items()}
    for key, tensor in tensors.items():
        _, param, name = key.split(".", 2)
        state.setdefault(int(param), {})[name] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_pieces() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's RNG states: torch (CPU and every CUDA device) as tensors, Python's and NumPy's as JSON."""
    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
    }
    return tensors, plain


def restore_rng(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    import torch

    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(name.startswith("cuda.") for name in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))


# --- checkpoints ---


class CheckpointError(Exception):
    """A checkpoint file that cannot be read as saved."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path


def checkpoint_dirs(out: Path) -> list[Path]:
    """The run's checkpoints, newest first (only six-digit names: other folders there are not ours)."""
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and len(p.name) == 6 and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name), reverse=True)


def refuse_pickled_state(out: Path) -> None:
    """Refuse a run folder saved as Accelerate's pickled state (`state/`, `checkpoints/step_N/`) by name."""
    old = [out / "state"] if (out / "state").is_dir() else []
    if (out / CHECKPOINTS).is_dir():
        old += sorted(p for p in (out / CHECKPOINTS).glob("step_*") if p.is_dir() and p.name[5:].isdigit())
    for folder in old:
        pickled = sorted(p for p in folder.rglob("*") if p.suffix in PICKLED_SUFFIXES)
        raise AvvpError(
            f"{pickled[0] if pickled else folder}: pickled state saved by an earlier version of avvp, which "
            "--resume does not read (unpickling can run code); start the run again with --overwrite"
        )


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_rank_rng(tmp: Path, rank: int) -> None:
    from safetensors.torch import save_file

    tensors, plain = rng_pieces()
    save_file(tensors, str(tmp / f"rng_{rank}.safetensors"))
    (tmp / f"rng_{rank}.json").write_text(json.dumps(plain) + "\n", encoding="utf-8")
    for name in (f"rng_{rank}.safetensors", f"rng_{rank}.json"):
        _fsync_path(tmp / name)


def _write_main_pieces(tmp: Path, accelerator, model, optimizer, scheduler, progress: dict, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file(_cpu_tensors(accelerator.unwrap_model(model).state_dict()), str(tmp / MODEL_FILE))
    optimizer_tensors, optimizer_meta = optimizer_pieces(optimizer.state_dict())
    save_file(optimizer_tensors, str(tmp / OPTIMIZER_TENSORS))
    (tmp / OPTIMIZER_JSON).write_text(json.dumps(optimizer_meta) + "\n", encoding="utf-8")
    (tmp / SCHEDULER_JSON).write_text(json.dumps(scheduler.state_dict()) + "\n", encoding="utf-8")
    for name, group in tensors.items():
        save_file(_cpu_tensors(group), str(tmp / f"{name}.safetensors"))
    scaler = accelerator.scaler.state_dict() if getattr(accelerator, "scaler", None) is not None else None
    loop = {"progress": progress, "accelerator_step": accelerator.step, "scaler": scaler, "tensors": sorted(tensors)}
    (tmp / PROGRESS_JSON).write_text(json.dumps(loop) + "\n", encoding="utf-8")


def _publish(tmp: Path, final: Path, processes: int) -> None:
    """Manifest last, everything fsynced, then one rename: `final` appears complete or not at all."""
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "processes": processes, "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for name in (*files, MANIFEST):
        _fsync_path(tmp / name)
    _fsync_path(tmp)
    os.rename(tmp, final)
    _fsync_path(final.parent)


def save_checkpoint(
    out: Path,
    accelerator,
    model,
    optimizer,
    scheduler,
    progress: dict,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Save a resumable checkpoint: RUN/checkpoints/NNNNNN, the next number; the newest KEEP_CHECKPOINTS stay.

    `progress`: the loop's own state (JSON); `tensors`: named groups of tensors saved beside it (e.g. the best
    weights so far). Every process writes its RNG states; the main process the rest. The folder is written
    under a temporary name and renamed once complete and fsynced; on any exception or signal it is removed.
    """
    folder = out / CHECKPOINTS
    main = accelerator.is_main_process

    def next_number() -> int:
        existing = checkpoint_dirs(out)
        return int(existing[0].name) + 1 if existing else 1

    number = main_decides(accelerator, next_number)  # every process writes into the folder the main one names
    final = folder / f"{number:06d}"
    tmp = folder / f".{number:06d}.tmp"
    try:
        with writing(out):
            if main:
                remove_staging(out)
                tmp.mkdir(parents=True)
            accelerator.wait_for_everyone()
            _write_rank_rng(tmp, accelerator.process_index)
            if main:
                _write_main_pieces(tmp, accelerator, model, optimizer, scheduler, progress, tensors or {})
            accelerator.wait_for_everyone()
            if main:
                _publish(tmp, final, accelerator.num_processes)
                for old in checkpoint_dirs(out)[KEEP_CHECKPOINTS:]:
                    shutil.rmtree(old)
    finally:
        if main and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def finished_and_pruned(out: Path) -> bool:
    """Whether `out` is a finished run whose checkpoints went at its end: --resume has nothing left to do."""
    return (out / FINISHED_MARK).is_file() and not checkpoint_dirs(out)


def prune_checkpoints(out: Path, keep_last: bool = False) -> None:
    """Remove a finished run's checkpoints: evaluate, parse and export read only its final files, and --resume
    needs them only while a run is unfinished (each is as large as the model and its optimizer state).
    `keep_last`: all but the newest (whose optimizer state a later stage continues)."""
    if not keep_last:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        return
    for older in checkpoint_dirs(out)[1:]:
        shutil.rmtree(older, ignore_errors=True)


def remove_staging(out: Path) -> None:
    """Remove temporary checkpoint folders a killed process left (a signal removes its own on the way out)."""
    folder = out / CHECKPOINTS
    if folder.is_dir():
        for leftover in folder.glob(".*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint read into memory and checked, before any of it is applied."""

    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    rng: tuple[dict[str, torch.Tensor], dict]
    loop: dict
    tensors: dict[str, dict[str, torch.Tensor]]

    @property
    def progress(self) -> dict:
        return self.loop["progress"]


def _plain_name(path: Path, name: object, what: str) -> str:
    """A file name a manifest or loop state lists: a plain name inside the checkpoint folder."""
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise CheckpointError(path, f"{what} {name!r} is not a file name inside the checkpoint")
    return name


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    return {str: "string", dict: "object"}.get(type(value), "other")


def check_like(path: Path, saved, live, where: str) -> None:
    """Refuse saved JSON state whose structure differs from the live object's: the same keys of an object, the
    same kind of each value (numbers alike; a live null or empty object takes anything), list items like the
    live first one."""
    if live is None or _kind(live) == "other":  # a live value JSON cannot hold: the object's own load decides
        return
    if _kind(saved) != _kind(live):
        raise CheckpointError(path, f"{where} is {_kind(saved)} {str(saved)[:40]!r}; expected a {_kind(live)}")
    if isinstance(live, dict) and live:  # an empty one is a structure not known here: anything goes
        if set(saved) != set(live):
            differ = sorted(map(str, set(saved) ^ set(live)))
            raise CheckpointError(path, f"{where} has other entries than this run's ({', '.join(differ[:3])})")
        for key, value in live.items():
            check_like(path, saved[key], value, f"{where}.{key}")
    elif isinstance(live, list) and live:
        for index, item in enumerate(saved):
            check_like(path, item, live[0], f"{where}[{index}]")


def check_rng(path: Path, tensors: dict, plain: object) -> None:
    """Try the saved RNG states on throwaway generators: a state they refuse would fail the resume."""
    import torch

    try:
        torch.Generator().set_state(tensors["torch"])
        version, internal, gauss = plain["python"]
        random.Random().setstate((version, tuple(internal), gauss))
        kind, keys, position, has_gauss, cached = plain["numpy"]
        np.random.RandomState().set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as error:
        raise CheckpointError(path, f"RNG state not as saved ({_one_line(error)})") from None


def check_optimizer(path: Path, saved: dict, live: dict) -> None:
    """The saved optimizer state (`optimizer_state_dict`) has this run's parameter groups and parameters."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != len(live["param_groups"]):
        raise CheckpointError(path, "optimizer param_groups differ from this run's")
    for index, (group, mine) in enumerate(zip(groups, live["param_groups"], strict=True)):
        check_like(path, group, {**mine, "params": None}, f"param_groups[{index}]")
        if not isinstance(group["params"], list) or len(group["params"]) != len(mine["params"]):
            raise CheckpointError(path, f"param_groups[{index}] holds other parameters than this run's")
    known = {param for group in live["param_groups"] for param in group["params"]}
    for param, entries in saved.get("state", {}).items():
        if param not in known or not isinstance(entries, dict):
            raise CheckpointError(path, f"optimizer state of parameter {param!r} does not fit this run")


def read_checkpoint(
    path: Path, rank: int, model_state: dict[str, torch.Tensor], live: dict | None = None
) -> Checkpoint:
    """Read and check one checkpoint; a CheckpointError names the first file that is not as saved.

    Every manifest entry is checked (a plain file name inside the folder, its size); with `live` (the run's
    own `optimizer`, `scheduler` and `progress` state), the saved state must have the same structure, and the
    RNG states must be accepted by throwaway generators, so that restoring cannot fail half-way.
    """
    manifest = _read_json(path / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(path / MANIFEST, f"not an {FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(path / MANIFEST, "'files' is not an object of file names and sizes")
    for name, size in files.items():
        _plain_name(path / MANIFEST, name, "file")
        if not isinstance(size, int) or isinstance(size, bool):
            raise CheckpointError(path / MANIFEST, f"size of {name!r} is {size!r}; expected a number of bytes")
        if not (path / name).is_file() or (path / name).is_symlink() or (path / name).stat().st_size != size:
            raise CheckpointError(path / name, "missing or not of the size saved")
    model = _read_tensors(path / MODEL_FILE)
    expected = {name: tuple(tensor.shape) for name, tensor in model_state.items()}
    found = {name: tuple(tensor.shape) for name, tensor in model.items()}
    if found != expected:
        differ = sorted(set(found) ^ set(expected)) or [n for n in expected if found[n] != expected[n]]
        raise CheckpointError(path / MODEL_FILE, f"weights do not fit the model ({', '.join(differ[:3])})")
    try:
        optimizer = optimizer_state_dict(_read_tensors(path / OPTIMIZER_TENSORS), _read_json(path / OPTIMIZER_JSON))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(path / OPTIMIZER_JSON, f"optimizer state not as saved ({_one_line(error)})") from None
    loop = _read_json(path / PROGRESS_JSON)
    check_like(path / PROGRESS_JSON, loop, {"progress": {}, "accelerator_step": 0, "scaler": None, "tensors": []}, "")
    if not isinstance(loop["progress"], dict):
        raise CheckpointError(path / PROGRESS_JSON, "'progress' is not an object")
    names = [_plain_name(path / PROGRESS_JSON, name, "tensors entry") for name in loop["tensors"]]
    tensors = {name: _read_tensors(path / f"{name}.safetensors") for name in names}
    rng = (_read_tensors(path / f"rng_{rank}.safetensors"), _read_json(path / f"rng_{rank}.json"))
    scheduler = _read_json(path / SCHEDULER_JSON)
    check_rng(path / f"rng_{rank}.json", *rng)
    if live is not None:
        check_optimizer(path / OPTIMIZER_JSON, optimizer, live["optimizer"])
        check_like(path / SCHEDULER_JSON, scheduler, live["scheduler"], "scheduler")
        if live.get("progress") is not None:
            check_like(path / PROGRESS_JSON, loop["progress"], live["progress"], "progress")
    return Checkpoint(path, model, optimizer, scheduler, rng, loop, tensors)


def load_checkpoint(
    out: Path, accelerator, model, optimizer, scheduler, progress_like: dict | None = None
) -> Checkpoint | None:
    """Restore the newest readable checkpoint into the (prepared) objects; None where the run has none yet.

    A newest checkpoint that fails to read or check (`read_checkpoint`; `progress_like`: the loop's progress as
    a fresh run has it, whose structure the saved one must have) falls back to the one before it, with a note on
    stderr; when none can be read, a one-line AvvpError names the file of the newest. Every process reads the
    checkpoint the main one chose.
    """
    refuse_pickled_state(out)
    if accelerator.is_main_process:
        remove_staging(out)
    model_state = accelerator.unwrap_model(model).state_dict()
    live = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "progress": progress_like}
    chosen, first_error = None, None
    if accelerator.is_main_process:
        found = checkpoint_dirs(out)
        for index, path in enumerate(found):
            try:
                for rank in range(accelerator.num_processes):
                    read_checkpoint(path, rank, model_state, live)
            except (CheckpointError, KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
                first_error = first_error or error
                if index + 1 < len(found):
                    print(f"note: {_one_line(error, 300)}; resuming from {found[index + 1]} instead", file=sys.stderr)
                continue
            chosen = path.name
            break
        for damaged in checkpoint_dirs(out):
            if chosen is not None and int(damaged.name) > int(chosen):
                shutil.rmtree(damaged)  # else it would outlive the good one as the next saves are pruned
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        chosen, first_error = broadcast_object_list([chosen, None if first_error is None else str(first_error)])
    if chosen is None:
        if first_error is None:
            return None
        raise AvvpError(f"{first_error}: damaged saved state; start the run again with --overwrite")
    checkpoint = read_checkpoint(out / CHECKPOINTS / chosen, accelerator.process_index, model_state)
    accelerator.unwrap_model(model).load_state_dict(checkpoint.model)
    try:
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
    except (KeyError, TypeError, ValueError) as error:
        raise AvvpError(f"{checkpoint.path}: saved state does not fit this run ({_one_line(error)})") from None
    if checkpoint.loop.get("scaler") is not None and getattr(accelerator, "scaler", None) is not None:
        accelerator.scaler.load_state_dict(checkpoint.loop["scaler"])
    accelerator.step = checkpoint.loop["accelerator_step"]
    restore_rng(*checkpoint.rng)
    return checkpoint
