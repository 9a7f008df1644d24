"""Hostile inputs: every command of the four command lines, run on inputs built to break it.

    python -m avvp.benchmarks.hostile --cases 2000 [--seed 0] [--json]

Each case runs one command in this process and checks the invariants of the output and input layers
(`avvp.output`, `avvp.inputs`):

1. exit 0, or a non-zero exit with exactly one line on stderr, `error: ...`, holding the case's fragments (the
   file, field or option at fault); no traceback;
2. nothing created, changed or removed outside the case's own folder: a sentinel tree beside it (a thesis
   folder, a victim file, a secret the hostile files point at) and the LLP-sim corpus it reads are hashed
   before and after;
3. no staged file (`*.tmp`) and no lock file left anywhere in the case's folder;
4. peak memory under a cap: the address space may grow by at most `MEMORY_CAP` (`resource.setrlimit`).

`CASES` is the table: per command (as typed, e.g. "avvp data export-han"), the hostile inputs it is run on
and the fragments its error must hold. The suite runs it (tests/test_hostile_inputs.py) and fails for a
command of the command lines that has no case here: a new command adds its cases to `COMMAND_CASES`. This
module adds random mutations of valid stores, label files, checkpoints and CSVs (`mutation_cases`) and runs
as many cases as asked, drawn with a seed, printing the number per command and of violations.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import resource
import shutil
import signal
import stat
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MEMORY_CAP = 2 << 30
"""Bytes of address space a case may add (a hostile file may not make a command allocate more)."""
MAINS = {
    "avvp": "avvp.commands.app",
    "avvp-finetune": "avvp.finetune.cli",
    "avvp-pretrain": "avvp.pretrain.cli",
    "avvp-groundtruth": "avvp.grounding.cli",
}
"""Console script -> the module holding its Typer `app` and `main` (as avvp.commands.entry.MODULES)."""


# --- the commands ---


def commands() -> list[str]:
    """Every command of the four command lines, as typed: groups that run a command themselves included."""
    import importlib

    from typer.main import get_command

    found = []

    def walk(command, words: str) -> None:
        if hasattr(command, "commands"):
            if getattr(command, "invoke_without_command", False):
                found.append(words)
            for name, sub in command.commands.items():
                walk(sub, f"{words} {name}")
        else:
            found.append(words)

    for script, module in MAINS.items():
        walk(get_command(importlib.import_module(module).app), script)
    return found


# --- where a case runs ---


@dataclass
class Sandbox:
    """One case's folders: `work` (its inputs and outputs) and `sentinel` (what it must never touch)."""

    root: Path
    corpus: Path
    """An LLP-sim tiny corpus (llp.h5, pretrain.h5, the annotation files): read, never written."""
    run: Path | None = None
    """A trained tiny parser run (base), for the commands that need one; read, never written."""

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def sentinel(self) -> Path:
        return self.root / "sentinel"

    @property
    def store(self) -> Path:
        return self.corpus / "llp.h5"

    def prepare(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        (self.sentinel / "thesis" / "chapters").mkdir(parents=True, exist_ok=True)
        (self.sentinel / "thesis" / "thesis.tex").write_text("\\documentclass{book}\n")
        (self.sentinel / "thesis" / "chapters" / "one.tex").write_text("Chapter one.\n")
        (self.sentinel / "victim.txt").write_text("a file the lock must never truncate\n")
        (self.sentinel / "secret.bin").write_bytes(np.random.default_rng(0).bytes(1 << 16))


def tree_digest(*folders: Path) -> dict[str, str]:
    """Path -> kind and content hash (links by target) of everything under `folders`."""
    digest = {}
    for folder in folders:
        for path in sorted([folder, *folder.rglob("*")]):
            if path.is_symlink():
                digest[str(path)] = f"link {os.readlink(path)}"
            elif path.is_file():
                digest[str(path)] = "file " + hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                digest[str(path)] = "dir"
            else:
                digest[str(path)] = f"special {os.stat(path).st_mode:o}"
    return digest


def leftovers(folder: Path) -> list[str]:
    """Staged files (`*.tmp`) and lock files (`*.lock`) left in `folder`: a command removes both."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith((".tmp", ".lock")))


# --- hostile files ---


def _h5(path: Path):
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    return h5py.File(path, "w")


def valid_store(path: Path, video_ids: list, n_streams=("audio", "visual", "motion"), raw: bool = False) -> Path:
    """A small store of the schema with the given ids (bytes ids are written as they are)."""
    import h5py

    widths = {"audio": 128, "visual": 2048, "motion": 512}
    rng = np.random.default_rng(len(video_ids))
    with _h5(path) as handle:
        handle.attrs["schema"] = 1
        handle.attrs["source"] = "hostile"
        handle.attrs["created_by"] = "avvp.benchmarks.hostile"
        dtype = h5py.string_dtype("utf-8") if not raw else h5py.string_dtype("ascii")
        handle.create_dataset("video_ids", data=np.array(video_ids, dtype=object), dtype=dtype)
        for name in n_streams:
            handle.create_dataset(name, data=rng.normal(size=(len(video_ids), 10, widths[name])).astype(np.float16))
    return path


def _ids(count: int = 4) -> list[str]:
    return [f"vid{i:08d}_0_10" for i in range(count)]


def store_with_ids(video_ids: list) -> Callable[[Sandbox, Path], Path]:
    return lambda sb, path: valid_store(path, video_ids, raw=any(isinstance(v, bytes) for v in video_ids))


def store_external(sb: Sandbox, path: Path) -> Path:
    with _h5(path) as handle:
        handle.create_dataset("video_ids", data=np.array(_ids(2), dtype=object), dtype=_str())
        handle.create_dataset(
            "audio", shape=(2, 10, 128), dtype="<f4", external=[(str(sb.sentinel / "secret.bin"), 0, 2 * 10 * 128 * 4)]
        )
        for name, width in (("visual", 2048), ("motion", 512)):
            handle.create_dataset(name, data=np.zeros((2, 10, width), np.float16))
    return path


def store_virtual(sb: Sandbox, path: Path) -> Path:
    import h5py

    source = valid_store(sb.sentinel / "other.h5", _ids(2))
    with _h5(path) as handle:
        handle.create_dataset("video_ids", data=np.array(_ids(2), dtype=object), dtype=_str())
        layout = h5py.VirtualLayout(shape=(2, 10, 128), dtype=np.float16)
        layout[:] = h5py.VirtualSource(str(source), "audio", shape=(2, 10, 128))
        handle.create_virtual_dataset("audio", layout)
        for name, width in (("visual", 2048), ("motion", 512)):
            handle.create_dataset(name, data=np.zeros((2, 10, width), np.float16))
    return path


def store_link(kind: str) -> Callable[[Sandbox, Path], Path]:
    def build(sb: Sandbox, path: Path) -> Path:
        import h5py

        valid_store(path, _ids(2), ("visual", "motion"))
        with h5py.File(path, "a") as handle:
            if kind == "external":
                handle["audio"] = h5py.ExternalLink(str(sb.sentinel / "missing.h5"), "/audio")
            else:
                handle["audio"] = h5py.SoftLink("/nowhere")
        return path

    return build


def _str():
    import h5py

    return h5py.string_dtype("utf-8")


def store_huge_ids(sb: Sandbox, path: Path) -> Path:
    with _h5(path) as handle:  # 10^8 ids declared in a few kB: nothing written
        handle.create_dataset("video_ids", shape=(10**8,), dtype=_str(), chunks=(4096,))
    return path


def store_huge_strings(sb: Sandbox, path: Path) -> Path:
    with _h5(path) as handle:
        handle.create_dataset("video_ids", shape=(4,), dtype="S1000000000", chunks=(1,))
    return path


def store_huge_stream(sb: Sandbox, path: Path) -> Path:
    with _h5(path) as handle:
        handle.create_dataset("video_ids", data=np.array(_ids(2), dtype=object), dtype=_str())
        handle.create_dataset("audio", shape=(2, 10, 10**9), dtype="<f4", chunks=(1, 1, 1024))
    return path


def store_empty(sb: Sandbox, path: Path) -> Path:
    return valid_store(path, [])


def plain_file(contents: bytes) -> Callable[[Sandbox, Path], Path]:
    def build(sb: Sandbox, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents)
        return path

    return build


def fifo(sb: Sandbox, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


STORE_ATTACKS: dict[str, tuple[Callable[[Sandbox, Path], Path], tuple[str, ...]]] = {
    "id absolute path": (store_with_ids(["/home/u/pw", "ok_0_10"]), ("'/home/u/pw'", "path separator")),
    "id ../../../ab": (store_with_ids(["../../../ab", "ok_0_10"]), ("'../../../ab'", "path separator")),
    "id empty": (store_with_ids(["", "ok_0_10"]), ("video id ''", "is empty")),
    "id with a tab": (store_with_ids(["a\tb", "ok_0_10"]), ("'a\\tb'", "tab")),
    "id with a newline": (store_with_ids(["a\nb", "ok_0_10"]), ("'a\\nb'", "newline")),
    "id of 5000 characters": (store_with_ids(["x" * 5000, "ok_0_10"]), ("longer than 255 bytes",)),
    "id not UTF-8": (store_with_ids([b"\xff\xfeab", b"ok_0_10"]), ("not UTF-8",)),
    "external raw storage": (store_external, ("'audio'", "external storage")),
    "virtual dataset": (store_virtual, ("'audio'", "virtual")),
    "external link": (store_link("external"), ("'audio'", "external link")),
    "dangling soft link": (store_link("soft"), ("'audio'", "soft link")),
    "10^8 ids in 7 kB": (store_huge_ids, ("'video_ids'", "declares shape (100000000,)")),
    "ids of S1000000000": (store_huge_strings, ("'video_ids'", "declares shape (4,)")),
    "stream of width 10^9": (store_huge_stream, ("'audio'", "declares shape")),
    "not HDF5": (plain_file(b"not an HDF5 file\n"), ("not a readable HDF5",)),
    "a FIFO": (fifo, ("is a FIFO",)),
}
"""Hostile feature stores (and label files, read by the same layer): builder, fragments of the error."""


# --- hostile runs, checkpoints, encoders, release folders ---


def run_folder(config: dict | str, weights: dict | None = None) -> Callable[[Sandbox, Path], Path]:
    """A run folder with a config.json (a dict, or raw text) and, given, a model.safetensors."""

    def build(sb: Sandbox, path: Path) -> Path:
        from safetensors.numpy import save_file

        path.mkdir(parents=True, exist_ok=True)
        text = config if isinstance(config, str) else json.dumps(config)
        (path / "config.json").write_text(text)
        if weights is not None:
            save_file(weights, str(path / "model.safetensors"))
        return path

    return build


def trained_config(sb: Sandbox, **changes) -> dict:
    config = json.loads((sb.run / "config.json").read_text())
    config.update(changes)
    return config


def copied_run(change: Callable[[dict], None] | None = None, nan: bool = False) -> Callable[[Sandbox, Path], Path]:
    """The trained run copied, its config changed by `change` or its weights all NaN."""

    def build(sb: Sandbox, path: Path) -> Path:
        import shutil

        from safetensors.numpy import load_file, save_file

        shutil.copytree(sb.run, path, ignore=shutil.ignore_patterns("checkpoints"))
        if change is not None:
            config = json.loads((path / "config.json").read_text())
            change(config)
            (path / "config.json").write_text(json.dumps(config))
        if nan:
            weights = load_file(str(path / "model.safetensors"))
            save_file({k: np.full_like(v, np.nan) for k, v in weights.items()}, str(path / "model.safetensors"))
        return path

    return build


def deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def torch_file(make: Callable[[], object]) -> Callable[[Sandbox, Path], Path]:
    def build(sb: Sandbox, path: Path) -> Path:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(make(), path)
        return path

    return build


def _han_like(**override):
    """A state dict with the HAN release's key names and shapes (zeros), `override` replacing entries."""
    import torch

    width, ff = 64, 48  # the release's are 512 and 512: the import infers them from the shapes
    shapes = {"fc_a": (width, 128), "fc_v": (width, 2048), "fc_st": (width, 512), "fc_fusion": (width, 2 * width),
              "fc_prob": (25, width), "fc_frame_att": (25, width), "fc_av_att": (25, width),
              "hat_encoder.layers.0.linear1": (ff, width), "hat_encoder.layers.0.linear2": (width, ff)}  # fmt: skip
    state = {}
    for name, shape in shapes.items():
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.zeros(shape), torch.zeros(shape[0])
    for attn in ("self_attn", "cm_attn"):
        prefix = f"hat_encoder.layers.0.{attn}"
        state[f"{prefix}.in_proj_weight"], state[f"{prefix}.in_proj_bias"] = (
            torch.zeros(3 * width, width),
            torch.zeros(3 * width),
        )
        state[f"{prefix}.out_proj.weight"], state[f"{prefix}.out_proj.bias"] = (
            torch.zeros(width, width),
            torch.zeros(width),
        )
    for norm in ("hat_encoder.layers.0.norm1", "hat_encoder.layers.0.norm2", "hat_encoder.norm1", "hat_encoder.norm2"):
        state[f"{norm}.weight"], state[f"{norm}.bias"] = torch.ones(width), torch.zeros(width)
    state.update(override)
    return state


def _expanded():
    import torch

    return {"fc_a.weight": torch.zeros(1).expand(100_000, 10_000)}


def _sparse():
    import torch

    return {"fc_a.weight": torch.zeros(64, 128).to_sparse()}


def _zeros(**settings) -> Callable[[], object]:
    """HAN-like weights whose fc_a.weight is `torch.zeros(shape, dtype)` (`settings` by name, torch dtypes)."""

    def make():
        import torch

        shape = settings.get("shape", (64, 128))
        dtype = getattr(torch, settings.get("dtype", "float32"))
        weight = torch.zeros(shape).to(dtype) if "float8" in str(dtype) else torch.zeros(shape, dtype=dtype)
        return _han_like(**{"fc_a.weight": weight})

    return make


def _keyed(key) -> Callable[[], object]:
    def make():
        import torch

        return {key: torch.zeros(2)}

    return make


PT_ATTACKS: dict[str, tuple[Callable[[], object], tuple[str, ...]]] = {
    "int keys": (_keyed(1), ("key 1", "expected parameter names")),
    "tuple keys": (_keyed(("a", "b")), ("key ('a', 'b')",)),
    "sparse tensor": (_sparse, ("'fc_a.weight'", "sparse")),
    "complex weights": (_zeros(dtype="complex64"), ("complex64",)),
    "int weights": (_zeros(dtype="int32"), ("int32",)),
    "bool weights": (_zeros(dtype="bool"), ("torch.bool",)),
    "fp8 weights": (_zeros(dtype="float8_e4m3fn"), ("float8",)),
    "stride-0 expanded": (_expanded, ("expanded view",)),
    "1-D fc_a": (_zeros(shape=(64,)), ("fc_a",)),
    "a list": (lambda: [1, 2, 3], ("expected a state dict",)),
}
"""Hostile `.pt` checkpoints (loaded with weights_only=True, then checked): builder, fragments."""


def npy_header(shape: tuple, dtype: str = "<f4") -> Callable[[Sandbox, Path], Path]:
    """A .npy file whose header declares `shape` and which holds no data."""

    def build(sb: Sandbox, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": dtype, "fortran_order": False, "shape": shape})
        return path

    return build


def release_folder(audio: Callable[[Sandbox, Path], Path] | None = None, source_link: bool = False):
    """An LLP release folder of two videos; `audio` builds the first video's vggish file instead."""

    def build(sb: Sandbox, path: Path) -> Path:
        for video in ("aaaaaaaaaaa", "bbbbbbbbbbb"):
            for folder, rows, width in (("vggish", 10, 128), ("res152", 80, 2048), ("r2plus1d_18", 10, 512)):
                (path / folder).mkdir(parents=True, exist_ok=True)
                np.save(path / folder / f"{video}.npy", np.zeros((rows, width), np.float32))
        if audio is not None:
            (path / "vggish" / "aaaaaaaaaaa.npy").unlink()
            audio(sb, path / "vggish" / "aaaaaaaaaaa.npy")
        if source_link:
            (path / "avvp_source.txt").symlink_to(sb.sentinel / "victim.txt")
        return path

    return build


def annotation_folder(fifo_file: str | None = None) -> Callable[[Sandbox, Path], Path]:
    """The corpus's annotation files copied, one of them (`fifo_file`) a FIFO."""

    def build(sb: Sandbox, path: Path) -> Path:
        import shutil

        path.mkdir(parents=True, exist_ok=True)
        for source in sb.corpus.glob("AVVP_*.csv"):
            shutil.copy(source, path / source.name)
        if fifo_file is not None:
            (path / fifo_file).unlink()
            os.mkfifo(path / fifo_file)
        return path

    return build


def encoder_folder(**config) -> Callable[[Sandbox, Path], Path]:
    settings = {"model_type": "avvp_av_encoder", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1}
    settings.update(config)
    return run_folder(settings, {"x": np.zeros(1, np.float32)})


def _audio_width(width: int) -> Callable[[dict], None]:
    return lambda config: config.update(input_widths={"audio": width, "visual": 2048, "motion": 512})


# --- the table ---


@dataclass(frozen=True)
class Case:
    """One command run on one hostile input.

    `args(sb)` builds the inputs under `sb.work` and returns the arguments after the command's words.
    `error`: fragments the one error line must hold; None: the command must exit 0; (): either (exit 0 or one
    error line; random mutations). `check(sb)`: a further
    condition on the outcome (e.g. a secret that must not appear in an output), raising AssertionError.
    `setup(sb)`: returns a context manager held while the command runs (e.g. another writer's lock)."""

    command: str
    name: str
    args: Callable[[Sandbox], list]
    error: tuple[str, ...] | None = ()
    needs_run: bool = False
    check: Callable[[Sandbox], None] | None = None
    setup: Callable[[Sandbox], contextlib.AbstractContextManager] | None = None

    @property
    def id(self) -> str:
        return f"{self.command}: {self.name}"


def w(sb: Sandbox, name: str) -> Path:
    return sb.work / name


def with_file(builder: Callable[[Sandbox, Path], Path], name: str, args: Callable[[Sandbox, Path], list]):
    """A case's `args`: `builder` makes the file `name` in the case's folder, `args(sb, path)` the arguments."""
    return lambda sb: args(sb, builder(sb, w(sb, name)))


def built(builder: Callable[[Sandbox, Path], Path], name: str) -> Callable[[Sandbox], Path]:
    return lambda sb: builder(sb, w(sb, name))


def held_lock(path_of: Callable[[Sandbox], Path]):
    """Another command holding the output's lock for the run (a bare OutputLock, as another process's)."""

    @contextlib.contextmanager
    def hold(sb: Sandbox):
        from avvp.output import OutputLock

        lock = OutputLock(path_of(sb)).acquire()
        try:
            yield
        finally:
            lock.release()

    return hold


def planted_lock(name: str):
    """A `.NAME.lock` planted as a symbolic link to the victim file."""

    @contextlib.contextmanager
    def plant(sb: Sandbox):
        (sb.work / f".{name}.lock").symlink_to(sb.sentinel / "victim.txt")
        try:
            yield
        finally:
            (sb.work / f".{name}.lock").unlink()

    return plant


def _link_to_thesis(sb: Sandbox) -> Path:
    link = w(sb, "link")
    link.symlink_to(sb.sentinel / "thesis")
    return link


def _store_copy_folder(sb: Sandbox) -> Path:
    folder = w(sb, "dcopy")
    folder.mkdir()
    (folder / "llp.h5").write_bytes(sb.store.read_bytes())
    return folder


def _no_secret_in_store(sb: Sandbox) -> None:
    from avvp.store import store_info

    source = store_info(w(sb, "imported.h5"))["attrs"].get("source", "")
    assert "never truncate" not in source, source


def _stale_removed(name: str):
    def check(sb: Sandbox) -> None:
        assert not list(sb.work.glob(f".{name}.*.tmp")), sorted(sb.work.iterdir())

    return check


def staged_by_a_killed_run(*names: str):
    """Files and folders a killed command staged beside its outputs (`NAME.stage-XXXXXXXX.tmp`): the next run
    on the output removes them (the harness then finds none left)."""

    @contextlib.contextmanager
    def plant(sb: Sandbox):
        for name in names:
            staged = sb.work / f".{name}.stage-k1lled00.tmp"
            if name.endswith((".json", ".h5")):
                staged.write_bytes(b"x" * 1000)
            else:
                (staged / "vggish").mkdir(parents=True)
        yield

    return plant


def store_cases(command: str, args: Callable[[Sandbox, Path], list], attacks=None, needs_run=False) -> list[Case]:
    """A case per hostile store (`STORE_ATTACKS`, or the named `attacks`), `args(sb, store)` the arguments."""
    chosen = attacks or list(STORE_ATTACKS)
    return [
        Case(command, f"store: {name}", with_file(STORE_ATTACKS[name][0], "hostile.h5", args),
             ("hostile.h5", *STORE_ATTACKS[name][1]), needs_run)
        for name in chosen
    ]  # fmt: skip


def not_a_video(sb: Sandbox, path: Path) -> Path:
    """A file named like a video that holds no video (a corrupt or truncated download)."""
    return plain_file(b"\x00\x00\x00\x18ftypmp42 truncated, no moov box")(sb, path)


NO_WEIGHTS = ["--workers", "0", "--offline"]
"""Extraction options of every case: decode in this process, never download (a case that reached the networks
would fail naming a weight file, not the fragments it expects)."""


def extract_args(*videos: Callable[[Sandbox], Path], out: Callable[[Sandbox], Path | str], overwrite=False):
    """`avvp data extract` arguments: the videos built by `videos`, `--out`, an empty `--weights` folder."""

    def build(sb: Sandbox) -> list:
        weights = w(sb, "weights")
        weights.mkdir(exist_ok=True)
        extra = ["--overwrite"] if overwrite else []
        return [*(video(sb) for video in videos), "--out", out(sb), "--weights", weights, *NO_WEIGHTS, *extra]

    return build


def _video(name: str = "clip.mp4", builder: Callable[[Sandbox, Path], Path] = not_a_video):
    return lambda sb: builder(sb, w(sb, name))


def _parts_of_a_killed_extraction(sb: Sandbox) -> Path:
    """`clip.mp4` and the parts folder of a killed extraction into feat.h5 that had finished it, with the files
    the kill left staged (a part being written, the store being assembled): the rerun resumes, loading no
    network, and removes them."""
    from avvp.extract.pipeline import parts_dir
    from avvp.output import MARKER
    from avvp.store import write_store

    video = not_a_video(sb, w(sb, "clip.mp4"))
    folder = parts_dir(w(sb, "feat.h5"))
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({"dtype": "float16", "audio_embedding": "raw"}))
    (folder / MARKER).write_text("{}")
    arrays = {name: np.zeros((1, 10, width), np.float32) for name, width in (("audio", 128), ("visual", 2048),
                                                                             ("motion", 512))}  # fmt: skip
    write_store(folder / "part-000000.h5", ["clip"], arrays, dtype="float32", attrs={"videos": '["clip"]'})
    (folder / ".part-000001.h5.stage-k1lled00.tmp").write_bytes(b"x" * 1000)
    (sb.work / ".feat.h5.stage-k1lled00.tmp").write_bytes(b"x" * 1000)
    return video


def _extracted(sb: Sandbox) -> None:
    from avvp.store import read_video_ids

    assert read_video_ids(w(sb, "feat.h5")) == ["clip"]
    assert not (sb.work / ".feat.h5.parts").exists(), sorted(sb.work.iterdir())


def _foreign_parts_folder(sb: Sandbox) -> Path:
    """A `.feat.h5.parts` folder in the sentinel tree that avvp did not make (no marker): `--overwrite` of
    `--out sentinel/feat.h5` must not delete it."""
    folder = sb.sentinel / ".feat.h5.parts"
    folder.mkdir()
    (folder / "notes.txt").write_text("not avvp's\n")
    return sb.sentinel / "feat.h5"


def _two_stores(sb: Sandbox) -> list[Path]:
    return [valid_store(w(sb, "a.h5"), _ids(2)), valid_store(w(sb, "b.h5"), ["other_0_10", "more_0_10"])]


def _merged(sb: Sandbox) -> None:
    from avvp.store import read_video_ids

    assert read_video_ids(w(sb, "merged.h5")) == [*_ids(2), "other_0_10", "more_0_10"]


def _pt_in_folder(sb: Sandbox) -> Path:
    folder = w(sb, "dcopy")
    folder.mkdir()
    return torch_file(_han_like)(sb, folder / "W.pt")


QUICK = ["id ../../../ab", "external raw storage", "10^8 ids in 7 kB", "a FIFO"]
"""The store attacks run on the commands whose other cases cost most (the trainers)."""

COMMAND_CASES: dict[str, list[Case]] = {
    "avvp evaluate": [
        Case("avvp evaluate", "/dev/zero as --pred-audio", lambda sb: [
            "--pred-audio", "/dev/zero", "--pred-visual", "/dev/zero", "--annotations", sb.corpus],
            ("/dev/zero", "is a device")),
        Case("avvp evaluate", "a FIFO as the annotation file", lambda sb: [
            "--pred-audio", sb.corpus / "AVVP_eval_audio.csv", "--pred-visual", sb.corpus / "AVVP_eval_visual.csv",
            "--annotations", annotation_folder("AVVP_eval_audio.csv")(sb, w(sb, "ann"))],
            ("AVVP_eval_audio.csv", "is a FIFO")),
        Case("avvp evaluate", "the truth scored against itself", lambda sb: [
            "--pred-audio", sb.corpus / "AVVP_eval_audio.csv", "--pred-visual", sb.corpus / "AVVP_eval_visual.csv",
            "--annotations", sb.corpus], None),
    ],
    "avvp parse": [
        *store_cases("avvp parse", lambda sb, store: [
            "--run", w(sb, "norun"), "--features", store, "--out", w(sb, "events.json")]),
        Case("avvp parse", "--out /dev/null --overwrite", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--out", "/dev/null", "--overwrite"],
            ("/dev/null", "is a device"), needs_run=True),
        Case("avvp parse", "--out in an unwritable folder", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--out", "/proc/avvp-hostile/events.json"],
            ("/proc/avvp-hostile", "cannot write"), needs_run=True),
        Case("avvp parse", "another parse holds --out", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--out", w(sb, "events.json")],
            ("events.json", "another command"), needs_run=True, setup=held_lock(lambda sb: w(sb, "events.json"))),
        Case("avvp parse", "a planted lock link", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--out", w(sb, "events.json")],
            (".events.json.lock", "symbolic link"), needs_run=True, setup=planted_lock("events.json")),
        Case("avvp parse", "deep config.json", lambda sb: [
            "--run", run_folder(deep_json())(sb, w(sb, "deep")), "--features", sb.store, "--out", w(sb, "e.json")],
            ("config.json", "nested too deep")),
        Case("avvp parse", "every output at once", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--out", w(sb, "events.json"), "--csv", w(sb, "csv"),
            "--probabilities", w(sb, "p.h5"), "--videos", _first_id(sb), "--plot", w(sb, "plots")],
            None, needs_run=True, setup=staged_by_a_killed_run("events.json", "p.h5")),
        Case("avvp parse", "--video, --out /dev/null --overwrite", lambda sb: [
            "--run", sb.run, "--video", not_a_video(sb, w(sb, "clip.mp4")), "--out", "/dev/null", "--overwrite"],
            ("/dev/null", "is a device"), needs_run=True),
        Case("avvp parse", "--video a FIFO", lambda sb: [
            "--run", sb.run, "--video", fifo(sb, w(sb, "clip.mp4")), "--out", w(sb, "events.json")],
            ("clip.mp4", "is a FIFO"), needs_run=True),
        Case("avvp parse", "--video /dev/zero", lambda sb: [
            "--run", sb.run, "--video", "/dev/zero", "--out", w(sb, "events.json")],
            ("/dev/zero", "is a device"), needs_run=True),
        Case("avvp parse", "--video, --out the video --overwrite", lambda sb: [
            "--run", sb.run, "--video", not_a_video(sb, w(sb, "clip.mp4")), "--out", w(sb, "clip.mp4"),
            "--overwrite"], ("clip.mp4", "holds the input"), needs_run=True),
        Case("avvp parse", "--video, another parse holds --csv", lambda sb: [
            "--run", sb.run, "--video", not_a_video(sb, w(sb, "clip.mp4")), "--out", w(sb, "events.json"),
            "--csv", w(sb, "csv")],
            ("csv", "another command"), needs_run=True, setup=held_lock(lambda sb: w(sb, "csv"))),
    ],
    "avvp data extract": [
        Case("avvp data extract", "--out /dev/null --overwrite",
             extract_args(_video(), out=lambda sb: "/dev/null", overwrite=True), ("/dev/null", "is a device")),
        Case("avvp data extract", "--out a thesis folder --overwrite",
             extract_args(_video(), out=lambda sb: sb.sentinel / "thesis", overwrite=True),
             ("thesis", "is a directory")),
        Case("avvp data extract", "--out a file avvp did not write --overwrite",
             extract_args(_video(), out=lambda sb: sb.sentinel / "thesis" / "thesis.tex", overwrite=True),
             ("thesis.tex", "not a feature store avvp wrote")),
        Case("avvp data extract", "--overwrite beside a parts folder avvp did not make",
             extract_args(_video(), out=_foreign_parts_folder, overwrite=True),
             (".feat.h5.parts", "not written by avvp")),
        Case("avvp data extract", "--out the video itself --overwrite",
             extract_args(_video(), out=lambda sb: w(sb, "clip.mp4"), overwrite=True),
             ("clip.mp4", "holds the input")),
        Case("avvp data extract", "a planted lock link", extract_args(_video(), out=lambda sb: w(sb, "feat.h5")),
             (".feat.h5.lock", "symbolic link"), setup=planted_lock("feat.h5")),
        Case("avvp data extract", "another extract holds --out",
             extract_args(_video(), out=lambda sb: w(sb, "feat.h5")),
             ("feat.h5", "another command"), setup=held_lock(lambda sb: w(sb, "feat.h5"))),
        Case("avvp data extract", "a FIFO as a video", extract_args(_video(builder=fifo), out=lambda sb: w(sb, "f.h5")),
             ("clip.mp4", "is a FIFO")),
        Case("avvp data extract", "/dev/zero as a video", extract_args(lambda sb: "/dev/zero",
             out=lambda sb: w(sb, "f.h5")), ("/dev/zero", "is a device")),
        Case("avvp data extract", "a corrupt video", extract_args(_video("bad.mp4"), out=lambda sb: w(sb, "f.h5")),
             ("bad.mp4", "not a video PyAV can read")),
        Case("avvp data extract", "a corrupt video, --skip-bad",
             lambda sb: [*extract_args(_video("bad.mp4"), out=lambda sb: w(sb, "f.h5"))(sb), "--skip-bad"],
             ("no video could be decoded", "bad.mp4")),
        Case("avvp data extract", "a video named with a newline",
             extract_args(_video("a\nb.mp4"), out=lambda sb: w(sb, "f.h5")), ("'a\\nb'", "newline")),
        Case("avvp data extract", "a video named with a tab",
             extract_args(_video("a\tb.mp4"), out=lambda sb: w(sb, "f.h5")), ("'a\\tb'", "tab")),
        Case("avvp data extract", "a killed extraction's staged files",
             extract_args(_parts_of_a_killed_extraction, out=lambda sb: w(sb, "feat.h5")), None, check=_extracted),
    ],
    "avvp data merge": [
        *store_cases("avvp data merge", lambda sb, store: [
            store, valid_store(w(sb, "b.h5"), ["other_0_10"]), "--out", w(sb, "merged.h5")]),
        Case("avvp data merge", "two stores", lambda sb: [*_two_stores(sb), "--out", w(sb, "merged.h5")], None,
             check=_merged),
        Case("avvp data merge", "into one of its inputs --overwrite", lambda sb: [
            *_two_stores(sb), "--out", w(sb, "b.h5"), "--overwrite"], ("b.h5", "holds the input")),
        Case("avvp data merge", "--out /dev/null --overwrite", lambda sb: [
            *_two_stores(sb), "--out", "/dev/null", "--overwrite"], ("/dev/null", "is a device")),
        Case("avvp data merge", "--out a file avvp did not write --overwrite", lambda sb: [
            *_two_stores(sb), "--out", sb.sentinel / "thesis" / "thesis.tex", "--overwrite"],
            ("thesis.tex", "not a feature store avvp wrote")),
        Case("avvp data merge", "a planted lock link", lambda sb: [*_two_stores(sb), "--out", w(sb, "merged.h5")],
             (".merged.h5.lock", "symbolic link"), setup=planted_lock("merged.h5")),
    ],
    "avvp data import-han": [
        Case("avvp data import-han", ".npy header declaring (10^9, 128)", lambda sb: [
            release_folder(npy_header((10**9, 128)))(sb, w(sb, "rel")), "--out", w(sb, "imported.h5")],
            ("aaaaaaaaaaa.npy", "declares shape (1000000000, 128)")),
        Case("avvp data import-han", ".npy of Python objects", lambda sb: [
            release_folder(npy_header((10, 128), "|O"))(sb, w(sb, "rel")), "--out", w(sb, "imported.h5")],
            ("aaaaaaaaaaa.npy",)),
        Case("avvp data import-han", "a FIFO as a .npy", lambda sb: [
            release_folder(fifo)(sb, w(sb, "rel")), "--out", w(sb, "imported.h5")],
            ("aaaaaaaaaaa.npy",)),
        Case("avvp data import-han", "avvp_source.txt a link to another file", lambda sb: [
            release_folder(source_link=True)(sb, w(sb, "rel")), "--out", w(sb, "imported.h5")],
            None, check=_no_secret_in_store),
        Case("avvp data import-han", "--out /dev/null --overwrite", lambda sb: [
            release_folder()(sb, w(sb, "rel")), "--out", "/dev/null", "--overwrite"], ("/dev/null", "is a device")),
    ],
    "avvp data export-han": [
        *store_cases("avvp data export-han", lambda sb, store: [store, "--out", w(sb, "release")]),
        Case("avvp data export-han", "a store of no videos", lambda sb: [
            store_empty(sb, w(sb, "empty.h5")), "--out", w(sb, "release")], ("empty.h5", "no videos")),
        Case("avvp data export-han", "--out a thesis folder --overwrite", lambda sb: [
            sb.store, "--out", sb.sentinel / "thesis", "--overwrite"], ("thesis", "not written by avvp")),
        Case("avvp data export-han", "--out a link to a thesis folder --overwrite", lambda sb: [
            sb.store, "--out", _link_to_thesis(sb), "--overwrite"], ("link", "not written by avvp")),
        Case("avvp data export-han", "--out the folder of its own input --overwrite", lambda sb: [
            _store_copy_folder(sb) / "llp.h5", "--out", w(sb, "dcopy"), "--overwrite"], ("dcopy", "holds the input")),
        Case("avvp data export-han", "a planted lock link", lambda sb: [sb.store, "--out", w(sb, "release")],
             (".release.lock", "symbolic link"), setup=planted_lock("release")),
        Case("avvp data export-han", "twice with --overwrite, through a link", lambda sb: [
            sb.store, "--out", _exported_then_linked(sb), "--overwrite"], None),
        Case("avvp data export-han", "a killed export's staged folder", lambda sb: [
            valid_store(w(sb, "small.h5"), _ids(2)), "--out", w(sb, "release")], None,
            setup=staged_by_a_killed_run("release")),
    ],
    "avvp data synth": [
        Case("avvp data synth", "--seed 4294967296", lambda sb: [
            "--out", w(sb, "corpus"), "--preset", "tiny", "--seed", "4294967296"], ("--seed 4294967296",)),
        Case("avvp data synth", "a planted lock link", lambda sb: ["--out", w(sb, "corpus"), "--preset", "tiny"],
             (".corpus.lock", "symbolic link"), setup=planted_lock("corpus")),
        Case("avvp data synth", "another synth holds the folder through a link", lambda sb: [
            "--out", _linked(sb, "corpus", "c1link"), "--preset", "tiny"],
            ("c1link", "another command"), setup=held_lock(lambda sb: w(sb, "corpus"))),
        Case("avvp data synth", "--out a device", lambda sb: ["--out", "/dev/null", "--preset", "tiny"],
             ("/dev/null", "is a device")),
    ],
    "avvp data stats": [
        Case("avvp data stats", "a FIFO as an annotation file", lambda sb: [
            annotation_folder("AVVP_eval_visual.csv")(sb, w(sb, "ann"))], ("AVVP_eval_visual.csv", "is a FIFO")),
        Case("avvp data stats", "--plot in an unwritable folder", lambda sb: [
            sb.corpus, "--plot", "/proc/avvp-hostile/x.png"], ("/proc/avvp-hostile", "cannot write")),
        Case("avvp data stats", "--plot /dev/null --overwrite", lambda sb: [
            sb.corpus, "--plot", "/dev/null", "--overwrite"], ("--plot /dev/null",)),
    ],
    "avvp data baselines": [
        Case("avvp data baselines", "a FIFO as an annotation file", lambda sb: [
            "--annotations", annotation_folder("AVVP_test_pd.csv")(sb, w(sb, "ann"))], ("AVVP_test_pd.csv", "FIFO")),
    ],
    "avvp bench tables": [
        Case("avvp bench tables", "an unknown preset", lambda sb: ["--preset", "hostile", "--out", w(sb, "t")],
             ("hostile",)),
    ],
    "avvp bench speed": [
        Case("avvp bench speed", "an unknown section", lambda sb: ["no-such-section"], ("no-such-section",)),
    ],
    "avvp-finetune": [
        *store_cases("avvp-finetune", lambda sb, store: [
            "--model", "base", "--preset", "tiny", "--features", store, "--annotations", sb.corpus,
            "--out", w(sb, "run")], QUICK),
        Case("avvp-finetune", "--seed 4294967296", lambda sb: [
            "--model", "base", "--preset", "tiny", "--features", sb.store, "--annotations", sb.corpus,
            "--out", w(sb, "run"), "--seed", "4294967296"], ("seed", "4294967296")),
        Case("avvp-finetune", "--hidden-size 10^9", lambda sb: [
            "--model", "base", "--preset", "tiny", "--features", sb.store, "--annotations", sb.corpus,
            "--out", w(sb, "run"), "--hidden-size", "1000000000", "--num-heads", "1"], ("hidden_size",)),
        Case("avvp-finetune", "--out a link to a thesis folder --overwrite", lambda sb: [
            "--model", "base", "--preset", "tiny", "--features", sb.store, "--annotations", sb.corpus,
            "--out", _link_to_thesis(sb), "--overwrite"], ("link", "not a run")),
    ],
    "avvp-finetune evaluate": [
        Case("avvp-finetune evaluate", "config.json nested 100,000 deep", lambda sb: [
            "--run", run_folder(deep_json())(sb, w(sb, "deep"))], ("config.json", "nested too deep")),
        Case("avvp-finetune evaluate", "input_widths negative",
             with_file(copied_run(_audio_width(-1)), "r", lambda sb, run: ["--run", run]),
             ("input_widths.audio", "-1"), needs_run=True),
        Case("avvp-finetune evaluate", "input_widths 10^10",
             with_file(copied_run(_audio_width(10**10)), "r", lambda sb, run: ["--run", run]),
             ("input_widths.audio", "10000000000"), needs_run=True),
        Case("avvp-finetune evaluate", "num_heads 10^9", lambda sb: [
            "--run", copied_run(lambda c: c.update(num_heads=10**9, hidden_size=10**9))(sb, w(sb, "r"))],
            ("hidden_size",), needs_run=True),
        Case("avvp-finetune evaluate", "all-NaN model.safetensors", lambda sb: [
            "--run", copied_run(nan=True)(sb, w(sb, "r"))], ("model.safetensors", "NaN"), needs_run=True),
        *store_cases("avvp-finetune evaluate", lambda sb, store: [
            "--run", sb.run, "--features", store, "--annotations", sb.corpus], QUICK, needs_run=True),
    ],
    "avvp-finetune refine": [
        *store_cases("avvp-finetune refine", lambda sb, store: [
            "--run", sb.run, "--features", store, "--annotations", sb.corpus, "--out", w(sb, "labels.h5")],
            QUICK, needs_run=True),
        Case("avvp-finetune refine", "--out /dev/null --overwrite", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--annotations", sb.corpus, "--out", "/dev/null", "--overwrite"],
            ("/dev/null", "is a device"), needs_run=True),
        Case("avvp-finetune refine", "--out in an unwritable folder", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--annotations", sb.corpus,
            "--out", "/proc/avvp-hostile/labels.h5"], ("/proc/avvp-hostile", "cannot write"), needs_run=True),
        Case("avvp-finetune refine", "another refine holds --out", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--annotations", sb.corpus, "--out", w(sb, "labels.h5")],
            ("labels.h5", "another command"), needs_run=True, setup=held_lock(lambda sb: w(sb, "labels.h5"))),
        Case("avvp-finetune refine", "--seed 4294967296", lambda sb: [
            "--run", sb.run, "--features", sb.store, "--annotations", sb.corpus, "--out", w(sb, "labels.h5"),
            "--seed", "4294967296"], ("--seed 4294967296",), needs_run=True),
    ],
    "avvp-finetune import-han": [
        *[Case("avvp-finetune import-han", f".pt: {name}",
               with_file(torch_file(make), "W.pt", lambda sb, pt: [pt, "--out", w(sb, "imported")]),
               ("W.pt", *fragments)) for name, (make, fragments) in PT_ATTACKS.items()],
        Case("avvp-finetune import-han", "not a pickle", lambda sb: [
            plain_file(b"PK\x03\x04 not a checkpoint")(sb, w(sb, "W.pt")), "--out", w(sb, "imported")], ("W.pt",)),
        Case("avvp-finetune import-han", "a FIFO", lambda sb: [fifo(sb, w(sb, "W.pt")), "--out", w(sb, "imported")],
             ("W.pt", "is a FIFO")),
        Case("avvp-finetune import-han", "--out a thesis folder --overwrite", lambda sb: [
            torch_file(_han_like)(sb, w(sb, "W.pt")), "--out", sb.sentinel / "thesis", "--overwrite"], ("thesis",)),
    ],  # fmt: skip
    "avvp-finetune import-release": [
        *[Case("avvp-finetune import-release", f".pt: {name}",
               with_file(torch_file(make), "R.pt", lambda sb, pt: [pt, "--model", "base", "--out", w(sb, "run")]),
               ("R.pt", *fragments)) for name, (make, fragments) in list(PT_ATTACKS.items())[:8]],
        Case("avvp-finetune import-release", "release-avg, --out a thesis folder --overwrite", lambda sb: [
            torch_file(_han_like)(sb, w(sb, "R.pt")), "--model", "release-avg", "--out", sb.sentinel / "thesis",
            "--overwrite"], ("thesis", "not written by avvp")),
    ],  # fmt: skip
    "avvp-pretrain import-release": [
        *[Case("avvp-pretrain import-release", f".pt: {name}",
               with_file(torch_file(make), "P.pt", lambda sb, pt: [pt, "--out", w(sb, "enc")]),
               ("P.pt", *fragments)) for name, (make, fragments) in list(PT_ATTACKS.items())[:8]],
        Case("avvp-pretrain import-release", "a FIFO", lambda sb: [fifo(sb, w(sb, "P.pt")), "--out", w(sb, "enc")],
             ("P.pt", "is a FIFO")),
        Case("avvp-pretrain import-release", "--out a thesis folder --overwrite", lambda sb: [
            torch_file(_han_like)(sb, w(sb, "P.pt")), "--out", sb.sentinel / "thesis", "--overwrite"],
            ("thesis", "not written by avvp")),
        Case("avvp-pretrain import-release", "--out the folder of its own .pt --overwrite", lambda sb: [
            _pt_in_folder(sb), "--out", w(sb, "dcopy"), "--overwrite"], ("dcopy", "holds the input")),
    ],  # fmt: skip
    "avvp-pretrain": [
        *store_cases("avvp-pretrain", lambda sb, store: [
            "--features", store, "--labels", w(sb, "nolabels.h5"), "--out", w(sb, "enc"), "--preset", "tiny"], QUICK),
        *[Case("avvp-pretrain", f"labels: {name}",
               with_file(STORE_ATTACKS[name][0], "labels.h5", lambda sb, labels: [
                   "--features", sb.corpus / "pretrain.h5", "--labels", labels, "--out", w(sb, "enc"),
                   "--preset", "tiny"]),
               ("labels.h5", *STORE_ATTACKS[name][1])) for name in QUICK],
        Case("avvp-pretrain", "--seed 4294967296", lambda sb: [
            "--features", sb.corpus / "pretrain.h5", "--labels", w(sb, "l.h5"), "--out", w(sb, "enc"),
            "--preset", "tiny", "--seed", "4294967296"], ("seed", "4294967296")),
        Case("avvp-pretrain", "--num-heads 10^9", lambda sb: [
            "--features", sb.corpus / "pretrain.h5", "--labels", w(sb, "l.h5"), "--out", w(sb, "enc"),
            "--preset", "tiny", "--hidden-size", "1000000000", "--num-heads", "1000000000"], ("hidden",)),
    ],  # fmt: skip
    "avvp-pretrain init": [
        *store_cases("avvp-pretrain init", lambda sb, store: [
            "--features", store, "--out", w(sb, "enc"), "--preset", "tiny"], QUICK),
        Case("avvp-pretrain init", "--num-layers 10^4", lambda sb: [
            "--features", sb.corpus / "pretrain.h5", "--out", w(sb, "enc"), "--preset", "tiny",
            "--num-layers", "10000"], ("num_layers", "10000")),
    ],
    "avvp-pretrain export": [
        Case("avvp-pretrain export", "an encoder config of 10^4 layers", lambda sb: [
            "--encoder", encoder_folder(num_hidden_layers=10_000)(sb, w(sb, "enc")), "--features", sb.store,
            "--out", w(sb, "emb.h5")], ("config.json", "num_hidden_layers", "10000")),
        Case("avvp-pretrain export", "an encoder config of width 10^9", lambda sb: [
            "--encoder", encoder_folder(hidden_size=10**9)(sb, w(sb, "enc")), "--features", sb.store,
            "--out", w(sb, "emb.h5")], ("config.json", "hidden_size")),
        Case("avvp-pretrain export", "config.json nested 100,000 deep", lambda sb: [
            "--encoder", run_folder(deep_json())(sb, w(sb, "enc")), "--features", sb.store,
            "--out", w(sb, "emb.h5")], ("config.json", "not a valid JSON")),
    ],
    "avvp-groundtruth build": [
        *store_cases("avvp-groundtruth build", lambda sb, store: [
            "--features", store, "--out", w(sb, "avg.h5"), "--visual-threshold", "0.9", "--audio-threshold", "0.9"]),
        Case("avvp-groundtruth build", "--out /dev/null --overwrite", lambda sb: [
            "--features", sb.store, "--out", "/dev/null", "--overwrite"], ("/dev/null", "is a device")),
        Case("avvp-groundtruth build", "a planted lock link", lambda sb: [
            "--features", sb.store, "--out", w(sb, "avg.h5")], (".avg.h5.lock", "symbolic link"),
            setup=planted_lock("avg.h5")),
    ],
    "avvp-groundtruth calibrate": [
        *store_cases("avvp-groundtruth calibrate", lambda sb, store: ["--quantile", "0.5", "--features", store], QUICK),
        Case("avvp-groundtruth calibrate", "--seed 4294967296", lambda sb: [
            "--quantile", "0.5", "--features", sb.store, "--seed", "4294967296"], ("--seed 4294967296",)),
    ],
    "avvp-groundtruth stats": [
        *store_cases("avvp-groundtruth stats", lambda sb, store: [store], QUICK),
        Case("avvp-groundtruth stats", "--plot /dev/null --overwrite", lambda sb: [
            _avg_labels(sb), "--plot", "/dev/null", "--overwrite"], ("--plot /dev/null",)),
    ],
}  # fmt: skip
"""Command (as typed) -> its cases. Every command of the command lines needs at least one."""


