"""`avvp parse`: run a trained parser on a feature store and write the events of each video.

Events follow the official inference (a snippet is positive when its probability and its video's are
>= avvp.metrics.DECISION_THRESHOLD, 0.5): audio and visual events are maximal runs per class, audio-visual
events the runs of snippets that are both. Each event has its mean snippet probability (for audio-visual, the
mean over both modalities). `--probabilities` also writes the raw probabilities (see `write_probabilities`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from avvp.annotations import (
    EVAL_FILES,
    SPLIT_FILES,
    dense_to_rows,
    read_dataset_videos,
    read_events,
    read_weak_labels,
    runs_of,
    write_events,
)
from avvp.classes import CLASS_INDEX, CLASSES
from avvp.errors import ConfigError, StoreError
from avvp.finetune.config import MISSING
from avvp.finetune.data import check_streams, load_store_data
from avvp.finetune.evaluate import Predictions, load_run, predict_data
from avvp.finetune.models import STREAMS
from avvp.inputs import open_hdf5
from avvp.metrics import DECISION_THRESHOLD
from avvp.output import atomic_path, check_writable, hdf5_writer, output_lock, staged_files, writing
from avvp.store import SCHEMA_VERSION, _created_by, read_video_ids
from avvp.video_ids import filenames_in_store, shown, youtube_id

MODALITY_NAMES = ("audio", "visual", "audio-visual")


def predict_videos(
    run: str | os.PathLike, features: str | os.PathLike, video_ids: Sequence[str] | None = None
) -> Predictions:
    """A saved run's probabilities for the store's videos (all, or `video_ids` in that order)."""
    cfg, model = load_run(run)
    check_streams(features, STREAMS, cfg.model)
    data = load_store_data(features, STREAMS, video_ids)
    return predict_data(model, cfg, data, features)


def video_events(predictions: Predictions) -> dict[str, list[dict]]:
    """Per video, its events: modality, class, onset and offset (seconds, offset exclusive), mean probability."""
    audio, visual = predictions.gated()  # (N, 25, 10) bool each
    position = {video_id: i for i, video_id in enumerate(predictions.video_ids)}
    events: dict[str, list[dict]] = {video_id: [] for video_id in predictions.video_ids}
    sources = (
        (audio, predictions.audio_prob),
        (visual, predictions.visual_prob),
        (audio & visual, (predictions.audio_prob + predictions.visual_prob) / 2),
    )
    for modality, (dense, prob) in zip(MODALITY_NAMES, sources, strict=True):
        for video_id, onset, offset, name in dense_to_rows(predictions.video_ids, dense):
            run = prob[position[video_id], CLASS_INDEX[name], onset:offset]
            events[video_id].append(
                {
                    "modality": modality,
                    "class": name,
                    "onset": onset,
                    "offset": offset,
                    "probability": round(float(run.mean()), 4),
                }
            )
    for items in events.values():
        items.sort(key=lambda e: (e["onset"], MODALITY_NAMES.index(e["modality"]), CLASS_INDEX[e["class"]]))
    return events


def annotated_truth(
    annotations: str | os.PathLike, video_ids: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The annotated (audio, visual) events, (25, 10) bool each, of those of `video_ids` the folder has them for:
    the val and test videos (AVVP_eval_*.csv), and LLP-sim's training videos (LLPsim_train_*.csv)."""
    from avvp.modality_labels import TRAIN_TRUTH_FILES

    folder, wanted = Path(annotations), list(video_ids)
    sources = [("val", EVAL_FILES), ("test", EVAL_FILES), ("train", TRAIN_TRUTH_FILES)]
    truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, files in sources:
        paths = [folder / SPLIT_FILES[split], folder / files["audio"], folder / files["visual"]]
        if not all(path.is_file() for path in paths):
            continue
        listed = set(read_weak_labels(paths[0]).video_ids)
        annotated = [video for video in wanted if video in listed and video not in truth]
        if annotated:
            audio = read_events(paths[1], annotated, strict=False)  # (n, 25, 10)
            visual = read_events(paths[2], annotated, strict=False)
            truth.update({video: (audio[i], visual[i]) for i, video in enumerate(annotated)})
    return truth


def data_source(features: str | os.PathLike) -> str:
    """What a store holds, for a picture's title: LLP-sim, LLP (the feature release), or its `source` as written."""
    with open_hdf5(features) as handle:
        source = str(handle.attrs.get("source", ""))
    if source.startswith("LLP-sim"):
        return "LLP-sim (synthetic)"
    if source.startswith("LLP feature release"):
        return "LLP"
    return source[:40] or "unknown data"


