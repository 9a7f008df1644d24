"""Reproduce the paper's Table 1 (segment level) and Table 2 (event level): every row, from scratch, cached.

    python -m avvp.benchmarks.tables --preset demo --seeds 3 --out results/          # LLP-sim demo, generated here
    python -m avvp.benchmarks.tables --preset paper --data DIR --annotations DIR --seeds 3 --out results/
    python -m avvp.benchmarks.tables --rows HAN,Base+GCAA --recipes release ...       # a subset, into the same cache
    avvp bench tables ...                                                        # the same command

Each Base-family row without pretraining runs under both training recipes, `avvp-finetune --recipe paper` (the
paper's text) and `--recipe release` (what the paper release's scripts do), as two rows ("Base (paper recipe)",
"Base (release recipe)"); HAN runs once with HAN's recipe and the pretrained rows with the paper's. `--rows`
takes row names, or a family name ("Base+GCAA") for its rows under each of `--recipes`. The paper column shows
the published figures of `benchmarks/paper_tables.json`, transcribed with their source. Beyond the paper, the
"+MA" rows (HAN+MA, Base+Adv+Skip+GCAA+MA) add modality-aware label refinement: the same row's run of each seed
refines the training labels (`avvp-finetune refine`), the parser is trained again on them (`--labels`); the
table shows each +MA row minus the row without MA (seed-paired) and the refined labels' precision and recall
against LLP-sim's training truth.

Every stage runs as its own command line (`avvp data synth`, `avvp-groundtruth build`, `avvp-pretrain`,
`avvp-pretrain export`, `avvp-finetune`; on Linux without GPUs forked from a server that imported them once,
`avvp.benchmarks.stage_server`, AVVP_STAGE_PROCESSES=fresh for a fresh process each), in a folder of `OUT/cache/`
named by a hash of its command (paths inside the cache written relative to it, so a moved or relatively named OUT
keeps its stages) and the contents of the files it reads (the annotation files by name, not the annotation folder,
which in the LLP release's layout also holds the 35,547 feature files; the hash memo `cache/file_hashes.json` is
written once per command): grounding runs once, each (pretraining variant, seed) and its untrained control once
(seed s pretrains the encoder that seed s finetunes, so the control's variation includes pretraining's), each (row,
seed) once, and a rerun, an added seed or an added row redoes only what changed. The key holds no hash of the code:
after a change to what a command computes, use a fresh OUT (or delete the stages concerned). Writes `OUT/tables.md`,
`OUT/tables.json` and `OUT/per_class_f1.png` (the paper's Figure 4: per-class F1 of the best non-pretrained and the
best pretrained row, audio and visual), and the wall times in `OUT/timings.json`.

`--jobs N` runs N stages at a time, each as soon as its inputs exist, on cores/N threads (OMP_NUM_THREADS where it
is set) and, where CUDA devices are visible, its own GPU, round robin; the cache and the tables are those of
`--jobs 1` (byte for byte at the same threads per stage: PyTorch's CPU results depend on the thread count).
`--missing skip` trains and scores on the videos llp.h5 holds, the counts left out per split beside the tables;
by default a gap is an error. A row checks only what its stages read: pretrain.h5 only for the pretrained rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from avvp.annotations import EVAL_FILES, SPLIT_FILES, Split, load_split, read_predictions
from avvp.baselines import REFERENCE_NOTES, reference_predictions
from avvp.benchmarks.stage_server import StageServer, served_script, server_applies, shared_server
from avvp.classes import CLASSES
from avvp.console import run_app
from avvp.errors import AvvpError, ConfigError
from avvp.io import atomic_path
from avvp.metrics import LEVELS, SCORE_NAMES, SCORE_TITLES, evaluate, per_class_f1
from avvp.modality_labels import TRAIN_TRUTH_FILES, read_modality_labels


@dataclass(frozen=True)
class Row:
    """One row of the paper's tables."""

    name: str
    model: str | None
    """Parser variant (avvp.finetune.models.REGISTRY); None for the reference rows."""
    source: str
    """raw (LLP features), frozen (exported pretrained embeddings), e2e (encoder trained with the parser), reference."""
    variant: str | None = None
    """Pretraining variant (uni, cross, multi) for the pretrained rows; the reference prediction's name."""
    recipe: str | None = None
    """`avvp-finetune --recipe` (one of RECIPES); None: no flag, the model's default recipe (HAN's for han)."""
    paper: str | None = None
    """The row of PAPER whose published figures stand beside ours; None where the paper has none."""
    family: str | None = None
    """A name that selects this row in --rows besides its own, shared by one row's recipes ("Base")."""
    control: bool = False
    """A pretrained row's control: the same row on the untrained encoder (`avvp-pretrain init`, same settings)."""
    pretrain_recipe: str | None = None
    """`avvp-pretrain --recipe` of the row's encoder and its control (`release`: the release's architecture and
    recipe); None: the toolkit's."""
    refine_from: str | None = None
    """A "+MA" row: the row whose run of the same seed is the first model; the training labels are refined with
    it (`avvp-finetune refine --seed SEED`) and the parser trained again on them (`--labels`)."""


RECIPES = ("paper", "release")
"""The training recipes a Base-family row without pretraining runs under, one table row each."""


def recipe_rows(family: str, model: str) -> tuple[Row, ...]:
    """A raw Base-family row under each recipe: "Base (paper recipe)", "Base (release recipe)"."""
    return tuple(
        Row(f"{family} ({recipe} recipe)", model, "raw", recipe=recipe, paper=family, family=family)
        for recipe in RECIPES
    )


