"""The core's commands of the `avvp` command line: `evaluate` and the `data` group.

`avvp_cli` assembles them with the commands that run a stage (`avvp parse`, `avvp bench`); nothing here imports
a stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avvp.console import typer_app
from avvp.synth import DEFAULT_SIM_VERSION, SIM_VERSIONS

data_app = typer_app("Feature stores and annotations: import, synthesize, inspect.")


def evaluate(
    pred_audio: Path = typer.Option(
        ..., help="Audio predictions in the LLP eval format (filename onset offset event_labels)."
    ),
    pred_visual: Path = typer.Option(..., help="Visual predictions in the LLP eval format."),
    annotations: Path = typer.Option(..., help="Folder with the LLP annotation files (AVVP_*.csv)."),
    split: str = typer.Option("test", help="Split to score: test or val."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print segment-level F1 per class."),
) -> None:
    """Score predictions in the LLP eval format with the official segment- and event-level F1."""
    from avvp.annotations import load_scored_split, read_predictions
    from avvp.classes import CLASSES
    from avvp.console import print_json
    from avvp.errors import AvvpError
    from avvp.metrics import evaluate as score
    from avvp.metrics import format_table, per_class_f1

    if split not in ("val", "test"):
        raise AvvpError(f"--split {split!r}: only val and test have snippet-level annotations")
    truth = load_scored_split(annotations, split).dense
    pred = read_predictions(pred_audio, pred_visual, truth.video_ids)
    scores = score(pred, truth)
    classes = per_class_f1(pred, truth) if per_class else None
    if as_json:
        result: dict = {"split": split, "videos": len(truth.video_ids), **scores}
        if classes is not None:
            result["per_class_segment_f1"] = {
                name: {c: (None if v != v else round(100 * float(v), 4)) for c, v in zip(CLASSES, values, strict=True)}
                for name, values in classes.items()
            }
        print_json(result)
        return
    print(f"{split}: {len(truth.video_ids)} videos")
    print(format_table(scores))
    if classes is not None:
        print(f"\n{'class':<24}{'Audio':>8}{'Visual':>8}{'AV':>8}")
        for i, name in enumerate(CLASSES):
            print(f"{name:<24}" + "".join(f"{100 * classes[m][i]:>8.1f}" for m in ("audio", "visual", "av")))


@data_app.command("import-han")
def import_han_command(
    root: Path = typer.Argument(..., help="LLP feature release: vggish/, res152/, r2plus1d_18/, a .npy per video."),
    out: Path = typer.Option(..., help="Feature store to write (HDF5)."),
    dtype: str = typer.Option("float16", help="Stored precision: float16 or float32."),
    annotations: Path | None = typer.Option(
        None,
        help="LLP annotation folder: import its videos (AVVP_dataset_full.csv, else the split files), named by "
        "their LLP filenames whether the files are named so or by YouTube id (as the LLP release names them).",
    ),
    video_ids: Path | None = typer.Option(
        None,
        help="Videos to import, one id per line (or an LLP split file), files named by id or by YouTube id; "
        "default: every .npy in vggish/, named by file stem (e.g. a pretraining corpus).",
    ),
    skip_missing: bool = typer.Option(
        False, help="Leave out videos with a missing feature file (listed in OUT.skipped.txt) instead of failing."
    ),
    workers: int = typer.Option(8, help="Threads reading .npy files in parallel."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out and its OUT.skipped.txt."),
) -> None:
    """Convert the LLP feature release (per-video .npy files) into a feature store."""
    from avvp.import_features import FOLDERS, import_han, read_video_list

    result = import_han(
        root,
        out,
        dtype=dtype,
        video_ids=read_video_list(video_ids) if video_ids is not None else None,
        skip_missing=skip_missing,
        workers=workers,
        overwrite=overwrite,
        show_progress=True,
        annotations=annotations,
    )
    found = f"; {result.by_youtube_id} found by YouTube id" if result.by_youtube_id else ""
    print(
        f"wrote {result.path}: {len(result.video_ids)} videos ({dtype}); {result.padded} visual clip(s) padded{found}"
    )
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (", ..." if len(result.skipped) > 5 else "")
        print(f"skipped {len(result.skipped)} video(s) with a missing feature file ({result.skipped_list}): {shown}")
    if result.shared:
        pairs = [f"{name}.npy ({', '.join(videos)})" for name, videos in list(result.shared.items())[:3]]
        count = sum(map(len, result.shared.values()))
        print(
            f"left out {count} video(s) sharing a YouTube id with another, whose one file cannot say which clip "
            f"it holds: " + "; ".join(pairs) + ("; ..." if len(result.shared) > 3 else "")
        )
    if result.unmatched:
        files = ", ".join(f"{name}.npy" for name in result.unmatched[:5])
        more = ", ..." if len(result.unmatched) > 5 else ""
        folder = root / FOLDERS["audio"]
        print(f"not imported: {len(result.unmatched)} file(s) of {folder}/ match no annotated video: {files}{more}")


@data_app.command("export-han")
def export_han_command(
    store: Path = typer.Argument(..., help="Feature store with audio, visual and motion streams (e.g. LLP-sim)."),
    out: Path = typer.Option(..., help="Folder to write vggish/, res152/, r2plus1d_18/ into (the LLP release layout)."),
    names: str = typer.Option(
        "youtube-id", help="File names: youtube-id (the first 11 characters, as the LLP release) or filename."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
) -> None:
    """Write a store in the layout of the LLP feature release (the inverse of import-han)."""
    from avvp.export_features import export_han

    count = export_han(store, out, naming=names, overwrite=overwrite)
    print(f"wrote {count} videos to {out} (vggish/, res152/, r2plus1d_18/; files named by {names})")


@data_app.command()
def synth(
    out: Path = typer.Option(..., help="Folder to write llp.h5, pretrain.h5 and the five LLP annotation files into."),
    preset: str = typer.Option("demo", help="Size: tiny (240 + 200 videos), demo (2,000 + 3,000), paper (LLP-sized)."),
    annotations: Path | None = typer.Option(
        None,
        help="Folder of real LLP annotation files: keep their ids, weak labels and val/test events "
        "(the first videos of each split, as many as the preset has; paper takes them all).",
    ),
    seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical files."),
    sim_version: int = typer.Option(
        DEFAULT_SIM_VERSION,
        help=f"LLP-sim version, one of {', '.join(map(str, SIM_VERSIONS))}: 2 adds sources heard and seen alike and "
        "modality-specific look-alikes (README, LLP-sim versions).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files already in --out."),
) -> None:
    """Generate an LLP-sim corpus (synthetic features in the LLP layout) for a preset."""
    from avvp.console import progress
    from avvp.synth import PRESETS, synthesize

    with progress(disable=preset not in PRESETS or preset == "tiny") as bar:
        task = bar.add_task(f"LLP-sim {preset}", total=None)
        summary = synthesize(
            out,
            preset=preset,
            seed=seed,
            annotations=annotations,
            overwrite=overwrite,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            version=sim_version,
        )
    videos = summary["videos"]
    print(
        f"wrote LLP-sim v{sim_version} {preset} (seed {seed}) to {out}:\n"
        f"train {videos['train']}, val {videos['val']}, test {videos['test']} videos in "
        f"{Path(summary['files']['llp']).name}; "
        f"{videos['pretrain']} unlabeled videos in {Path(summary['files']['pretrain']).name}"
    )


@data_app.command()
def stats(
    annotations: Path = typer.Argument(..., help="Folder with the LLP annotation files (AVVP_*.csv)."),
    plot: Path | None = typer.Option(None, help="Also draw the per-class bar chart here (.png, .pdf, .svg or .jpg)."),
    split: list[str] = typer.Option(["val", "test"], help="Split(s) with dense labels to count (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --plot."),
    labels: Path | None = typer.Option(
        None, help="Also score a label file of avvp-finetune refine against LLP-sim's training truth (train split)."
    ),
) -> None:
    """Per class, the number of videos with the event heard, seen and both (LLP paper, Figure 1)."""
    from avvp.io import check_picture
    from avvp.stats import COLUMNS, LEGEND, annotation_source, class_modality_counts, format_counts, plot_counts

    if plot is not None:
        check_picture(plot, overwrite)  # before the table is printed
    counts = class_modality_counts(annotations, tuple(split))
    if as_json:
        from avvp.classes import CLASSES

        table = {name: {c: int(counts[c][i]) for c in COLUMNS} for i, name in enumerate(CLASSES)}
        print(json.dumps({"videos": counts["videos"], "splits": counts["splits"], "classes": table}, indent=2))
    else:
        print(f"{annotation_source(annotations)}, {'+'.join(counts['splits'])}: {counts['videos']} videos")
        print(LEGEND)
        print(format_counts(counts))
    if plot is not None:
        where = f"{annotation_source(annotations)}, {'+'.join(counts['splits'])}"
        plot_counts(counts, plot, title=f"Videos with each event heard, seen or both ({where})", overwrite=overwrite)
        print(f"wrote {plot}")
    if labels is not None:
        from avvp.modality_labels import format_report, label_report, train_split_labels

        refined, truth = train_split_labels(labels, annotations)
        print(format_report(label_report(refined, truth)))


@data_app.command()
def baselines(
    annotations: Path = typer.Option(..., help="Folder with the LLP annotation files (AVVP_*.csv)."),
    split: str = typer.Option("test", help="Split to score: test or val."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Score the reference predictions: weak-label oracle, nothing, Speech everywhere."""
    from avvp.baselines import REFERENCE_NOTES, reference_scores
    from avvp.console import print_json
    from avvp.metrics import format_table

    scores = reference_scores(annotations, split)
    if as_json:
        print_json({"split": split, "annotations": str(annotations), **scores})
        return
    for name, table in scores.items():
        print(f"{name} ({split}): {REFERENCE_NOTES[name]}")
        print(format_table(table) + "\n")