def plot_timeline(
    path: Path,
    video_id: str,
    predictions: Predictions,
    index: int,
    overwrite: bool = False,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
    source: str = "",
) -> None:
    """A video's parse as a picture: classes x seconds, a panel per modality (audio, visual, audio-visual).

    Shade: the snippet probability (audio-visual: the lower of the two); red outlines: the predicted events; with
    `truth` (the annotated audio and visual events, (25, 10) bool each), green bars under them: the annotated
    events. The PNG's text chunks hold `avvp:source` and, as JSON (panel -> [class, onset, offset] rows), the
    drawn events `avvp:predicted` and `avvp:truth` (absent without truth).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    audio, visual = predictions.gated()
    audio_prob, visual_prob = predictions.audio_prob[index], predictions.visual_prob[index]  # (25, 10) each
    panels = {
        "audio": (audio[index], audio_prob, None if truth is None else truth[0]),
        "visual": (visual[index], visual_prob, None if truth is None else truth[1]),
        "audio-visual": (
            audio[index] & visual[index],
            np.minimum(audio_prob, visual_prob),
            None if truth is None else truth[0] & truth[1],
        ),
    }
    # The classes predicted for the video or annotated in it; if none, the three most likely ones.
    shown_mask = predictions.video_prob[index] >= DECISION_THRESHOLD
    if truth is not None:
        shown_mask |= truth[0].any(-1) | truth[1].any(-1)
    shown = np.flatnonzero(shown_mask)
    title = f"{video_id}, {source}" if source else video_id
    title += "\nred: predicted; green: annotated" if truth is not None else "\nred: predicted (no annotated events)"
    if len(shown) == 0:
        shown = np.sort(np.argsort(predictions.video_prob[index])[-3:])
        title += "; no class predicted: the three most likely"
    height = 0.5 + 0.3 * len(shown)
    snippets = audio_prob.shape[-1]  # 10, or 10 per window of a longer video (avvp parse --video)
    figure, axes = plt.subplots(
        3, 1, figsize=(7 * max(1.0, snippets / 20), 1.0 + 3 * height), sharex=True, constrained_layout=True
    )
    drawn: dict[str, dict[str, list]] = {"predicted": {}, "truth": {}}
    for axis, (panel, (predicted, prob, annotated)) in zip(axes, panels.items(), strict=True):
        image = axis.imshow(
            prob[shown], aspect="auto", cmap="Blues", vmin=0, vmax=1, extent=(0, snippets, len(shown), 0)
        )
        layers = [("predicted", predicted, 0.06, 0.5, dict(fill=False, edgecolor="tab:red", linewidth=2))]
        if annotated is not None:
            layers.append(("truth", annotated, 0.62, 0.3, dict(facecolor="tab:green", edgecolor="black", lw=1)))
        for layer, dense, top, bar_height, style in layers:
            rows = drawn[layer].setdefault(panel, [])
            for row, class_index in enumerate(shown):
                for onset, offset in runs_of(dense[class_index]):
                    axis.add_patch(Rectangle((onset, row + top), offset - onset, bar_height, **style))
                    rows.append([CLASSES[class_index], int(onset), int(offset)])
        axis.set_yticks(np.arange(len(shown)) + 0.5, [CLASSES[i] for i in shown])
        shade = "the lower snippet probability of the two" if panel == "audio-visual" else "snippet probability"
        axis.set_title(f"{panel} events (shade: {shade})", fontsize=9)
        axis.set_xticks(range(0, snippets + 1, 1 if snippets <= 20 else 5))
        axis.grid(axis="x", color="white", linewidth=0.5)
    axes[-1].set_xlabel("seconds")
    figure.suptitle(title, fontsize=10)
    figure.colorbar(image, ax=axes, shrink=0.6, label="probability")
    metadata = {"avvp:source": source, "avvp:predicted": json.dumps(drawn["predicted"])}
    if truth is not None:
        metadata["avvp:truth"] = json.dumps(drawn["truth"])
    with atomic_path(path, overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=110, metadata=metadata)
    plt.close(figure)


def picture_name(video_id: str) -> str:
    """The file name of a video's timeline: characters outside [A-Za-z0-9_.-] become '_', and it never starts
    with '.', so that any id (`../x`, `a/b`, `.hidden`) names a plain file inside the plot folder."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", video_id)
    if not name or name.startswith("."):
        name = "_" + name
    return f"{name}.png"