CONTROL_SUFFIX = " - untrained control"
CONTROL_VARIANT = "multi"
"""The variant the one control encoder per seed is written with (avvp-pretrain's default; any gives its bytes)."""


def with_control(row: Row) -> tuple[Row, Row]:
    """A pretrained row and its control, selected together by the pretrained row's name."""
    control = replace(row, name=row.name + CONTROL_SUFFIX, paper=None, family=row.name, control=True)
    return replace(row, family=row.name), control


def release_architecture_rows(row: Row) -> tuple[Row, Row]:
    """A pretrained row on the release's UNITER, pretrained with its recipe (`avvp-pretrain --recipe release`), and
    its control: "Pretrained (release architecture)", "Pretrain E2E (multi, release architecture)". The end-to-end
    rows finetune as the release's scripts (`release-avg`, `avvp-finetune --recipe release`)."""
    if row.name.endswith(")"):
        name = row.name[:-1] + ", release architecture)"
    else:
        name = row.name + " (release architecture)"
    if row.source == "e2e":
        row = replace(row, model="release-avg", recipe="release")
    return with_control(replace(row, name=name, pretrain_recipe="release"))


BASE_FAMILY = (
    ("Base", "base"),
    ("Base+GCAA", "base-gcaa"),
    ("Base+Adv+Skip", "base-adv-skip"),
    ("Base+Adv+Skip+GCAA", "base-adv-skip-gcaa"),
)
_BY_RECIPE = [recipe_rows(family, model) for family, model in BASE_FAMILY]
ROWS = (
    Row("HAN", "han", "raw", paper="HAN"),
    *(rows[0] for rows in _BY_RECIPE),  # the paper recipe's four rows, then the release recipe's
    *(rows[1] for rows in _BY_RECIPE),
    Row("HAN+MA", "han", "raw", refine_from="HAN"),
    Row(
        "Base+Adv+Skip+GCAA+MA (paper recipe)",
        "base-adv-skip-gcaa",
        "raw",
        recipe="paper",
        refine_from="Base+Adv+Skip+GCAA (paper recipe)",
    ),  # fmt: skip
    *with_control(Row("Pretrained", "base-adv-skip-gcaa", "frozen", "multi", paper="Pretrained (frozen)")),
    *with_control(Row("Pretrain E2E (uni)", "mmil", "e2e", "uni", paper="Pretrain E2E (uni)")),
    *with_control(Row("Pretrain E2E (cross)", "mmil", "e2e", "cross", paper="Pretrain E2E (cross)")),
    *with_control(Row("Pretrain E2E (multi)", "mmil", "e2e", "multi", paper="Pretrain E2E (multi)")),
    *release_architecture_rows(Row("Pretrained", "base-adv-skip-gcaa", "frozen", "multi", paper="Pretrained (frozen)")),
    *release_architecture_rows(Row("Pretrain E2E (uni)", "mmil", "e2e", "uni", paper="Pretrain E2E (uni)")),
    *release_architecture_rows(Row("Pretrain E2E (cross)", "mmil", "e2e", "cross", paper="Pretrain E2E (cross)")),
    *release_architecture_rows(Row("Pretrain E2E (multi)", "mmil", "e2e", "multi", paper="Pretrain E2E (multi)")),
    Row("Weak-label oracle (reference)", None, "reference", "weak-oracle"),
    Row("Predict nothing (reference)", None, "reference", "nothing"),
    Row("Speech everywhere (reference)", None, "reference", "speech-everywhere"),
)
"""Every row, in table order. A new row is one more entry (its stages follow from `source` and `model`)."""
ROW_NAMES = {row.name: row for row in ROWS}

PAPER_TABLES = Path(__file__).with_name("paper_tables.json")
"""The published figures, transcribed from the paper with the table and row of each."""


def load_paper_figures(path: Path = PAPER_TABLES) -> dict[str, dict[str, dict[str, float]]]:
    """{paper row: {level: {score: published figure}}} from `path`."""
    document = json.loads(path.read_text(encoding="utf-8"))
    columns = document["columns"]
    return {
        name: {level: dict(zip(columns, row[level], strict=True)) for level in LEVELS}
        for name, row in document["rows"].items()
    }


PAPER = load_paper_figures()
"""Published figures shown beside ours, by paper row (Row.paper)."""

PRESET_SETTINGS = {
    "tiny": {"synth": "tiny", "grounding": []},
    "demo": {"synth": "demo", "grounding": []},
    "paper": {"synth": "paper", "grounding": []},
}
"""Per preset: the LLP-sim preset generated when no --data is given, and extra `avvp-groundtruth build` options."""


def console_script(name: str) -> str:
    """Path of one of avvp's console scripts, preferring the running interpreter's environment."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AvvpError(f"command {name!r} not found; install avvp (bash scripts/setup.sh)")
    return found


class StageStopped(AvvpError):
    """A stage not started because another one failed (`--jobs`): the other's error is the one to report."""


