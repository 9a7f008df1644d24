"""`avvp parse --video`: extract a video's features (`avvp.extract`), then parse it with a trained run.

A video longer than 10 s is parsed window by window (`ID@0`, `ID@10`, ...; `avvp.extract.pipeline`); its events
and its one timeline are in the video's own seconds. The official gate is applied per window (a snippet is an
event when its probability and its window's video-level probability are >= 0.5); the joined timeline shades a
snippet of a window whose gate is off at most just under 0.5. `--csv` keeps the LLP eval format: one row per
window id, seconds 0-10 within it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avvp.annotations import write_events
from avvp.errors import ConfigError
from avvp.extract.pipeline import ExtractConfig, ExtractResult, Networks, extract, list_videos
from avvp.finetune.data import check_streams, load_store_data
from avvp.finetune.evaluate import Predictions, load_run, predict_data
from avvp.finetune.models import STREAMS
from avvp.finetune.parse import check_apart, picture_paths, plot_timeline, video_events
from avvp.metrics import DECISION_THRESHOLD
from avvp.output import check_writable, output_lock, staged_files, writing

BELOW_GATE = float(np.nextafter(DECISION_THRESHOLD, 0.0))
"""A snippet probability just under the decision threshold (for windows whose video-level gate is off)."""


def join_windows(predictions: Predictions, windows: dict[str, list[str]]) -> Predictions:
    """Per video, its windows' predictions side by side in time: (N, 25, 10 * W) snippets, the video-level
    probabilities the maximum over its windows. Each window keeps its own gate (see the module's docstring)."""
    row = {video_id: i for i, video_id in enumerate(predictions.video_ids)}
    joined: dict[str, list] = {name: [] for name in ("video", "audio", "visual", "video_audio", "video_visual")}
    for window_ids in windows.values():
        rows = [row[w] for w in window_ids]
        gate = predictions.video_prob[rows] >= DECISION_THRESHOLD  # (W, 25)
        for name, prob in (("audio", predictions.audio_prob[rows]), ("visual", predictions.visual_prob[rows])):
            capped = np.where(gate[:, :, None], prob, np.minimum(prob, BELOW_GATE))  # (W, 25, 10)
            joined[name].append(np.concatenate(list(capped), axis=1))  # (25, 10 * W)
        joined["video"].append(predictions.video_prob[rows].max(axis=0))
        joined["video_audio"].append(predictions.video_audio_prob[rows].max(axis=0))
        joined["video_visual"].append(predictions.video_visual_prob[rows].max(axis=0))
    return [
        Predictions(
            video_ids=[video_id],
            video_prob=joined["video"][i][None],
            audio_prob=joined["audio"][i][None],
            visual_prob=joined["visual"][i][None],
            video_audio_prob=joined["video_audio"][i][None],
            video_visual_prob=joined["video_visual"][i][None],
        )
        for i, video_id in enumerate(windows)
    ]


def parse_video_files(
    run: str | os.PathLike,
    videos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    csv_dir: str | os.PathLike | None = None,
    plot_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    config: ExtractConfig | None = None,
    networks: Networks | None = None,
    written: list[Path] | None = None,
) -> tuple[dict[str, list[dict]], ExtractResult]:
    """Extract and parse video files with a saved run: events JSON (seconds of each video), optionally LLP eval
    CSVs (per window) and one timeline PNG per video. Every output is checked before the video is decoded (none
    may be one of the videos), locked as `avvp parse --features` locks its outputs, and staged: all are renamed in
    at the end, or none. `written`, when given, gets every path written, in order."""
    config = config or ExtractConfig(workers=0)
    found = list_videos(videos)
    sources = [path for _, path in found]
    out = check_writable(out, overwrite, inputs=sources)
    csv_paths = [Path(csv_dir) / name for name in ("pred_audio.csv", "pred_visual.csv")] if csv_dir else []
    for path in csv_paths:
        check_writable(path, overwrite, inputs=sources)
    pictures = picture_paths(plot_dir, [video_id for video_id, _ in found], overwrite) if plot_dir else []
    check_apart([("--out", out), *(("--csv", p) for p in csv_paths), *(("--plot", p) for p in pictures)])
    locked = [out, *(p for p in (csv_dir, plot_dir) if p is not None)]
    with output_lock(*locked):  # one parse per output; every file staged, all renamed in at the end or none
        return _parse_locked(run, found, out, csv_paths, pictures, overwrite, config, networks, written)


def _parse_locked(
    run: str | os.PathLike,
    found: list[tuple[str, Path]],
    out: Path,
    csv_paths: list[Path],
    pictures: list[Path],
    overwrite: bool,
    config: ExtractConfig,
    networks: Networks | None,
    written: list[Path] | None,
) -> tuple[dict[str, list[dict]], ExtractResult]:
    """`parse_video_files` under the lock of its outputs: extract, predict, then write every output staged."""
    cfg, model = load_run(run)
    widths = model.frontend.input_widths if model.frontend is not None else cfg.input_widths
    raw = {"audio": 128, "visual": 2048, "motion": 512}
    if any(widths.get(name) != width for name, width in raw.items() if name in widths):
        raise ConfigError(
            f"{run}: trained on stream widths {widths}; --video gives the LLP features {raw} "
            "(parse a store of exported embeddings with --features instead)"
        )
    with tempfile.TemporaryDirectory(prefix="avvp-parse-video-") as folder:
        store = Path(folder) / "features.h5"
        result = extract(found, store, config, networks=networks)
        check_streams(store, STREAMS, cfg.model)
        data = load_store_data(store, STREAMS, None)
        predictions = predict_data(model, cfg, data, store)
    windows = result.video_windows
    joined = join_windows(predictions, windows)
    events: dict[str, list[dict]] = {}
    for video in joined:
        events.update(video_events(video))
    by_id = {video.video_ids[0]: video for video in joined}
    drawn = [(path, video_id) for path, (video_id, _) in zip(pictures, found, strict=True) if video_id in by_id]
    files = [out, *csv_paths, *(path for path, _ in drawn)]
    with writing(out), staged_files(files, overwrite) as staged:
        document = {
            "run": str(run),
            "videos": events,
            "sources": {video_id: str(path) for video_id, path in found},
            "windows": windows,
            "notes": result.notes,
        }
        staged[0].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        staged_csv = staged[1 : 1 + len(csv_paths)]
        for path, dense in zip(staged_csv, predictions.gated() if csv_paths else (), strict=True):
            write_events(path, predictions.video_ids, dense, overwrite=True)
        for path, (_, video_id) in zip(staged[1 + len(csv_paths) :], drawn, strict=True):
            plot_timeline(path, video_id, by_id[video_id], 0, True, source="features extracted by avvp")
    if written is not None:
        written.extend(Path(path) for path in files)
    return events, result
