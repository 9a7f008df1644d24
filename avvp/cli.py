"""The core's commands of the `avvp` command line: `evaluate` and the `data` group.

`avvp.commands` (folder avvp_cli/) assembles them with the commands that run a stage (`avvp parse`, `avvp bench`);
nothing here imports a stage.
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
    features: Path | None = typer.Option(
        None, help="Feature store the predictions were made from: with --missing, score only the videos it holds."
    ),
    missing: str = typer.Option(
        "error",
        help="With --features, a video of the split absent from the store: error, or skip (score the videos present, "
        "as avvp-finetune --missing skip does).",
    ),
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
    if missing not in ("error", "skip"):
        raise AvvpError(f"--missing {missing!r}: expected error or skip")
    if missing == "skip" and features is None:
        raise AvvpError("--missing skip needs --features STORE: the videos scored are those the store holds")
    truth = load_scored_split(annotations, split).dense
    left_out = 0
    if features is not None:
        from avvp.annotations import SPLIT_FILES
        from avvp.store import read_video_ids
        from avvp.video_ids import store_ids_for

        listed_in = annotations / SPLIT_FILES[split]
        stored = read_video_ids(features)
        kept = len(store_ids_for(features, stored, truth.video_ids, listed_in, skip_missing=missing == "skip"))
        if kept < len(truth.video_ids):
            from avvp.video_ids import match_videos

            absent = set(match_videos(stored, truth.video_ids).missing)
            truth = truth.take([i for i, video in enumerate(truth.video_ids) if video not in absent])
            left_out = len(absent)
    pred = read_predictions(pred_audio, pred_visual, truth.video_ids)
    scores = score(pred, truth)
    classes = per_class_f1(pred, truth) if per_class else None
    if as_json:
        result: dict = {"split": split, "videos": len(truth.video_ids), "left_out": left_out, **scores}
        if classes is not None:
            result["per_class_segment_f1"] = {
                name: {c: (None if v != v else round(100 * float(v), 4)) for c, v in zip(CLASSES, values, strict=True)}
                for name, values in classes.items()
            }
        print_json(result)
        return
    gap = f" ({left_out} left out, not in {features}: --missing skip)" if left_out else ""
    print(f"{split}: {len(truth.video_ids)} videos{gap}")
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
    from avvp.video_ids import shown

    found = f"; {result.by_youtube_id} found by YouTube id" if result.by_youtube_id else ""
    padded = f" ({shown(result.padded_videos, 5)})" if result.padded_videos else ""
    print(
        f"wrote {result.path}: {len(result.video_ids)} videos ({dtype}); {result.padded} visual clip(s) padded"
        f"{padded}{found}"
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


@data_app.command("extract")
def extract_command(
    videos: list[Path] = typer.Argument(
        ..., help="Video files, folders of videos (not recursive) or list files (.txt: one path a line)."
    ),
    out: Path = typer.Option(..., help="Feature store to write (HDF5): audio, visual, motion streams."),
    weights: Path | None = typer.Option(
        None, help="Folder holding the weight files (offline machines); default: the torch cache, downloading."
    ),
    offline: bool = typer.Option(False, "--offline", help="Never download weights: a missing file is an error."),
    dtype: str = typer.Option("float16", help="Stored precision: float16 or float32."),
    audio_embedding: str = typer.Option(
        "raw", help="VGGish output: raw (128-d embedding) or postprocessed (AudioSet's PCA, 8-bit, 0..255)."
    ),
    workers: int = typer.Option(2, help="Decoding processes (0: decode in this process)."),
    batch_windows: int = typer.Option(4, help="10-s windows per forward batch."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip files that cannot be decoded."),
    device: str | None = typer.Option(None, help="torch device (default: CUDA when there is one, else CPU)."),
    compare: Path | None = typer.Option(
        None,
        help="LLP feature release folder (vggish/, res152/, r2plus1d_18/): print, per stream, the cosine similarity "
        "of the extracted features to the release's for the same videos.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out (and drop a resumable run)."),
) -> None:
    """Extract the LLP features (VGGish, ResNet-152, R(2+1)D-18) from video files into a feature store."""
    from avvp.console import err_console, progress
    from avvp.extract.pipeline import ExtractConfig, compare_with_release, extract, list_videos

    config = ExtractConfig(
        dtype=dtype,
        audio_embedding=audio_embedding,
        weights_dir=str(weights) if weights is not None else None,
        download=not offline,
        workers=workers,
        batch_windows=batch_windows,
        skip_bad=skip_bad,
        device=device,
    )
    if compare is not None and not compare.is_dir():
        from avvp.errors import AvvpError

        raise AvvpError(f"--compare {compare}: no such folder; expected the LLP feature release's folders in it")
    found = list_videos(videos)
    with progress(disable=not err_console.is_terminal) as bar:  # a log gets the report, not a bar's last frame
        task = bar.add_task("extracting", total=len(found))
        result = extract(
            found, out, config, overwrite=overwrite, on_progress=lambda done, total: bar.update(task, completed=done)
        )
    resumed = f" ({result.resumed} from an interrupted run)" if result.resumed else ""
    print(f"wrote {result.path}: {result.videos} videos{resumed}, {result.windows} windows of 10 s ({dtype})")
    for note in result.notes:
        print(note)
    if result.skipped:
        print(f"skipped {len(result.skipped)} file(s) that could not be decoded:")
        for reason in result.skipped:
            print(f"  {reason}")
    if result.path != out:
        print(f"this process wrote its share; join the stores with: avvp data merge STORES... --out {out}")
    if compare is not None:
        report = compare_with_release(result.path, compare)
        for stream, figures in report.items():
            if figures["videos"]:
                print(f"{stream}: cosine to the release {figures['mean']:.4f} mean, {figures['min']:.4f} min "
                      f"over {figures['videos']} videos")  # fmt: skip
            else:
                print(f"{stream}: no video of the store has a release file in {compare}")


@data_app.command("merge")
def merge_command(
    stores: list[Path] = typer.Argument(..., help="Feature stores to join (e.g. STORE.rank0-of-2.h5 ...)."),
    out: Path = typer.Option(..., help="Feature store to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Join feature stores with the same streams into one (the per-process stores of an extraction)."""
    from avvp.extract.pipeline import merge_stores

    count = merge_stores(stores, out, overwrite)
    print(f"wrote {out}: {count} videos from {len(stores)} stores")