class StageCache:
    """Runs stages in folders named by a hash of their command and the contents of their inputs.

    Thread-safe: with `jobs` > 1 several threads call `run` at once; at most `jobs` stages run at a time, each
    with `stage_threads(jobs)` CPU threads and, where GPUs are visible, one of them (round robin by slot); a
    stage asked for twice at once runs once, the second caller waiting for it.
    """

    def __init__(self, root: Path, verbose: bool = True, jobs: int = 1):
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs}: need at least one")
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.verbose = verbose
        self.jobs = jobs
        self._hashes_path = root / "file_hashes.json"
        self._hashes: dict[str, str] = json.loads(self._hashes_path.read_text()) if self._hashes_path.exists() else {}
        self._hashes_changed = False
        self.timings: dict[str, float] = {}
        self.status: dict[str, str] = {}
        """Stage name -> "ran" (run by this process) or "cached" (found finished)."""
        self.order: list[str] = []
        """Stage names in the order a sequential run asks for them (`run_tasks` merges each task's in task order)."""
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Event] = {}  # stage folder -> set when its run ends
        self._local = threading.local()
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(jobs):
            self._slots.put(slot)
        self._failed = False
        self._threads = stage_threads(jobs)
        self._gpus = visible_gpus() if jobs > 1 else []
        self._serve = server_applies(self._gpus)
        self._stage_server: StageServer | None = None

    def _server(self, env: dict[str, str]) -> StageServer:
        """The process's stage server (`avvp.benchmarks.stage_server.shared_server`) for the first stage's
        environment: without GPUs every stage of a run gets the same one. One started for this cache logs its own
        errors into .stage-server.log here."""
        with self._lock:
            if self._stage_server is None:
                self._stage_server = shared_server(env, self.root / ".stage-server.log")
            return self._stage_server

    def close(self) -> None:
        """Done with the stage server: it stays for the process's next cache (no stage of this one still runs: `run`
        waits for its stage, and kills it on an error or Ctrl-C)."""
        with self._lock:
            self._stage_server = None

    @property
    def ran(self) -> list[str]:
        return [name for name in dict.fromkeys(self.order) if self.status.get(name) == "ran"]

    @property
    def cached(self) -> list[str]:
        return [name for name in dict.fromkeys(self.order) if self.status.get(name) == "cached"]

    def fingerprint(self, path: Path) -> str:
        """Content hash of a file, or of every file in a folder (names and contents)."""
        path = Path(path)
        if path.is_dir():
            digest = hashlib.sha256()
            for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                digest.update(str(child.relative_to(path)).encode())
                digest.update(self.fingerprint(child).encode())
            return digest.hexdigest()
        if not path.is_file():
            raise AvvpError(f"{path}: stage input not found")
        stat = path.stat()
        # Hashing a multi-GB store takes seconds; a file unchanged in size and modification time keeps its hash.
        memo_key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        with self._lock:
            known = self._hashes.get(memo_key)
        if known is None:
            digest = hashlib.blake2b(digest_size=20)
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            known = digest.hexdigest()
            with self._lock:
                self._hashes[memo_key] = known
                self._hashes_changed = True
        return known

    def save_hashes(self) -> None:
        """Write the hash memo (once per command, not per file: it holds one line per file ever hashed)."""
        with self._lock:
            if not self._hashes_changed:
                return
            with atomic_path(self._hashes_path, overwrite=True) as tmp:
                tmp.write_text(json.dumps(self._hashes, indent=0))
            self._hashes_changed = False

    def _asked(self, name: str) -> None:
        log = getattr(self._local, "log", None)
        (log if log is not None else self.order).append(name)

    def run(self, name: str, argv: list[str], inputs: dict[str, Path]) -> Path:
        """Run `argv` (with '{out}' standing for the stage folder) unless an identical stage already finished."""
        inside = str(self.root)
        recipe = {
            "argv": [Path(argv[0]).name, *(part.replace(inside, "{cache}") for part in argv[1:])],
            "inputs": {key: self.fingerprint(path) for key, path in sorted(inputs.items())},
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        folder = self.root / f"{name}-{key}"
        marker = folder / ".done.json"
        self._asked(name)
        with self._lock:
            running = self._busy.get(folder.name)
            if running is None:
                self._busy[folder.name] = threading.Event()
        if running is not None:  # the same stage, asked for by another row or seed: wait for that run
            running.wait()
            if not marker.exists():
                raise StageStopped(f"stage {name} did not finish")
            return folder
        try:
            if marker.exists():
                with self._lock:
                    self.status.setdefault(name, "cached")
                    self.timings[name] = json.loads(marker.read_text())["seconds"]
                return folder
            return self._execute(name, argv, recipe, folder)
        finally:
            with self._lock:
                self._busy.pop(folder.name).set()

    def _execute(self, name: str, argv: list[str], recipe: dict, folder: Path) -> Path:
        slot = self._slots.get()  # at most `jobs` stages at a time
        try:
            if self._failed:
                raise StageStopped(f"stage {name} not started: another stage failed")
            if folder.exists():
                shutil.rmtree(folder)  # an interrupted earlier attempt
            folder.mkdir(parents=True)
            command = [part.replace("{out}", str(folder)) for part in argv]
            env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
            where = ""
            if self.jobs > 1:  # each stage its share of the cores, and its own GPU where there are some
                env.update(OMP_NUM_THREADS=str(self._threads), MKL_NUM_THREADS=str(self._threads))
                where = f" ({self._threads} thread(s)"
                if self._gpus:
                    env["CUDA_VISIBLE_DEVICES"] = self._gpus[slot % len(self._gpus)]
                    where += f", GPU {env['CUDA_VISIBLE_DEVICES']}"
                where += ")"
            if self.verbose:
                shown = " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))
                print(f"[run]    {name}{where}: {shown}", flush=True)
            start = time.perf_counter()
            log_path = folder / ".log"
            if self._serve and served_script(command) is not None:  # forked from a process that imported avvp
                returncode = self._server(env).run(command, log_path)
            else:
                with open(log_path, "w") as log:
                    returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            seconds = time.perf_counter() - start
            if returncode != 0:
                self._failed = True
                tail = log_path.read_text().strip().splitlines()[-15:]
                raise AvvpError(f"stage {name} failed (exit {returncode}); log {log_path}:\n" + "\n".join(tail))
            (folder / ".done.json").write_text(json.dumps({"recipe": recipe, "seconds": seconds}, indent=2))
            with self._lock:
                self.timings[name] = seconds
                self.status[name] = "ran"
            if self.verbose:
                print(f"[done]   {name} in {seconds:.0f} s", flush=True)
            return folder
        except BaseException:
            self._failed = True
            raise
        finally:
            self._slots.put(slot)


T = TypeVar("T")


def run_tasks(cache: StageCache, tasks: list[Callable[[], T]]) -> list[T]:
    """Call each task (a row's seed: its stages in turn, through `cache`), `cache.jobs` stages at a time.

    Results come in task order, and the cache's stage order is the one a sequential run gives, whatever order the
    stages finished in. With one job the tasks run one after another in this thread. On a failure no new stage
    starts, the running ones finish, and the first real error is raised.
    """
    if cache.jobs == 1:
        return [task() for task in tasks]

    def logged(task: Callable[[], T]) -> tuple[T, list[str]]:
        cache._local.log = []
        try:
            return task(), cache._local.log
        finally:
            cache._local.log = None

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:  # threads wait; the cache's slots bound the stages
        futures = [pool.submit(logged, task) for task in tasks]
        wait(futures)
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, StageStopped)), errors[0])
    results = []
    for future in futures:
        result, log = future.result()
        cache.order.extend(log)
        results.append(result)
    return results


