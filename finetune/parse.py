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
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from avvp.annotations import dense_to_rows, read_dataset_videos, runs_of, write_events
from avvp.classes import CLASS_INDEX, CLASSES, NUM_SNIPPETS
from avvp.errors import ConfigError, StoreError
from avvp.metrics import DECISION_THRESHOLD
from avvp.output import atomic_path, check_writable, hdf5_writer, output_lock, staged_files, writing
from avvp.store import SCHEMA_VERSION, _created_by, read_video_ids
from avvp.video_ids import filenames_in_store
from finetune.data import check_streams, load_store_data
from finetune.evaluate import Predictions, load_run, predict_data
from finetune.models import STREAMS

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


def plot_timeline(path: Path, video_id: str, predictions: Predictions, index: int, overwrite: bool = False) -> None:
    """A video's parse as a picture: classes x seconds, one panel per modality, probability as shade."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    audio, visual = predictions.gated()
    probs = (predictions.audio_prob[index], predictions.visual_prob[index])  # (25, 10) each
    events = (audio[index], visual[index])
    # The classes predicted for the video; if none, the three most likely ones.
    shown = np.flatnonzero(predictions.video_prob[index] >= DECISION_THRESHOLD)
    title = video_id
    if len(shown) == 0:
        shown = np.sort(np.argsort(predictions.video_prob[index])[-3:])
        title += " (no class predicted; the three most likely)"
    height = 1.0 + 0.3 * len(shown)
    figure, axes = plt.subplots(2, 1, figsize=(7, 0.6 + 2 * height), sharex=True, constrained_layout=True)
    for axis, modality, prob, on in zip(axes, ("Audio", "Visual"), probs, events, strict=True):
        image = axis.imshow(
            prob[shown], aspect="auto", cmap="Blues", vmin=0, vmax=1, extent=(0, NUM_SNIPPETS, len(shown), 0)
        )
        for row, class_index in enumerate(shown):
            for onset, offset in runs_of(on[class_index]):
                axis.add_patch(
                    Rectangle((onset, row + 0.1), offset - onset, 0.8, fill=False, edgecolor="tab:red", linewidth=2)
                )
        axis.set_yticks(np.arange(len(shown)) + 0.5, [CLASSES[i] for i in shown])
        axis.set_title(f"{modality} events (red: predicted; shade: snippet probability)", fontsize=9)
        axis.set_xticks(range(NUM_SNIPPETS + 1))
        axis.grid(axis="x", color="white", linewidth=0.5)
    axes[-1].set_xlabel("seconds")
    figure.suptitle(title, fontsize=10)
    figure.colorbar(image, ax=axes, shrink=0.6, label="probability")
    with atomic_path(path, overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
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
) -> dict[str, list[dict]]:
    """Parse videos with a saved run: events JSON, optionally LLP eval CSVs, one timeline PNG per video and the
    raw probabilities (HDF5, `write_probabilities`).

    Every output is checked before any is written: an existing one needs `overwrite`. With `annotations`, videos
    are reported (and may be requested) by their LLP filenames (see `annotated_names`).
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
        files = [out, *csv_paths, *pictures, *((probabilities,) if probabilities is not None else ())]
        with writing(out), staged_files(files, overwrite) as staged:
            document = {"run": str(run), "features": str(features), "videos": events}
            staged[0].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            staged_csv = staged[1 : 1 + len(csv_paths)]
            staged_pictures = staged[1 + len(csv_paths) : 1 + len(csv_paths) + len(pictures)]
            for path, dense in zip(staged_csv, predictions.gated() if csv_paths else (), strict=True):
                write_events(path, predictions.video_ids, dense, overwrite=True)
            for index, (path, video_id) in enumerate(zip(staged_pictures, predictions.video_ids, strict=False)):
                plot_timeline(path, video_id, predictions, index, overwrite=True)
            if probabilities is not None:
                attrs = {"run": str(run), "features": str(features)}
                with writing(probabilities):  # a full disk names the file it filled
                    write_probabilities(staged[-1], predictions, attrs, overwrite=True)
    return events
