"""Where pretraining should pay: test Type@AV against the share of training labels, each encoder beside its control.

    python -m avvp.benchmarks.label_curve --preset demo --seeds 3 --out results/label_curve    # LLP-sim demo
    python -m avvp.benchmarks.label_curve --preset demo --fractions 0.1 1 --rows e2e e2e-control --out ...

Rows (each at every fraction, for every seed): `raw` (the best non-pretrained parser, Base+Adv+Skip+GCAA, on the
raw features), `frozen` and `frozen-control` (the same parser on the exported embeddings of the pretrained
encoder, and of its untrained control), `e2e` and `e2e-control` (the MMIL head on the encoder trained end to end,
and on the control). The pretrained encoder is the toolkit's default (`multi`) on the toolkit's default labels;
the control is `avvp-pretrain init` with the same settings and seed: same architecture, same standardisation,
never trained. Seed s pretrains, initialises and finetunes with seed s, and draws the label subset with seed s.
Each row is a row of `avvp.benchmarks.tables` ("Base+Adv+Skip+GCAA (paper recipe)", "Pretrained", "Pretrain E2E
(multi)" and their controls) with the same stages: the full-label runs are that table's runs, so with one `--out`
for both, either command finds the other's in the cache.

A fraction F trains on a stratified F of the training videos (`avvp-finetune --train-fraction`) for the same
number of optimizer steps as the full-label run: the epochs and the epochs between learning-rate decays are
scaled by the ratio of batches per epoch. Every stage is cached as in `avvp.benchmarks.tables` (`OUT/cache/`). Writes
`OUT/label_curve.json`, `OUT/label_curve.md` (each pretrained row, its control and the difference, mean ± std over
seeds) and `OUT/label_curve.png`; with `--variant uni|cross` the end-to-end rows use that variant's encoder (the
files are then `label_curve_uni.*`, ...; the control is the same encoder for every variant).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from avvp.annotations import load_split
from avvp.benchmarks.tables import (
    CONTROL_SUFFIX,
    ROW_NAMES,
    Row,
    StageCache,
    encoder_stage,
    export_stage,
    finetune_stage,
    grounding_stage,
    is_llp_sim,
    over_seeds,
    prepare_data,
    run_tasks,
    stage_slug,
)
from avvp.console import run_app
from avvp.errors import AvvpError, ConfigError
from avvp.io import atomic_path

ROWS = {
    "raw": "Base+Adv+Skip+GCAA, raw features",
    "frozen": "frozen pretrained encoder -> Base+Adv+Skip+GCAA",
    "frozen-control": "frozen untrained control -> Base+Adv+Skip+GCAA",
    "e2e": "pretrained encoder end to end (MMIL head)",
    "e2e-control": "untrained control end to end (MMIL head)",
}
"""Row -> what it is; a pretrained row and its control differ by the encoder alone."""
VARIANTS = ("uni", "cross", "multi")


def table_rows(variant: str = "multi") -> dict[str, Row]:
    """Curve row -> the row of `avvp.benchmarks.tables` it is (its full-label runs are that row's, one cache entry
    each).

    `variant` picks the end-to-end rows ("Pretrain E2E (uni)" ...); the frozen rows are the tables' "Pretrained"
    (`multi`) row and its control.
    """
    return {
        "raw": ROW_NAMES["Base+Adv+Skip+GCAA (paper recipe)"],
        "frozen": ROW_NAMES["Pretrained"],
        "frozen-control": ROW_NAMES[f"Pretrained{CONTROL_SUFFIX}"],
        "e2e": ROW_NAMES[f"Pretrain E2E ({variant})"],
        "e2e-control": ROW_NAMES[f"Pretrain E2E ({variant}){CONTROL_SUFFIX}"],
    }


PAIRS = (("e2e", "e2e-control"), ("frozen", "frozen-control"))
FRACTIONS = (0.05, 0.1, 0.25, 1.0)
RAW_MODEL = "base-adv-skip-gcaa"
PRESETS = ("tiny", "demo", "paper")
SCORE = ("segment", "type_av")


def matched_schedule(train_videos: int, subset_videos: int, preset: str, epochs: int | None) -> dict[str, int]:
    """Epochs and lr_step for a subset so that it makes as many optimizer steps as the full split does.

    The full-label schedule is avvp-finetune's for the preset (`epochs` replaces its epochs).
    """
    from avvp.finetune.config import FinetuneConfig

    full = FinetuneConfig.from_preset(
        preset, model=RAW_MODEL, epochs=epochs
    )  # the mmil head of the e2e rows has the same recipe
    ratio = math.ceil(train_videos / full.batch_size) / math.ceil(subset_videos / full.batch_size)
    return {"epochs": max(1, round(full.epochs * ratio)), "lr_step": max(1, round(full.lr_step * ratio))}


def run_curve(
    preset: str,
    seeds: int,
    out: Path,
    fractions: tuple[float, ...] = FRACTIONS,
    rows: tuple[str, ...] = tuple(ROWS),
    data: Path | None = None,
    annotations: Path | None = None,
    epochs: int | None = None,
    encoder_args: tuple[str, ...] = (),
    pretrain_args: tuple[str, ...] = (),
    verbose: bool = True,
    only_seed: int | None = None,
    variant: str = "multi",
    jobs: int = 1,
) -> dict | None:
    """Run (or fetch from the cache) every stage, then score and write the curve.

    `only_seed`: run that seed's stages and return None (several processes can share one `out`, a seed each);
    a later call without it finds them all cached and writes the curve. `variant`: the pretraining variant of the
    end-to-end rows; the files are `label_curve.*` for `multi`, `label_curve_{variant}.*` otherwise. `jobs`: stages
    run at a time (`avvp.benchmarks.tables.StageCache`); the files are those of one at a time.
    """
    from avvp.finetune.data import stratified_rows

    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least one seed")
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ConfigError(f"--fractions {fraction}: a share of the training videos, in (0, 1]")
    if variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    rows_of = table_rows(variant)
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ConfigError(f"--rows {', '.join(unknown)}: expected some of {', '.join(ROWS)}")
    started = time.perf_counter()
    cache = StageCache(out / "cache", verbose=verbose, jobs=jobs)
    try:
        pretraining = [rows_of[row].name for row in rows if row != "raw"]
        data, annotations = prepare_data(cache, preset, data, annotations, pretraining)
        llp, corpus = data / "llp.h5", data / "pretrain.h5"
        train_labels = load_split(annotations, "train").weak.labels > 0.5
        labels = grounding_stage(cache, corpus, preset) if any(row != "raw" for row in rows) else None

        def input_of(row: str, seed: int) -> Path:
            """A curve row's parser input store (or, end to end, its encoder): its pretraining stages, each once."""
            table_row = rows_of[row]
            if table_row.source == "raw":
                return llp
            encoder = encoder_stage(cache, corpus, labels, preset, seed, table_row.variant, table_row.control,
                                    encoder_args, pretrain_args)  # fmt: skip
            return export_stage(cache, table_row, seed, encoder, llp) if table_row.source == "frozen" else encoder

        schedules = {}
        tasks = []  # (seed, fraction, row), in the order a sequential run takes them
        for seed in range(seeds) if only_seed is None else [only_seed]:
            for fraction in fractions:
                subset = len(stratified_rows(train_labels, fraction, seed)) if fraction < 1 else len(train_labels)
                schedule = matched_schedule(len(train_labels), subset, preset, epochs)
                schedules[str(fraction)] = {"videos": subset, **schedule}
                tasks += [(seed, fraction, row, schedule) for row in rows]

        def finetune(seed: int, fraction: float, row: str, schedule: dict) -> float:
            table_row = rows_of[row]
            e2e = table_row.source == "e2e"
            source = input_of(row, seed)
            argv, stage_inputs = finetune_stage(table_row, llp if e2e else source, annotations, preset, seed,
                                                source if e2e else None, epochs)  # fmt: skip
            stage = f"finetune-{stage_slug(table_row)}-seed{seed}"  # the full-label run is the table's row
            if fraction < 1:
                argv += ["--train-fraction", str(fraction), "--epochs", str(schedule["epochs"]),
                         "--lr-step", str(schedule["lr_step"])]  # fmt: skip
                stage = f"finetune-{stage_slug(table_row)}-f{fraction:g}-seed{seed}"
            run_dir = cache.run(stage, argv, stage_inputs) / "run"
            test = json.loads((run_dir / "metrics.json").read_text())["test"]
            return float(test[SCORE[0]][SCORE[1]])

        scores = run_tasks(cache, [partial(finetune, *task) for task in tasks])
    finally:
        cache.save_hashes()
        cache.close()
    results: dict[str, dict[str, list[float]]] = {row: {str(f): [] for f in fractions} for row in rows}
    for (_, fraction, row, _), score in zip(tasks, scores, strict=True):
        results[row][str(fraction)].append(score)
    if only_seed is not None:
        return None
    report = {
        "preset": preset,
        "data": str(data),
        "llp_sim": is_llp_sim(llp),
        "seeds": seeds,
        "fractions": sorted(fractions),  # run in the order given (e.g. the full-label runs first), shown in order
        "score": "test segment-level Type@AV",
        "variant": variant,
        "encoder_args": list(encoder_args),
        "pretrain_args": list(pretrain_args),
        "schedules": schedules,
        "rows": {
            row: {f: summary(scores) for f, scores in by_fraction.items()} for row, by_fraction in results.items()
        },
        "differences": differences(results, fractions),
        "stages_run": cache.ran,
    }
    timings = {"jobs": jobs, "stage_seconds": cache.timings, "seconds": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    stem = curve_stem(variant)
    with atomic_path(out / f"{stem}.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_path(out / f"{stem}.md", overwrite=True) as tmp:
        tmp.write_text(format_curve(report) + "\n")
    plot_curve(report, out / f"{stem}.png")
    # Timings apart: the report is the same at any --jobs.
    with atomic_path(out / f"{stem}_timings.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
    return {**report, **timings}


def curve_stem(variant: str) -> str:
    """The curve's file names without their suffix: `label_curve` for `multi`, `label_curve_{variant}` otherwise."""
    return "label_curve" if variant == "multi" else f"label_curve_{variant}"


def summary(scores: list[float]) -> dict:
    """Mean and standard deviation over seeds (`avvp.benchmarks.tables.over_seeds`), and the scores themselves."""
    figures = over_seeds(scores)
    return {"mean": figures["mean"], "std": figures["std"], "scores": figures["seeds"]}


def differences(results: dict, fractions) -> dict:
    """Per pretrained row and fraction: the seed-paired difference pretrained - control, mean ± std over seeds."""
    found = {}
    for pretrained, control in PAIRS:
        if pretrained in results and control in results:
            found[pretrained] = {
                str(f): summary(list(np.subtract(results[pretrained][str(f)], results[control][str(f)])))
                for f in fractions
            }
    return found


def format_curve(report: dict) -> str:
    """Markdown: every row per fraction (mean ± std), then each pretrained row's difference to its control."""
    fractions = [str(f) for f in report["fractions"]]
    head = "| row | " + " | ".join(f"{float(f):.0%} labels" for f in fractions) + " |"
    lines = [
        f"Test segment-level Type@AV, {report['seeds']} seed(s), preset {report['preset']}"
        + (" (LLP-sim: synthetic data, not LLP)" if report["llp_sim"] else "")
        + f"; end-to-end rows: the `{report.get('variant', 'multi')}` encoder"
        + "; each fraction trained for as many optimizer steps as the full-label run (epochs scaled).",
        "",
        head,
        "|---" * (len(fractions) + 1) + "|",
    ]
    for row, by_fraction in report["rows"].items():
        cells = [f"{by_fraction[f]['mean']:.1f} ± {by_fraction[f]['std']:.1f}" for f in fractions]
        lines.append(f"| {ROWS[row]} | " + " | ".join(cells) + " |")
    for row, by_fraction in report["differences"].items():
        cells = []
        for f in fractions:
            mean, std = by_fraction[f]["mean"], by_fraction[f]["std"]
            verdict = " (> 2 std)" if report["seeds"] > 1 and mean > 2 * std else ""
            cells.append(f"{mean:+.1f} ± {std:.1f}{verdict}")
        lines.append(f"| **{row} - its control** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(report: dict, path: Path) -> Path:
    """The curves: mean ± std over seeds against the share of labels (log axis), controls dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = report["fractions"]
    colours = {"raw": "black", "frozen": "tab:blue", "frozen-control": "tab:blue", "e2e": "tab:red",
               "e2e-control": "tab:red"}  # fmt: skip
    figure, axes = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    for row, by_fraction in report["rows"].items():
        mean = np.array([by_fraction[str(f)]["mean"] for f in fractions])
        std = np.array([by_fraction[str(f)]["std"] for f in fractions])
        style = "--" if row.endswith("control") else "-"
        axes.errorbar(fractions, mean, yerr=std, fmt=style + "o", color=colours[row], label=ROWS[row], capsize=3,
                      markersize=4)  # fmt: skip
    axes.set_xscale("log")
    axes.minorticks_off()  # the log axis's own minor labels (6 x 10^-1, ...) would crowd the shares
    axes.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
    axes.set(xlabel="share of the training videos' labels (stratified subset)", ylabel="test segment Type@AV")
    source = "LLP-sim (synthetic)" if report["llp_sim"] else report["data"]
    axes.set_title(
        f"{source}, preset {report['preset']}, {report['seeds']} seed(s), mean ± std; "
        f"end-to-end rows: `{report.get('variant', 'multi')}` encoder\n"
        "every fraction trained for the full-label run's optimizer steps (epochs scaled by 1/share)",
        fontsize=9,
    )
    axes.legend(fontsize=8)
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m avvp.benchmarks.label_curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo", choices=PRESETS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--rows", nargs="+", default=list(ROWS), help=f"Some of {', '.join(ROWS)}.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="Folder with llp.h5 and pretrain.h5 (default: LLP-sim generated).")
    parser.add_argument("--annotations", type=Path, help="Annotation folder (default: --data).")
    parser.add_argument("--epochs", type=int, help="Full-label finetuning epochs (default: the preset's).")
    parser.add_argument(
        "--encoder-args", default="", help="Architecture options of the encoder and its control (avvp-pretrain init)."
    )
    parser.add_argument("--pretrain-args", default="", help="Further avvp-pretrain options, for the trained encoder.")
    parser.add_argument("--only-seed", type=int, help="Run this seed's stages only (one process per seed), no curve.")
    parser.add_argument("--variant", default="multi", choices=VARIANTS, help="Pretraining variant of the e2e rows.")
    parser.add_argument("--jobs", type=int, default=1, help="Stages run at once, each on cores/JOBS threads (or "
                        "its own GPU); the files are those of --jobs 1.")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        report = run_curve(args.preset, args.seeds, args.out, tuple(args.fractions), tuple(args.rows), args.data,
                           args.annotations, args.epochs, tuple(args.encoder_args.split()),
                           tuple(args.pretrain_args.split()), only_seed=args.only_seed,
                           variant=args.variant, jobs=args.jobs)  # fmt: skip
    except AvvpError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    if report is None:
        print(f"seed {args.only_seed}: every stage done")
        return
    print(format_curve(report))
    print(f"wrote {args.out / curve_stem(args.variant)}.md, .json, .png ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    run_app(main)