def stage_threads(jobs: int) -> int:
    """CPU threads per stage under `--jobs`: OMP_NUM_THREADS where it is set (every stage keeps it: PyTorch's CPU
    arithmetic depends on the thread count, so the same count gives the bytes of `--jobs 1`), else cores / jobs."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, available_cores() // jobs)


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices a stage may be given (CUDA_VISIBLE_DEVICES entries, or indices); none without CUDA."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # no torch build with CUDA: CPU stages
        return []
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def prepare_data(
    cache: StageCache, preset: str, data: Path | None, annotations: Path | None, pretraining: list[str] | None = None
) -> tuple[Path, Path]:
    """The folder with llp.h5 (and pretrain.h5 where `pretraining` names rows that read it), and the annotation
    folder (LLP-sim generated when no data is given)."""
    if data is None:
        folder = cache.run(
            "data",
            [
                console_script("avvp"),
                "data",
                "synth",
                "--preset",
                PRESET_SETTINGS[preset]["synth"],
                "--seed",
                "0",
                "--out",
                "{out}/llp-sim",
                "--overwrite",
            ],
            {},
        )
        data = folder / "llp-sim"
    if not (data / "llp.h5").is_file():
        raise AvvpError(f"{data}: no llp.h5; expected a folder with the LLP feature store (avvp data import-han)")
    if pretraining and not (data / "pretrain.h5").is_file():
        raise AvvpError(
            f"{data}: no pretrain.h5, the pretraining corpus that row(s) {', '.join(pretraining)} read "
            "(avvp data import-han); the rows without pretraining (HAN, Base, ..., the references) need only llp.h5"
        )
    return data, annotations or data


FINETUNE_READS = (*SPLIT_FILES.values(), *EVAL_FILES.values())
"""The annotation files `avvp-finetune` reads (weak labels of the three splits, the val/test events)."""


def annotation_inputs(annotations: Path, names: tuple[str, ...] = FINETUNE_READS) -> dict[str, Path]:
    """The annotation files a stage reads, as inputs of its cache key: not the folder, which may hold anything
    else (the LLP release keeps its 35,547 feature files in `data/feats/`, beside the annotation files)."""
    return {f"annotations/{name}": Path(annotations) / name for name in names}


MISSING = ("error", "skip")
"""`--missing`: a video of the annotations absent from the feature store stops the tables, or is left out."""


def left_out_videos(llp: Path, annotations: Path, missing: str) -> dict[str, dict[str, int]]:
    """Per split, its videos and those not in the store (by filename or YouTube id); with `missing` "error", a
    gap is a one-line error naming the option."""
    from avvp.store import read_video_ids
    from avvp.video_ids import match_videos, shown

    stored = read_video_ids(llp)
    counts = {}
    for split, filename in SPLIT_FILES.items():
        videos = load_split(annotations, split, dense=False).video_ids
        absent = match_videos(stored, videos).missing
        if absent and missing == "error":
            raise AvvpError(
                f"{llp}: {len(absent)} of the {len(videos)} videos of {Path(annotations) / filename} are not in the "
                f"store ({shown(absent)}); pass --missing skip to train and score on the videos present"
            )
        counts[split] = {"videos": len(videos), "left_out": len(absent)}
    return counts


def run_tables(
    preset: str,
    seeds: int,
    out: Path,
    data: Path | None = None,
    annotations: Path | None = None,
    rows: list[str] | None = None,
    verbose: bool = True,
    recipes: list[str] | None = None,
    epochs: int | None = None,
    pretrain_epochs: int | None = None,
    jobs: int = 1,
    missing: str = "error",
) -> dict:
    """Run (or fetch from the cache) every stage the chosen rows need, then score and write the tables.

    `epochs`: finetuning epochs of every row (`avvp-finetune --epochs`); None: the preset's schedule.
    `pretrain_epochs`: pretraining epochs of every encoder (`avvp-pretrain --epochs`); None: the preset's or the
    pretraining recipe's. `jobs`: stages run at a time (`StageCache`); the outputs are those of one at a time.
    `missing`: "skip" trains and scores on the videos the store holds (`avvp-finetune --missing skip`), the counts
    left out in the tables."""
    if preset not in PRESET_SETTINGS:
        raise ConfigError(f"--preset {preset!r}; choose one of {', '.join(PRESET_SETTINGS)}")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least one seed")
    if missing not in MISSING:
        raise ConfigError(f"--missing {missing!r}: expected one of {', '.join(MISSING)}")
    chosen = select_rows(rows, recipes)
    started = time.perf_counter()
    cache = StageCache(out / "cache", verbose=verbose, jobs=jobs)
    try:
        pretraining = [row.name for row in chosen if row.source in ("frozen", "e2e")]
        data, annotations = prepare_data(cache, preset, data, annotations, pretraining)
        report, test = _tables(cache, chosen, preset, seeds, data, annotations, epochs, missing, pretrain_epochs)
    finally:
        cache.save_hashes()
        cache.close()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "tables.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    markdown = format_tables(report)
    with atomic_path(out / "tables.md", overwrite=True) as tmp:
        tmp.write_text(markdown)
    figure = plot_per_class(report["rows"], test, out / "per_class_f1.png")
    timings = {"jobs": jobs, "stage_seconds": cache.timings, "seconds": time.perf_counter() - started}
    with atomic_path(out / "timings.json", overwrite=True) as tmp:  # apart: tables.json is the same at any --jobs
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True))
    report = {**report, "figure": str(figure) if figure else None, **timings}
    if verbose:
        print(markdown)
        print(f"wrote {out / 'tables.md'}, {out / 'tables.json'}" + (f", {figure}" if figure else ""))
        print(f"{len(cache.ran)} stage(s) run, {len(cache.cached)} from the cache; {report['seconds']:.0f} s")
    return report


def _tables(
    cache: StageCache,
    chosen: list[Row],
    preset: str,
    seeds: int,
    data: Path,
    annotations: Path,
    epochs: int | None,
    missing: str,
    pretrain_epochs: int | None = None,
) -> tuple[dict, Split]:
    """Every stage of the chosen rows (`cache.jobs` at a time): the report (tables.json) and the test split scored
    (its videos in the store)."""
    llp, corpus = data / "llp.h5", data / "pretrain.h5"
    splits = left_out_videos(llp, annotations, missing)
    test = load_split(annotations, "test")
    if splits["test"]["left_out"]:  # the references score the videos the runs score
        present = set(match_videos_in(llp, test.video_ids))
        keep = [i for i, video in enumerate(test.video_ids) if video in present]
        test = test.take(keep)

    def row_seed(row: Row, seed: int) -> tuple[Path, dict, dict | None]:
        """One (row, seed): its pretraining stages (each once, whichever row asks first), then its finetuning."""
        features, encoder = llp, None
        if row.source in ("frozen", "e2e"):
            labels = grounding_stage(cache, corpus, preset)
            encoder_args = ("--recipe", row.pretrain_recipe) if row.pretrain_recipe else ()
            pretrain_args = ("--epochs", str(pretrain_epochs)) if pretrain_epochs else ()
            encoder = encoder_stage(cache, corpus, labels, preset, seed, row.variant, row.control, encoder_args,
                                    pretrain_args)  # fmt: skip
            if row.source == "frozen":
                features, encoder = export_stage(cache, row, seed, encoder, llp), None
        argv, inputs = finetune_stage(row, features, annotations, preset, seed, encoder, epochs, missing)
        report = None
        if row.refine_from is not None:
            labels = refine_stage(cache, ROW_NAMES[row.refine_from], llp, annotations, preset, seed, epochs, missing)
            argv, inputs = argv + ["--labels", str(labels)], {**inputs, "labels": labels}
            report = read_modality_labels(labels).attrs["report"]
        run_dir = cache.run(f"finetune-{stage_slug(row)}-seed{seed}", argv, inputs) / "run"
        return run_dir, json.loads((run_dir / "metrics.json").read_text())["test"], report

    trained = [(row, seed) for row in chosen if row.source != "reference" for seed in range(seeds)]
    done = dict(zip(trained, run_tasks(cache, [partial(row_seed, row, seed) for row, seed in trained]), strict=True))
    results: dict[str, dict] = {}
    label_reports: dict[str, list[dict]] = {}  # +MA row -> the refinement report of each seed
    for row in chosen:
        if row.source == "reference":
            scores = [evaluate(reference_predictions(test, row.variant), test.dense)]
            results[row.name] = summarise(row, scores, runs=[])
            continue
        outcomes = [done[row, seed] for seed in range(seeds)]
        results[row.name] = summarise(row, [scores for _, scores, _ in outcomes], [run for run, _, _ in outcomes])
        if row.refine_from is not None:
            label_reports[row.name] = [report for _, _, report in outcomes]
    for name, result in results.items():
        if name + CONTROL_SUFFIX in results:
            result["minus_control"] = minus_control(result, results[name + CONTROL_SUFFIX])
        if name in label_reports:
            result["labels"] = summarise_labels(label_reports[name])
            without = ROW_NAMES[name].refine_from
            if without in results:
                result["minus_without_ma"] = minus_control(result, results[without])
    report = {
        "preset": preset,
        "data": str(data),
        "annotations": str(annotations),
        "llp_sim": is_llp_sim(llp),
        "seeds": seeds,
        "epochs": epochs,
        "missing": missing,
        "splits": splits,
        "rows": results,
        "stages_run": cache.ran,
        "stages_cached": cache.cached,
    }
    return report, test


def match_videos_in(store: Path, filenames: list[str]) -> list[str]:
    """The filenames whose video the store holds (by filename or YouTube id), in their order."""
    from avvp.store import read_video_ids
    from avvp.video_ids import match_videos

    match = match_videos(read_video_ids(store), filenames)
    return [filename for filename in filenames if filename in match.names]


def split_row_names(text: str) -> list[str]:
    """`--rows` split at its commas, except those inside parentheses ("Pretrain E2E (uni, release architecture)")."""
    names, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth <= 0:
            names.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    names.append("".join(current).strip())
    return [name for name in names if name]


def select_rows(names: list[str] | None, recipes: list[str] | None = None) -> list[Row]:
    """The rows `names` ask for, in table order: each a row name or a family name (its rows under `recipes`).

    `recipes` (default: all of RECIPES) also filters the rows chosen by default; rows with one recipe of their
    own (HAN, pretrained, reference) are kept whatever it says.
    """
    recipes = list(RECIPES) if recipes is None else recipes
    wrong = [recipe for recipe in recipes if recipe not in RECIPES]
    if wrong or not recipes:
        raise ConfigError(f"--recipes {','.join(recipes)}: expected one or more of {', '.join(RECIPES)}")
    families = {row.family for row in ROWS if row.family}
    unknown = [name for name in names or [] if name not in ROW_NAMES and name not in families]
    if unknown:
        raise ConfigError(
            f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROW_NAMES)} "
            f"(or a family for its recipes: {', '.join(sorted(families))})"
        )

    def wanted(row: Row) -> bool:
        if names and row.name not in names and row.family not in names:
            return False
        own_recipe = row.recipe is None or row.pretrain_recipe is not None  # one recipe of its own
        return own_recipe or row.recipe in recipes or row.name in (names or [])

    chosen = [row for row in ROWS if wanted(row)]
    if not chosen:
        raise ConfigError(f"--rows {','.join(names or [])} --recipes {','.join(recipes)}: no row left to run")
    return chosen


def finetune_stage(
    row: Row,
    features: Path,
    annotations: Path,
    preset: str,
    seed: int,
    encoder: Path | None = None,
    epochs: int | None = None,
    missing: str = "error",
) -> tuple[list[str], dict[str, Path]]:
    """The `avvp-finetune` command of one (row, seed) and the input files its cache key hashes."""
    argv = [
        console_script("avvp-finetune"),
        "--model",
        row.model,
        "--features",
        str(features),
        "--annotations",
        str(annotations),
        "--out",
        "{out}/run",
        "--preset",
        preset,
        "--seed",
        str(seed),
    ]
    if row.recipe is not None:
        argv += ["--recipe", row.recipe]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    if missing != "error":
        argv += ["--missing", missing]
    inputs = {"features": features, **annotation_inputs(annotations)}
    if encoder is not None:
        argv += ["--e2e", "--encoder", str(encoder)]
        inputs["encoder"] = encoder
    return argv, inputs


def grounding_stage(cache: StageCache, corpus: Path, preset: str) -> Path:
    """The grounding labels of the pretraining corpus (`avvp-groundtruth build`, the preset's options): avg.h5."""
    argv = [console_script("avvp-groundtruth"), "build", "--features", str(corpus), "--out", "{out}/avg.h5"]
    argv += ["--quiet", *PRESET_SETTINGS[preset]["grounding"]]
    return cache.run("grounding", argv, {"features": corpus}) / "avg.h5"


def encoder_stage(
    cache: StageCache,
    corpus: Path,
    labels: Path,
    preset: str,
    seed: int,
    variant: str,
    control: bool = False,
    encoder_args: tuple[str, ...] = (),
    pretrain_args: tuple[str, ...] = (),
) -> Path:
    """The encoder folder of `avvp-pretrain` (variant, seed), or with `control` its untrained control.

    The control is `avvp-pretrain init` with the same settings and seed: the pretraining run's step-0 weights and
    input standardisation. The variant picks the loss, not the starting weights, so one control per seed serves
    every variant (written with the default variant; `tests/test_pretrain_train.py` checks the bytes agree).
    `encoder_args` (architecture) go to both; `pretrain_args` to the pretraining run only.
    """
    if control:
        variant = CONTROL_VARIANT
    shared = ["--variant", variant, "--features", str(corpus), "--preset", preset, "--seed", str(seed), *encoder_args]
    if control:
        argv = [console_script("avvp-pretrain"), "init", *shared, "--out", "{out}/encoder"]
        return cache.run(f"control-{variant}-seed{seed}", argv, {"features": corpus}) / "encoder"
    argv = [console_script("avvp-pretrain"), *shared, *pretrain_args, "--labels", str(labels), "--out", "{out}/encoder"]
    return cache.run(f"pretrain-{variant}-seed{seed}", argv, {"features": corpus, "labels": labels}) / "encoder"


def export_stage(cache: StageCache, row: Row, seed: int, encoder: Path, llp: Path) -> Path:
    """The LLP features embedded by `encoder`, the frozen `row`'s encoder of `seed` (`avvp-pretrain export`): the
    frozen row's input store."""
    name = f"export-{row.variant}{'-control' if row.control else ''}-seed{seed}"
    argv = [console_script("avvp-pretrain"), "export", "--encoder", str(encoder), "--features", str(llp)]
    return cache.run(name, [*argv, "--out", "{out}/llp-pre.h5"], {"encoder": encoder, "features": llp}) / "llp-pre.h5"


def refine_stage(
    cache: StageCache,
    first: Row,
    llp: Path,
    annotations: Path,
    preset: str,
    seed: int,
    epochs: int | None = None,
    missing: str = "error",
) -> Path:
    """The label file of an MA row: `first`'s run of this seed (its own cached stage) refines the training labels."""
    argv, inputs = finetune_stage(first, llp, annotations, preset, seed, epochs=epochs, missing=missing)
    run = cache.run(f"finetune-{slug(first.name)}-seed{seed}", argv, inputs) / "run"
    command = [console_script("avvp-finetune"), "refine", "--run", str(run), "--features", str(llp)]
    command += ["--annotations", str(annotations), "--out", "{out}/labels.h5", "--seed", str(seed)]
    if missing != "error":
        command += ["--missing", missing]
    truth = tuple(name for name in TRAIN_TRUTH_FILES.values() if (Path(annotations) / name).is_file())
    inputs = {**inputs, **annotation_inputs(annotations, truth)}  # LLP-sim's training truth, read where present
    folder = cache.run(f"refine-{slug(first.name)}-seed{seed}", command, {"run": run, **inputs})
    return folder / "labels.h5"


def over_seeds(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof 1; 0 for one seed) over seeds, and the values: every "mean ± std" of
    the benchmarks (tables and label curve) is this one."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "seeds": [float(v) for v in values]}


def summarise_labels(reports: list[dict]) -> dict:
    """Per modality and label set (weak, refined): precision and recall against LLP-sim's truth, mean and std
    over seeds; {"truth": False} when the annotations have no training truth (real LLP)."""
    if not all(report["truth"] for report in reports):
        return {"truth": False}
    summary: dict = {"truth": True}
    for modality in ("audio", "visual"):
        for kind in ("weak", "refined"):
            for measure in ("precision", "recall"):
                seeds = [report[modality][kind][measure] for report in reports]
                summary[f"{modality}_{kind}_{measure}"] = over_seeds(seeds)
    return summary


def stage_slug(row: Row) -> str:
    """The name of a row's finetuning stages: its own, but every variant's E2E control is one run per seed (the same
    control encoder, the same command)."""
    if row.control and row.source == "e2e":
        row = next(r for r in ROWS if r.control and r.source == "e2e" and r.variant == CONTROL_VARIANT
                   and r.pretrain_recipe == row.pretrain_recipe)  # fmt: skip
    return slug(row.name)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def is_llp_sim(store: Path) -> bool:
    from avvp.store import store_info

    return "llp-sim" in str(store_info(store)["attrs"].get("source", "")).lower()


def summarise(row: Row, scores: list[dict], runs: list[Path]) -> dict:
    """Mean and standard deviation over seeds of the ten numbers."""
    summary: dict = {
        "model": row.model,
        "source": row.source,
        "variant": row.variant,
        "recipe": row.recipe,
        "paper": row.paper,
        "runs": [str(r) for r in runs],
    }
    for level in LEVELS:
        values = np.array([[s[level][name] for name in SCORE_NAMES] for s in scores])  # (seeds, 5)
        summary[level] = {name: over_seeds(values[:, i].tolist()) for i, name in enumerate(SCORE_NAMES)}
    return summary


def minus_control(pretrained: dict, control: dict) -> dict:
    """Per level and score: the seed-paired difference pretrained - control, mean and std over seeds."""
    difference: dict = {}
    for level in LEVELS:
        difference[level] = {}
        for name in SCORE_NAMES:
            seeds = np.subtract(pretrained[level][name]["seeds"], control[level][name]["seeds"])
            difference[level][name] = over_seeds(seeds.tolist())
    return difference


def format_tables(report: dict) -> str:
    """Both tables in the paper's layout: ours as mean ± std over seeds, the paper's figure in brackets."""
    origin = "LLP-sim (synthetic stand-in for LLP)" if report["llp_sim"] else "real LLP features"
    lines = [
        f"Data: **{origin}**, preset `{report['preset']}`"
        + (f", {report['epochs']} finetuning epochs" if report.get("epochs") else "")
        + f", {report['seeds']} seed(s); test split. "
        "Cells: F1 in %, higher is better; ours, mean ± std over seeds [the paper's figure on real LLP; — where it "
        "has none].",
        "",
    ]
    gaps = {split: c for split, c in report.get("splits", {}).items() if c["left_out"]}
    if gaps:
        counts = "; ".join(
            f"{split} {c['videos'] - c['left_out']:,} of {c['videos']:,} ({c['left_out']:,} left out)"
            for split, c in gaps.items()
        )
        lines[0] += f" **Videos not in the feature store, left out (--missing skip)**: {counts}."
    for number, level in ((1, "segment"), (2, "event")):
        lines += [f"**Table {number}: {level}-level F1**", ""]
        lines.append("| Method | " + " | ".join(SCORE_TITLES[name] for name in SCORE_NAMES) + " |")
        lines.append("|---|" + "---|" * len(SCORE_NAMES))
        for name, result in report["rows"].items():
            paper = PAPER.get(result.get("paper") or "", {}).get(level, {})
            cells = []
            for score in SCORE_NAMES:
                figure = result[level][score]
                ours = f"{figure['mean']:.1f}" + (f" ± {figure['std']:.1f}" if len(figure["seeds"]) > 1 else "")
                cells.append(f"{ours} [{paper[score]:.1f}]" if score in paper else f"{ours} [—]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            if "minus_control" in result:  # the pretraining effect: the row minus its untrained control
                figures = [result["minus_control"][level][score] for score in SCORE_NAMES]
                cells = [f"{f['mean']:+.1f}" + (f" ± {f['std']:.1f}" if len(f["seeds"]) > 1 else "") for f in figures]
                lines.append(f"| *{name} minus its control* | " + " | ".join(cells) + " |")
            if "minus_without_ma" in result:  # the MA effect: the row minus the same row without MA, seed-paired
                figures = [result["minus_without_ma"][level][score] for score in SCORE_NAMES]
                cells = [f"{f['mean']:+.1f}" + (f" ± {f['std']:.1f}" if len(f["seeds"]) > 1 else "") for f in figures]
                lines.append(f"| *{name} minus {ROW_NAMES[name].refine_from}* | " + " | ".join(cells) + " |")
        lines.append("")
    references = [
        ROW_NAMES[name] for name in report["rows"] if name in ROW_NAMES and ROW_NAMES[name].source == "reference"
    ]
    lines += [f"- {row.name}: {REFERENCE_NOTES[row.variant]}" for row in references]
    lines += [""] if references else []
    refined = {
        name: result["labels"] for name, result in report["rows"].items() if result.get("labels", {}).get("truth")
    }
    if refined:
        lines += [
            "**MA labels**: precision / recall (%) of the training split's audio and visual labels against LLP-sim's "
            "truth (classes heard, seen), weak and refined, mean ± std over seeds",
            "",
            "| Method | audio P weak | audio P refined | audio R refined | visual P weak | visual P refined "
            "| visual R refined |",
            "|---|---|---|---|---|---|---|",
        ]
        columns = [
            f"{m}_{k}" for m in ("audio", "visual") for k in ("weak_precision", "refined_precision", "refined_recall")
        ]
        for name, labels in refined.items():
            cells = [f"{labels[c]['mean']:.1f} ± {labels[c]['std']:.1f}" for c in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_per_class(results: dict, test, path: Path) -> Path | None:
    """Per-class segment-level F1 (audio and visual) of the best non-pretrained and best pretrained rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def best(sources: tuple[str, ...]) -> str | None:
        candidates = [n for n, r in results.items() if r["source"] in sources and r["runs"]]
        return max(candidates, key=lambda n: results[n]["segment"]["type_av"]["mean"], default=None)

    chosen = [name for name in (best(("raw",)), best(("frozen", "e2e"))) if name is not None]
    if not chosen:
        return None
    per_class = {}
    for name in chosen:
        figures = []
        for run in results[name]["runs"]:
            pred = read_predictions(Path(run) / "pred_audio.csv", Path(run) / "pred_visual.csv", test.video_ids)
            figures.append(per_class_f1(pred, test.dense))
        with warnings.catch_warnings():  # a class absent from the test split stays NaN (drawn as no bar)
            warnings.simplefilter("ignore", RuntimeWarning)
            per_class[name] = {m: 100 * np.nanmean([f[m] for f in figures], axis=0) for m in ("audio", "visual")}
    fig, axes = plt.subplots(2, 1, figsize=(14, 8), sharex=True)
    x = np.arange(len(CLASSES))
    width = 0.8 / len(chosen)
    for ax, modality in zip(axes, ("audio", "visual"), strict=True):
        for i, name in enumerate(chosen):
            ax.bar(x + (i - (len(chosen) - 1) / 2) * width, np.nan_to_num(per_class[name][modality]), width, label=name)
        ax.set_ylabel(f"{modality} F1 (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"Segment-level {modality} F1 per class (test split)")
    axes[0].legend(loc="upper right")
    axes[1].set_xticks(x, [c.replace("_", " ") for c in CLASSES], rotation=60, ha="right")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m avvp.benchmarks.tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="demo", help="tiny, demo or paper (stage sizes and schedules)")
    parser.add_argument("--data", type=Path, help="folder with llp.h5 and pretrain.h5 (default: generate LLP-sim)")
    parser.add_argument("--annotations", type=Path, help="LLP annotation folder (default: the --data folder)")
    parser.add_argument("--seeds", type=int, default=3, help="finetuning seeds per row")
    parser.add_argument("--epochs", type=int, help="finetuning epochs of every row (default: the preset's schedule)")
    parser.add_argument("--pretrain-epochs", type=int, help="pretraining epochs of every encoder (default: preset's)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (and its cache/)")
    parser.add_argument(
        "--rows", help="comma-separated row names, or family names for a row under each recipe (default: all)"
    )
    parser.add_argument(
        "--recipes",
        default=",".join(RECIPES),
        help="comma-separated recipes the Base-family rows without pretraining run under (default: %(default)s)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="stages run at once, each on cores/JOBS threads (and its own GPU, round robin, where there are some); "
        "the outputs are those of --jobs 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--missing",
        default="error",
        choices=MISSING,
        help="a video of the annotations absent from llp.h5: error (default), or skip (train and score on the "
        "videos present; the tables say how many were left out per split)",
    )
    args = parser.parse_args(argv)
    rows = split_row_names(args.rows) if args.rows else None
    recipes = [name.strip() for name in args.recipes.split(",") if name.strip()]
    try:
        run_tables(args.preset, args.seeds, args.out, args.data, args.annotations, rows, recipes=recipes,
                   epochs=args.epochs, pretrain_epochs=args.pretrain_epochs, jobs=args.jobs,
                   missing=args.missing)  # fmt: skip
    except AvvpError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_app(main)
