"""Reproduce the paper's Table 1 (segment level) and Table 2 (event level): every row, from scratch, cached.

    python -m benchmarks.tables --preset demo --seeds 3 --out results/          # LLP-sim demo, generated here
    python -m benchmarks.tables --preset paper --data DIR --annotations DIR --seeds 3 --out results/
    python -m benchmarks.tables --rows HAN,Base+GCAA --recipes release ...       # a subset, into the same cache
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
`avvp-pretrain export`, `avvp-finetune`), in a folder of `OUT/cache/` named by a hash of its command (paths
inside the cache written relative to it, so a moved or relatively named OUT keeps its stages) and the contents of
its input files: grounding runs once, each (pretraining variant, seed) and its untrained control once (seed s
pretrains the encoder that seed s finetunes, so the control's variation includes pretraining's), each (row, seed)
once, and a rerun, an added seed or an added row redoes only what changed. The key holds no hash of the code:
after a change to what a command computes, use a fresh OUT (or delete the stages concerned). Writes
`OUT/tables.md`, `OUT/tables.json` and `OUT/per_class_f1.png` (the paper's Figure 4: per-class F1 of the best
non-pretrained and the best pretrained row, audio and visual).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from avvp.annotations import load_split, read_predictions
from avvp.baselines import REFERENCE_NOTES, reference_predictions
from avvp.classes import CLASSES
from avvp.errors import AvvpError, ConfigError
from avvp.io import atomic_path
from avvp.metrics import LEVELS, SCORE_NAMES, SCORE_TITLES, evaluate, per_class_f1
from avvp.modality_labels import read_modality_labels


@dataclass(frozen=True)
class Row:
    """One row of the paper's tables."""

    name: str
    model: str | None
    """Parser variant (finetune.models.REGISTRY); None for the reference rows."""
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
    control = Row(row.name + CONTROL_SUFFIX, row.model, row.source, row.variant, family=row.name, control=True)
    return replace(row, family=row.name), control


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


class StageCache:
    """Runs stages in folders named by a hash of their command and the contents of their inputs."""

    def __init__(self, root: Path, verbose: bool = True):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.verbose = verbose
        self._hashes_path = root / "file_hashes.json"
        self._hashes: dict[str, str] = json.loads(self._hashes_path.read_text()) if self._hashes_path.exists() else {}
        self.timings: dict[str, float] = {}
        self.cached: list[str] = []
        self.ran: list[str] = []

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
        if memo_key not in self._hashes:
            digest = hashlib.blake2b(digest_size=20)
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            self._hashes[memo_key] = digest.hexdigest()
            with atomic_path(self._hashes_path, overwrite=True) as tmp:
                tmp.write_text(json.dumps(self._hashes, indent=0))
        return self._hashes[memo_key]

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
        if marker.exists():
            self.cached.append(name)
            self.timings[name] = json.loads(marker.read_text())["seconds"]
            return folder
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted earlier attempt
        folder.mkdir(parents=True)
        command = [part.replace("{out}", str(folder)) for part in argv]
        if self.verbose:
            print(
                f"[run]    {name}: {' '.join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))}",
                flush=True,
            )
        start = time.perf_counter()
        log_path = folder / ".log"
        with open(log_path, "w") as log:
            env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            tail = log_path.read_text().strip().splitlines()[-15:]
            raise AvvpError(f"stage {name} failed (exit {result.returncode}); log {log_path}:\n" + "\n".join(tail))
        marker.write_text(json.dumps({"recipe": recipe, "seconds": seconds}, indent=2))
        self.timings[name] = seconds
        self.ran.append(name)
        if self.verbose:
            print(f"[done]   {name} in {seconds:.0f} s", flush=True)
        return folder