def picture_paths(plot_dir: str | os.PathLike, video_ids: Sequence[str], overwrite: bool) -> list[Path]:
    """Each video's timeline path in `plot_dir`, checked for writing; two videos drawn to one file are an error."""
    plot_dir = Path(plot_dir)
    if os.path.lexists(plot_dir) and not plot_dir.is_dir():
        raise ConfigError(f"--plot {plot_dir}: not a folder; expected a folder for the timeline pictures")
    check_writable(plot_dir, overwrite=True, directory=True)  # a file on the way to it is an error
    drawn_by: dict[str, str] = {}
    paths = []
    for video_id in video_ids:
        name = picture_name(video_id)
        key = name.casefold()  # one file on a case-insensitive file system
        if key in drawn_by:
            raise ConfigError(
                f"--plot {plot_dir}: videos {drawn_by[key]!r} and {video_id!r} would both be drawn as {name}; "
                "plot them in separate runs (--videos)"
            )
        drawn_by[key] = video_id
        paths.append(check_writable(plot_dir / name, overwrite))
    return paths


def videos_to_parse(features: str | os.PathLike, video_ids: Sequence[str] | None) -> list[str]:
    """The requested videos (each once, at least one), or every video of the store (at least one)."""
    if video_ids is None:
        video_ids = read_video_ids(features)
        if not video_ids:
            raise StoreError(f"{features}: holds no videos; nothing to parse")
        return video_ids
    if not video_ids:
        raise ConfigError("--videos names no video; give comma-separated ids, or leave out --videos to parse all")
    seen: set[str] = set()
    for video_id in video_ids:
        if video_id in seen:
            raise ConfigError(f"--videos: video {video_id!r} is listed twice")
        seen.add(video_id)
    return list(video_ids)


def present_videos(
    features: str | os.PathLike, video_ids: Sequence[str], missing: str = "error", mapped: bool = False
) -> list[str]:
    """The requested videos the store holds: the others are an error naming `--missing skip` (and, for LLP
    filenames asked of a store named by YouTube id, `--annotations`), or with `missing` "skip" left out."""
    if missing not in MISSING:
        raise ConfigError(f"--missing {missing!r}: expected one of {', '.join(MISSING)}")
    stored = set(read_video_ids(features))
    absent = [video for video in video_ids if video not in stored]
    if not absent:
        return list(video_ids)
    hint = ""
    if not mapped and any(youtube_id(video) in stored for video in absent):
        hint = (
            f"; the store names its videos by YouTube id (e.g. {youtube_id(absent[0])!r}): pass --annotations DIR "
            "to ask for them by LLP filename"
        )
    if missing == "error" or len(absent) == len(video_ids):
        raise StoreError(
            f"{features}: {len(absent)} of the {len(video_ids)} videos of --videos are not in the store "
            f"({shown(absent)}){hint}" + ("; pass --missing skip to parse the others" if missing == "error" else "")
        )
    print(
        f"note: {features}: left out {len(absent)} of the {len(video_ids)} videos of --videos, not in the store "
        f"(--missing skip): {shown(absent)}",
        file=sys.stderr,
    )
    return [video for video in video_ids if video in stored]


def write_probabilities(
    path: str | os.PathLike, predictions: Predictions, attrs: dict | None = None, overwrite: bool = False
) -> Path:
    """The raw probabilities as HDF5, written atomically.

    Datasets: `video_ids` (N,) utf-8; `video`, `audio`, `visual` (N, 25) float32, the joint, audio and visual
    video-level probabilities; `snippet` (N, 10, 2, 25) float32, per snippet and modality (0 audio, 1 visual),
    the layout of the releases' `MMIL_Net.forward`. Root attributes: `schema`, `created_by`, `classes` (the 25
    class names in column order), `snippet_modalities` and `attrs`.
    """
    snippet = np.stack([predictions.audio_prob, predictions.visual_prob], axis=1)  # (N, 2, 25, 10)
    datasets = {
        "video": predictions.video_prob,
        "audio": predictions.video_audio_prob,
        "visual": predictions.video_visual_prob,
        "snippet": snippet.transpose(0, 3, 1, 2),  # (N, 10, 2, 25)
    }
    with atomic_path(path, overwrite) as tmp, hdf5_writer(tmp) as handle:
        handle.attrs["schema"] = SCHEMA_VERSION
        handle.attrs["created_by"] = _created_by()
        handle.attrs["classes"] = list(CLASSES)
        handle.attrs["snippet_modalities"] = ["audio", "visual"]
        for key, value in (attrs or {}).items():
            handle.attrs[key] = value
        handle.create_dataset("video_ids", data=list(predictions.video_ids), dtype=h5py.string_dtype("utf-8"))
        for name, values in datasets.items():
            handle.create_dataset(name, data=np.ascontiguousarray(values, dtype=np.float32))
    return Path(path)


