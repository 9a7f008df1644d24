"""`avvp parse`: run a trained parser on a feature store and write the events of each video.

Events follow the official inference (a snippet is positive when its probability and its video's are
>= 0.5): audio and visual events are maximal runs per class, audio-visual events the runs of snippets
that are both. Each event has its mean snippet probability (for audio-visual, the mean over both
modalities).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avvp.annotations import dense_to_rows, runs_of, write_events
from avvp.classes import CLASS_INDEX, CLASSES, NUM_SNIPPETS
from avvp.io import atomic_path, check_writable
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


def plot_timeline(path: Path, video_id: str, predictions: Predictions, index: int) -> None:
    """A video's parse as a picture: classes x seconds, one panel per modality, probability as shade."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    audio, visual = predictions.gated()
    probs = (predictions.audio_prob[index], predictions.visual_prob[index])  # (25, 10) each
    events = (audio[index], visual[index])
    # The classes predicted for the video; if none, the three most likely ones.
    shown = np.flatnonzero(predictions.video_prob[index] >= 0.5)
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
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def parse(
    run: str | os.PathLike,
    features: str | os.PathLike,
    out: str | os.PathLike,
    video_ids: Sequence[str] | None = None,
    csv_dir: str | os.PathLike | None = None,
    plot_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict[str, list[dict]]:
    """Parse videos with a saved run: events JSON, optionally LLP eval CSVs and one timeline PNG per video."""
    out = Path(out)
    check_writable(out, overwrite)
    csv_paths = [Path(csv_dir) / name for name in ("pred_audio.csv", "pred_visual.csv")] if csv_dir else []
    for path in csv_paths:
        check_writable(path, overwrite)
    predictions = predict_videos(run, features, video_ids)
    events = video_events(predictions)
    with atomic_path(out, overwrite) as tmp:
        document = {"run": str(run), "features": str(features), "videos": events}
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if csv_paths:
        for path, dense in zip(csv_paths, predictions.gated(), strict=True):
            write_events(path, predictions.video_ids, dense, overwrite)
    if plot_dir:
        plot_dir = Path(plot_dir)
        plot_dir.mkdir(parents=True, exist_ok=True)
        for index, video_id in enumerate(predictions.video_ids):
            plot_timeline(plot_dir / f"{video_id}.png", video_id, predictions, index)
    return events