def _first_id(sb: Sandbox) -> str:
    from avvp.store import read_video_ids

    return read_video_ids(sb.store)[0]


def _linked(sb: Sandbox, target: str, name: str) -> Path:
    (sb.work / target).mkdir(exist_ok=True)
    (sb.work / name).symlink_to(sb.work / target)
    return sb.work / name


def _folder_with(sb: Sandbox, builder, name: str) -> Path:
    folder = w(sb, "data")
    folder.mkdir(exist_ok=True)
    builder(sb, folder / name)
    (folder / "pretrain.h5").symlink_to(sb.corpus / "pretrain.h5")
    return folder


def _exported_then_linked(sb: Sandbox) -> Path:
    from avvp.export_features import export_han

    export_han(valid_store(w(sb, "small.h5"), _ids(2)), w(sb, "first"))
    (sb.work / "rel").symlink_to(w(sb, "first"))
    return sb.work / "rel"


def _avg_labels(sb: Sandbox) -> Path:
    from avvp.avg_labels import write_avg_labels

    return write_avg_labels(w(sb, "avg.h5"), _ids(2), np.zeros((2, 10), np.int8))


CASES: list[Case] = [case for cases in COMMAND_CASES.values() for case in cases]


# --- running a case ---


def run_in_process(main: Callable[[], None], *args) -> tuple[int, str, str]:
    """Run a console entry point's `main` in this process: (exit status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["prog", *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main()
                code = 0
            except SystemExit as exit_info:
                code = exit_info.code if isinstance(exit_info.code, int) else 1
            except Exception:  # what the console script would print as a traceback
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
    return code, stdout.getvalue(), stderr.getvalue()


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def memory_cap(extra: int = MEMORY_CAP):
    """The address space may grow by at most `extra` bytes inside the block (RLIMIT_AS; restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass
class Outcome:
    case: Case
    code: int
    stderr: str
    violations: list[str] = field(default_factory=list)


def run_case(case: Case, sb: Sandbox, runner=run_in_process) -> Outcome:
    """Build the case's inputs, run its command under the memory cap and check every invariant."""
    import importlib

    sb.prepare()
    script, *words = case.command.split()
    args = [*words, *case.args(sb)]  # builds the inputs (some point into the sentinel tree)
    before = tree_digest(sb.sentinel, sb.corpus, *([sb.run] if sb.run else []))
    main = importlib.import_module(MAINS[script]).main
    setup = case.setup(sb) if case.setup else contextlib.nullcontext()
    with setup, memory_cap():
        code, _, stderr = runner(main, *args)
    outcome = Outcome(case, code, stderr)
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    if "Traceback" in stderr:
        outcome.violations.append("a traceback")
    if case.error is None and code != 0:
        outcome.violations.append(f"exit {code}; expected 0")
    if code != 0:
        if len(errors) != 1 or errors[0] != lines[-1]:  # a progress bar or a note may come before it
            outcome.violations.append("not exactly one error line, the last")
        missing = [f for f in (case.error or ()) if not errors or f not in errors[0]]
        if missing:
            outcome.violations.append(f"the error line lacks {missing}")
    elif case.error:
        outcome.violations.append("exit 0; expected an error")
    after = tree_digest(sb.sentinel, sb.corpus, *([sb.run] if sb.run else []))
    if after != before:
        changed = sorted(set(before.items()) ^ set(after.items()))
        outcome.violations.append(f"changed outside the output: {changed[:3]}")
    left = leftovers(sb.work)
    if left:
        outcome.violations.append(f"left behind: {left[:3]}")
    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        outcome.violations.append("/dev/null replaced")
    if case.check is not None and not outcome.violations:
        try:
            case.check(sb)
        except AssertionError as error:
            outcome.violations.append(f"check failed: {error}")
    return outcome


def describe(outcome: Outcome) -> str:
    return f"{outcome.case.id}: exit {outcome.code}; {'; '.join(outcome.violations)}\n{outcome.stderr[-2000:]}"


# --- the long version: random mutations ---


def _mutated_store(seed: int) -> Callable[[Sandbox, Path], Path]:
    """A copy of the corpus's store with random bytes overwritten (HDF5 metadata and data alike)."""

    def build(sb: Sandbox, path: Path) -> Path:
        rng = random.Random(seed)
        data = bytearray(sb.store.read_bytes()[: 1 << 20] if rng.random() < 0.3 else sb.store.read_bytes())
        for _ in range(rng.choice((1, 4, 16, 64))):
            position = rng.randrange(min(len(data), 1 << 16) if rng.random() < 0.7 else len(data))
            data[position] = rng.randrange(256)
        path.write_bytes(bytes(data))
        return path

    return build


def _mutated_csv(seed: int) -> Callable[[Sandbox, Path], Path]:
    def build(sb: Sandbox, path: Path) -> Path:
        rng = random.Random(seed)
        annotations = annotation_folder()(sb, path)
        target = annotations / rng.choice(["AVVP_eval_audio.csv", "AVVP_eval_visual.csv", "AVVP_test_pd.csv"])
        lines = target.read_text().splitlines()
        for _ in range(rng.choice((1, 3, 10))):
            index = rng.randrange(len(lines))
            pieces = ["\t", "\n", "", "-1", "11", "Dgo", "\x00", "ÿ", "a,b", "1e9", "\t\t", "nan"]
            line = list(lines[index])
            line.insert(rng.randrange(len(line) + 1), rng.choice(pieces))
            lines[index] = "".join(line)
        target.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
        return annotations

    return build


def _mutated_checkpoint(seed: int) -> Callable[[Sandbox, Path], Path]:
    """A .pt of HAN-like weights, each value replaced at random by a hostile one."""

    def make():
        import torch

        rng = random.Random(seed)
        state = dict(_han_like())
        values = [torch.zeros(3, dtype=torch.complex64), torch.zeros(2, dtype=torch.int8), torch.zeros(0),
                  torch.zeros(1).expand(4, 4), torch.zeros(4, 4).to_sparse(), 3, "x", [1], None,
                  torch.zeros(2, 2).t()]  # fmt: skip
        key = rng.choice([*state, 7, ("a",), ""])
        state[key] = rng.choice(values)
        return state

    return torch_file(make)


MUTATION_TARGETS = {
    "store": [
        ("avvp data export-han", lambda sb, store: [store, "--out", w(sb, "release")]),
        ("avvp-groundtruth stats", lambda sb, store: [store]),
        ("avvp-groundtruth calibrate", lambda sb, store: ["--quantile", "0.5", "--features", store]),
        ("avvp parse", lambda sb, store: ["--run", w(sb, "norun"), "--features", store, "--out", w(sb, "e.json")]),
    ],
    "csv": [
        ("avvp evaluate", lambda sb, ann: ["--pred-audio", sb.corpus / "AVVP_eval_audio.csv",
                                           "--pred-visual", sb.corpus / "AVVP_eval_visual.csv", "--annotations", ann]),
        ("avvp data stats", lambda sb, ann: [ann, "--json"]),
    ],
    "checkpoint": [
        ("avvp-finetune import-han", lambda sb, pt: [pt, "--out", w(sb, "imported")]),
        ("avvp-finetune import-release", lambda sb, pt: [pt, "--model", "base", "--out", w(sb, "imported")]),
    ],
}  # fmt: skip
"""Kind of mutated input -> the commands it is given to, with their arguments."""
MUTATED = {"store": (_mutated_store, "m.h5"), "csv": (_mutated_csv, "ann"), "checkpoint": (_mutated_checkpoint, "W.pt")}


def mutation_cases(count: int, seed: int) -> list[Case]:
    """`count` random cases (`MUTATION_TARGETS`): mutated stores, annotation CSVs and checkpoints. Any outcome
    that keeps the invariants passes (exit 0 or one error line)."""
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        kind = rng.choice(("store", "store", "csv", "checkpoint"))
        command, args = rng.choice(MUTATION_TARGETS[kind])
        mutate, name = MUTATED[kind]
        cases.append(
            Case(command, f"mutated {kind} {index}", with_file(mutate(rng.randrange(1 << 30)), name, args), ())
        )
    return cases


def run_batch(root: Path, cases: list[Case], start: int, stop: int, results: Path) -> None:
    """Run cases [start, stop) in this process, one JSON line each into `results`. A case whose HDF5 read does
    not return is ended by the input layer's deadline: recorded as such, then this process exits (3)."""
    import avvp.inputs

    current = {"index": start}

    def deadline(path):
        record = {"index": current["index"], "command": cases[current["index"]].command, "deadline": str(path)}
        with open(results, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        os._exit(3)

    avvp.inputs.METADATA_SECONDS = 30.0
    avvp.inputs.ON_DEADLINE = deadline
    for index in range(start, stop):
        current["index"] = index
        sb = Sandbox(root / f"case{index:05d}", root / "corpus", root / "run")
        outcome = run_case(cases[index], sb)
        record = {"index": index, "command": cases[index].command, "violations": outcome.violations}
        if outcome.violations:
            record["detail"] = describe(outcome)
        with open(results, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        shutil.rmtree(sb.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=len(CASES), help="how many cases to run (the table first)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mutations")
    parser.add_argument("--batch", type=int, default=250, help="cases per child process")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # ROOT: run --start..--stop there
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    table = CASES[: args.cases]
    cases = table + mutation_cases(max(0, args.cases - len(table)), args.seed)
    if args.child is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        run_batch(args.child, cases, args.start, args.stop, args.child / "results.jsonl")
        return 0
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="avvp-hostile."))
    try:
        return _run_all(root, cases, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_all(root: Path, cases: list[Case], args) -> int:
    """The corpus and the trained run once, then the cases in child processes of `args.batch` cases each."""
    import subprocess

    from avvp.finetune.config import FinetuneConfig
    from avvp.finetune.train import train
    from avvp.synth import synthesize

    started = time.perf_counter()
    synthesize(root / "corpus", preset="tiny", seed=0)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        corpus = root / "corpus"
        cfg = FinetuneConfig.from_preset(
            "tiny",
            model="base",
            features=str(corpus / "llp.h5"),
            annotations=str(corpus),
            out=str(root / "run"),
            epochs=1,
        )
        train(cfg, show_progress=False)
    results = root / "results.jsonl"
    index = 0
    while index < len(cases):
        stop = min(index + args.batch, len(cases))
        command = [sys.executable, "-m", "avvp.benchmarks.hostile", "--cases", str(args.cases), "--seed",
                   str(args.seed), "--child", str(root), "--start", str(index), "--stop", str(stop)]  # fmt: skip
        child = subprocess.run(command, stdin=subprocess.DEVNULL)
        done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
        last = max((record["index"] for record in done), default=index - 1)
        if child.returncode not in (0, 3) and last < stop - 1:  # died during case last + 1, without a word
            with open(results, "a") as handle:
                handle.write(json.dumps({"index": last + 1, "command": cases[last + 1].command,
                                         "violations": [f"the process died ({child.returncode})"]}) + "\n")  # fmt: skip
            last += 1
        index = last + 1 if last >= index else index + 1  # 3: the deadline ended case `last`; go on after it
    records = {record["index"]: record for record in map(json.loads, results.read_text().splitlines())}
    per_command = Counter(record["command"] for record in records.values())
    violations = [record for record in records.values() if record.get("violations")]
    deadlines = [record for record in records.values() if record.get("deadline")]
    for record in violations:
        print(record.get("detail") or f"{record['command']} case {record['index']}: {record['violations']}",
              file=sys.stderr)  # fmt: skip
    seconds = time.perf_counter() - started
    summary = {"cases": len(records), "violations": len(violations), "ended_by_hdf5_deadline": len(deadlines),
               "seconds": round(seconds, 1), "per_command": dict(sorted(per_command.items()))}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(records)} cases in {seconds:.0f} s: {len(violations)} violation(s), {len(deadlines)} ended by "
              "the HDF5 metadata deadline (one error line, exit 1)")  # fmt: skip
        for command, count in sorted(per_command.items()):
            print(f"  {command:<30} {count:>5}")
    return 1 if violations or len(records) != len(cases) else 0


if __name__ == "__main__":
    from avvp.console import run_app

    run_app(lambda: sys.exit(main()))
