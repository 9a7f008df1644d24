"""`avvp data export-han`: a feature store written out in the layout of the LLP feature release.

The inverse of `avvp data import-han`, for trying the real-LLP path on LLP-sim (or handing a store to the
releases' own loaders): `ROOT/vggish/NAME.npy` (10, 128), `ROOT/res152/NAME.npy` (80, 2048),
`ROOT/r2plus1d_18/NAME.npy` (10, 512), float32, NAME the video's YouTube id (the first 11 characters of its
LLP filename, as the release names them) or its whole id. Each second's visual row becomes 8 frames around it
whose mean is that row (exactly, for a float16 store), so importing the folder gives the store back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avvp.classes import NUM_SNIPPETS
from avvp.errors import ConfigError, StoreError
from avvp.import_features import FOLDERS, SOURCE_FILE
from avvp.output import atomic_dir, check_free_space, safe_child
from avvp.store import RAW_WIDTHS, iter_store, read_video_ids, store_info
from avvp.video_ids import youtube_id

NAMINGS = ("youtube-id", "filename")
FRAMES_PER_SECOND = 8
FRAME_STEPS = np.array([1, -1, 2, -2, 3, -3, 0, 0], dtype=np.float64)
"""Frame k of a second is its row plus FRAME_STEPS[k] times a step of the row's magnitude: they sum to 0."""


def frames_of(visual: np.ndarray) -> np.ndarray:
    """(10, W) per-second rows -> (80, W) float32 frames, 8 per second, varied about each row; their mean is the row.

    The step is a power of two near 1/100 of each value's magnitude, so a value of up to 23 significant bits
    (any float16) plus it is exact in float32 and the mean returns it exactly (a float32 store: within an ulp).
    """
    rows = visual.astype(np.float64)  # (10, W)
    _, exponent = np.frexp(rows)
    step = np.where(rows != 0, np.ldexp(1.0, exponent - 7), 0.0)  # (10, W)
    frames = rows[:, None, :] + FRAME_STEPS[None, :, None] * step[:, None, :]  # (10, 8, W)
    return frames.reshape(-1, rows.shape[-1]).astype(np.float32)


def file_names(video_ids: list[str], naming: str) -> list[str]:
    """Each video's file name (without .npy); two videos named alike are an error."""
    if naming not in NAMINGS:
        raise ConfigError(f"--names {naming!r}: expected one of {', '.join(NAMINGS)}")
    names = [youtube_id(v) if naming == "youtube-id" else v for v in video_ids]
    first: dict[str, str] = {}
    for video_id, name in zip(video_ids, names, strict=True):
        if name in first:
            raise StoreError(
                f"videos {first[name]!r} and {video_id!r} would both be written as {name}.npy; use --names filename"
            )
        first[name] = video_id
    return names


def export_han(
    store: str | os.PathLike, root: str | os.PathLike, naming: str = "youtube-id", overwrite: bool = False
) -> int:
    """Write the store's audio, visual and motion streams as a release folder at `root` (atomically);
    returns the number of videos. The store's `source` goes into ROOT/SOURCE_FILE."""
    store = Path(store)
    info = store_info(store)
    names = file_names(read_video_ids(store), naming)
    if not names:
        raise StoreError(f"{store}: holds no videos; nothing to export")
    widths = RAW_WIDTHS  # float32 rows: 10 audio, 80 visual frames, 10 motion per video
    per_video = 4 * NUM_SNIPPETS * (widths["audio"] + FRAMES_PER_SECOND * widths["visual"] + widths["motion"])
    check_free_space(root, len(names) * (per_video + 256))  # float32 .npy files, 128-byte headers each
    with atomic_dir(root, overwrite, inputs=[store]) as tmp:
        for folder in FOLDERS.values():
            (tmp / folder).mkdir()
        done = 0
        for chunk_ids, streams in iter_store(store, tuple(FOLDERS), dtype=np.float32, widths=RAW_WIDTHS):
            for i in range(len(chunk_ids)):
                name = names[done + i]  # a checked id (avvp.inputs); safe_child keeps it inside the folder anyway
                np.save(safe_child(tmp / FOLDERS["audio"], name, ".npy"), streams["audio"][i])
                np.save(safe_child(tmp / FOLDERS["visual"], name, ".npy"), frames_of(streams["visual"][i]))
                np.save(safe_child(tmp / FOLDERS["motion"], name, ".npy"), streams["motion"][i])
            done += len(chunk_ids)
        (tmp / SOURCE_FILE).write_text(
            f"{info['attrs'].get('source') or store.name} ({store.resolve()})\n", encoding="utf-8"
        )
    return done