def prepare_data(cache: StageCache, preset: str, data: Path | None, annotations: Path | None) -> tuple[Path, Path]:
    """The folder with llp.h5 and pretrain.h5, and the annotation folder (LLP-sim generated when no data is given)."""
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
    for name in ("llp.h5", "pretrain.h5"):
        if not (data / name).is_file():
            raise AvvpError(f"{data}: no {name}; expected a folder with llp.h5 and pretrain.h5 (avvp data import-han)")
    return data, annotations or data


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
) -> dict:
    """Run (or fetch from the cache) every stage the chosen rows need, then score and write the tables.

    `epochs`: finetuning epochs of every row (`avvp-finetune --epochs`); None: the preset's schedule."""
    if preset not in PRESET_SETTINGS:
        raise ConfigError(f"--preset {preset!r}; choose one of {', '.join(PRESET_SETTINGS)}")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least one seed")
    chosen = select_rows(rows, recipes)
    started = time.perf_counter()
    cache = StageCache(out / "cache", verbose=verbose)
    data, annotations = prepare_data(cache, preset, data, annotations)
    llp, corpus = data / "llp.h5", data / "pretrain.h5"

    encoders: dict[tuple[str, bool, int], Path] = {}  # (variant, control, seed) -> encoder folder
    exported: dict[tuple[str, bool, int], Path] = {}
    if any(row.source in ("frozen", "e2e") for row in chosen):
        labels = grounding_stage(cache, corpus, preset)
        for row in chosen:
            if row.source not in ("frozen", "e2e"):
                continue
            for seed in range(seeds):  # each seed pretrains its own encoder: the control varies with it
                key = (row.variant, row.control, seed)
                if key not in encoders:
                    encoders[key] = encoder_stage(cache, corpus, labels, preset, seed, row.variant, row.control)
                if row.source == "frozen" and key not in exported:
                    exported[key] = export_stage(cache, row, seed, encoders[key], llp)

    test = load_split(annotations, "test")
    results: dict[str, dict] = {}
    label_reports: dict[str, list[dict]] = {}  # +MA row -> the refinement report of each seed
    for row in chosen:
        if row.source == "reference":
            scores = [evaluate(reference_predictions(test, row.variant), test.dense)]
            results[row.name] = summarise(row, scores, runs=[])
            continue
        runs, scores = [], []
        for seed in range(seeds):
            features = exported[row.variant, row.control, seed] if row.source == "frozen" else llp
            encoder = encoders[row.variant, row.control, seed] if row.source == "e2e" else None
            argv, inputs = finetune_stage(row, features, annotations, preset, seed, encoder, epochs)
            if row.refine_from is not None:
                labels = refine_stage(cache, ROW_NAMES[row.refine_from], llp, annotations, preset, seed, epochs)
                argv, inputs = argv + ["--labels", str(labels)], {**inputs, "labels": labels}
                label_reports.setdefault(row.name, []).append(read_modality_labels(labels).attrs["report"])
            stage = f"finetune-{stage_slug(row)}-seed{seed}"
            run_dir = cache.run(stage, argv, inputs) / "run"
            runs.append(run_dir)
            scores.append(json.loads((run_dir / "metrics.json").read_text())["test"])
        results[row.name] = summarise(row, scores, runs)
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
        "rows": results,
        "stages_run": cache.ran,
        "stages_cached": cache.cached,
        "stage_seconds": cache.timings,
        "seconds": time.perf_counter() - started,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "tables.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    markdown = format_tables(report)
    with atomic_path(out / "tables.md", overwrite=True) as tmp:
        tmp.write_text(markdown)
    figure = plot_per_class(results, test, out / "per_class_f1.png")
    report["figure"] = str(figure) if figure else None
    if verbose:
        print(markdown)
        print(f"wrote {out / 'tables.md'}, {out / 'tables.json'}" + (f", {figure}" if figure else ""))
        print(f"{len(cache.ran)} stage(s) run, {len(cache.cached)} from the cache; {report['seconds']:.0f} s")
    return report


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
        return row.recipe is None or row.recipe in recipes or row.name in (names or [])

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
    inputs = {"features": features, "annotations": annotations}
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
    cache: StageCache, first: Row, llp: Path, annotations: Path, preset: str, seed: int, epochs: int | None = None
) -> Path:
    """The label file of an MA row: `first`'s run of this seed (its own cached stage) refines the training labels."""
    argv, inputs = finetune_stage(first, llp, annotations, preset, seed, epochs=epochs)
    run = cache.run(f"finetune-{slug(first.name)}-seed{seed}", argv, inputs) / "run"
    command = [console_script("avvp-finetune"), "refine", "--run", str(run), "--features", str(llp)]
    command += ["--annotations", str(annotations), "--out", "{out}/labels.h5", "--seed", str(seed)]
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
        row = ROW_NAMES[f"Pretrain E2E ({CONTROL_VARIANT}){CONTROL_SUFFIX}"]
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
        prog="python -m benchmarks.tables", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="demo", help="tiny, demo or paper (stage sizes and schedules)")
    parser.add_argument("--data", type=Path, help="folder with llp.h5 and pretrain.h5 (default: generate LLP-sim)")
    parser.add_argument("--annotations", type=Path, help="LLP annotation folder (default: the --data folder)")
    parser.add_argument("--seeds", type=int, default=3, help="finetuning seeds per row")
    parser.add_argument("--epochs", type=int, help="finetuning epochs of every row (default: the preset's schedule)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (and its cache/)")
    parser.add_argument(
        "--rows", help="comma-separated row names, or family names for a row under each recipe (default: all)"
    )
    parser.add_argument(
        "--recipes",
        default=",".join(RECIPES),
        help="comma-separated recipes the Base-family rows without pretraining run under (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    rows = [name.strip() for name in args.rows.split(",")] if args.rows else None
    recipes = [name.strip() for name in args.recipes.split(",") if name.strip()]
    try:
        run_tables(
            args.preset, args.seeds, args.out, args.data, args.annotations, rows, recipes=recipes, epochs=args.epochs
        )
    except AvvpError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