def annotated_names(features: str | os.PathLike, annotations: str | os.PathLike) -> dict[str, str]:
    """Store id -> LLP filename of the store's annotated videos: a store named by YouTube id reports them by
    filename (so that `--csv` files score with `avvp evaluate`); other videos keep their ids."""
    filenames, files = read_dataset_videos(annotations)
    return filenames_in_store(features, read_video_ids(features), filenames, ", ".join(map(str, files)))


def check_apart(outputs: Sequence[tuple[str, Path]]) -> None:
    """Refuse two outputs that are one file, or one that would have to be a folder holding another."""
    where: dict[Path, tuple[str, Path]] = {}
    for option, path in outputs:
        key = Path(os.path.abspath(path))
        if key in where:
            other_option, other = where[key]
            raise ConfigError(f"{other_option} {other} and {option} {path}: the same file; give them different paths")
        where[key] = (option, path)
    for key, (option, path) in where.items():
        for folder in key.parents:
            if folder in where:
                other_option, other = where[folder]
                raise ConfigError(
                    f"{option} {path}: its folder {other} is the {other_option} file; give them different paths"
                )


def parse(
    run: str | os.PathLike,
    features: str | os.PathLike,
    out: str | os.PathLike,
    video_ids: Sequence[str] | None = None,
    csv_dir: str | os.PathLike | None = None,
    plot_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    probabilities: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    missing: str = "error",
    written: list[Path] | None = None,
) -> dict[str, list[dict]]:
    """Parse videos with a saved run: events JSON, optionally LLP eval CSVs, one timeline PNG per video and the
    raw probabilities (HDF5, `write_probabilities`).

    Every output is checked before any is written: an existing one needs `overwrite`. With `annotations`, videos
    are reported (and may be requested) by their LLP filenames (see `annotated_names`), and each timeline draws
    the video's annotated events where the folder has them (`annotated_truth`). `missing` "skip": videos of
    `video_ids` the store lacks are left out (one note on stderr) instead of an error. `written`, when given, gets
    every path written, in order.
    """
    out = check_writable(out, overwrite)
    if probabilities is not None:
        probabilities = check_writable(probabilities, overwrite)
    csv_paths = [Path(csv_dir) / name for name in ("pred_audio.csv", "pred_visual.csv")] if csv_dir else []
    for path in csv_paths:
        check_writable(path, overwrite)
    names = annotated_names(features, annotations) if annotations is not None else {}
    if video_ids is not None and names:
        store_id = {filename: video for video, filename in names.items()}
        video_ids = [store_id.get(video, video) for video in video_ids]
    if video_ids is not None:
        video_ids = present_videos(features, video_ids, missing, annotations is not None)
    parsed_ids = [names.get(video, video) for video in videos_to_parse(features, video_ids)]
    pictures = picture_paths(plot_dir, parsed_ids, overwrite) if plot_dir else []
    check_apart(
        [
            ("--out", out),
            *((("--probabilities", probabilities),) if probabilities is not None else ()),
            *(("--csv", path) for path in csv_paths),
            *(("--plot", path) for path in pictures),
        ]
    )
    locked = [out, *(p for p in (probabilities, csv_dir, plot_dir) if p is not None)]
    with output_lock(*locked):  # one parse per output; every file staged, all renamed in at the end or none
        predictions = predict_videos(run, features, video_ids)
        predictions.video_ids = [names.get(video, video) for video in predictions.video_ids]
        events = video_events(predictions)
        truth = annotated_truth(annotations, predictions.video_ids) if pictures and annotations is not None else {}
        source = data_source(features) if pictures else ""
        files = [out, *csv_paths, *pictures, *((probabilities,) if probabilities is not None else ())]
        with writing(out), staged_files(files, overwrite) as staged:
            document = {"run": str(run), "features": str(features), "videos": events}
            staged[0].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            staged_csv = staged[1 : 1 + len(csv_paths)]
            staged_pictures = staged[1 + len(csv_paths) : 1 + len(csv_paths) + len(pictures)]
            for path, dense in zip(staged_csv, predictions.gated() if csv_paths else (), strict=True):
                write_events(path, predictions.video_ids, dense, overwrite=True)
            for index, (path, video_id) in enumerate(zip(staged_pictures, predictions.video_ids, strict=False)):
                plot_timeline(path, video_id, predictions, index, True, truth.get(video_id), source)
            if probabilities is not None:
                attrs = {"run": str(run), "features": str(features)}
                with writing(probabilities):  # a full disk names the file it filled
                    write_probabilities(staged[-1], predictions, attrs, overwrite=True)
    if written is not None:
        written.extend(Path(path) for path in files)
    return events
