"""`avvp data import-han`: the LLP feature release (one .npy per video and feature) as a feature store.

Release layout: `ROOT/vggish/ID.npy` (10, 128), `ROOT/res152/ID.npy` (80, 2048), `ROOT/r2plus1d_18/ID.npy`
(10, 512). The 80 ResNet-152 frames are averaged per second (8 frames each); a clip with 72-79 frames is
first padded by repeating its last frame. Files are read by a thread pool and streamed into the store in
chunks; the store appears only when every video has been read.

The LLP release names a file by the video's YouTube id (the first 11 characters of its LLP filename,
`avvp.video_ids`); given the videos (annotations or a list), the store names them by their LLP filenames,
whichever way the files are named. Without them the ids are the file stems (a pretraining corpus).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h5py
import numpy as np

from avvp.annotations import read_dataset_videos
from avvp.classes import NUM_SNIPPETS
from avvp.console import progress
from avvp.errors import ConfigError, StoreError
from avvp.inputs import check_input_file, parse_npy
from avvp.io import atomic_path, check_writable, first_non_utf8
from avvp.runs import check_free_space, output_lock, writing
from avvp.store import CHUNK_VIDEOS, RAW_WIDTHS, StoreWriter, float_dtype
from avvp.video_ids import match_videos, shown, youtube_id

FOLDERS = {"audio": "vggish", "visual": "res152", "motion": "r2plus1d_18"}
"""Store stream -> folder of the release."""
SOURCE_FILE = "avvp_source.txt"
"""Written into a release folder by `avvp data export-han`: what the files were exported from (e.g. LLP-sim),
carried into the imported store's `source`; the LLP release has none."""
FRAMES_PER_SNIPPET = 8
MAX_FRAMES = NUM_SNIPPETS * FRAMES_PER_SNIPPET
MIN_FRAMES = MAX_FRAMES - FRAMES_PER_SNIPPET
"""Shorter visual clips are padded up to 80 frames; below 72 a whole second would be made up."""
NPY_PARSING = threading.Lock()
"""np.load parses a .npy header with `ast`, which CPython 3.11 can fail on when two threads do it at once
(SystemError "AST constructor recursion depth mismatch", python/cpython#106905): files are read in parallel,
parsed one at a time."""


@dataclass
class ImportResult:
    path: Path
    video_ids: list[str]
    """Imported videos, in store order."""
    skipped: list[str]
    """Videos left out for a missing feature file (with skip_missing)."""
    padded: int
    """Visual clips padded from 72-79 frames to 80."""
    skipped_list: Path | None
    """OUT.skipped.txt, written when videos were skipped."""
    by_youtube_id: int = 0
    """Videos whose files are named by YouTube id (the store names them by filename)."""
    shared: dict[str, list[str]] = field(default_factory=dict)
    """YouTube id -> the two or more requested videos that share its one file: left out, as it cannot say which
    clip it holds."""
    unmatched: list[str] = field(default_factory=list)
    """Files of `vggish/` (stems) that match no annotated video: not imported (with annotations only)."""
    padded_videos: list[str] = field(default_factory=list)
    """The videos of the padded visual clips, in store order."""


def skipped_list_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.skipped.txt")


def read_video_list(path: str | os.PathLike) -> list[str]:
    """Video ids from a text file: one per line, or an LLP split file (its first, `filename`, column)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such video list")
    contents = path.read_bytes()
    if (where := first_non_utf8(contents)) is not None:
        line, byte = where
        raise ConfigError(f"{path}: not UTF-8 text (line {line}, byte 0x{byte:02x}); expected one video id per line")
    text = contents.decode("utf-8")
    first_line: dict[str, int] = {}
    for line, entry in enumerate(text.splitlines(), start=1):
        video_id = entry.split("\t")[0].strip()
        if not video_id or (line == 1 and video_id == "filename"):
            continue
        if "/" in video_id or "\\" in video_id or video_id.startswith("."):
            raise ConfigError(f"{path}:{line}: {video_id!r} is not a video id")
        if video_id in first_line:
            raise ConfigError(
                f"{path}:{line}: video {video_id!r} is listed again (first at line {first_line[video_id]})"
            )
        first_line[video_id] = line
    if not first_line:
        raise ConfigError(f"{path}: lists no video")
    return list(first_line)


def release_video_ids(root: str | os.PathLike) -> list[str]:
    """The videos of a release: every `.npy` in `ROOT/vggish/`, sorted."""
    return sorted(path.stem for path in (Path(root) / FOLDERS["audio"]).glob("*.npy"))


def feature_paths(root: str | os.PathLike, video_id: str) -> dict[str, Path]:
    return {name: Path(root) / folder / f"{video_id}.npy" for name, folder in FOLDERS.items()}


def _load(path: Path, rows: tuple[int, int], width: int) -> np.ndarray:
    """A (rows, width) numeric array from a .npy file, with `rows` an inclusive range, as float32."""
    try:
        check_input_file(path, ".npy array")
        contents = path.read_bytes()
        with NPY_PARSING:
            array = parse_npy(path, contents)
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except OSError as error:
        raise StoreError(f"{path}: not a readable .npy array ({error})") from None
    expected = f"({rows[0]}..{rows[1]}, {width})" if rows[0] != rows[1] else f"({rows[0]}, {width})"
    if array.ndim != 2 or not rows[0] <= array.shape[0] <= rows[1] or array.shape[1] != width:
        raise StoreError(f"{path}: shape {array.shape}; expected {expected}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise StoreError(f"{path}: dtype {array.dtype}; expected numbers")
    if not np.isfinite(array).all():
        raise StoreError(f"{path}: holds NaN or infinite values")
    return array.astype(np.float32, copy=False)


def average_frames(frames: np.ndarray) -> np.ndarray:
    """(72..80, W) frames -> (10, W): pad to 80 by repeating the last frame, then average each 8."""
    missing = MAX_FRAMES - len(frames)
    if missing:
        frames = np.concatenate([frames, np.repeat(frames[-1:], missing, axis=0)])
    seconds = frames.reshape(NUM_SNIPPETS, FRAMES_PER_SNIPPET, -1)  # (10, 8, W)
    return seconds.mean(axis=1, dtype=np.float64).astype(np.float32)


def load_clip(root: str | os.PathLike, video_id: str) -> tuple[dict[str, np.ndarray], bool]:
    """One video's features as (10, width) float32 per stream, and whether its visual frames were padded."""
    paths = feature_paths(root, video_id)
    frames = _load(paths["visual"], (MIN_FRAMES, MAX_FRAMES), RAW_WIDTHS["visual"])
    clip = {
        "audio": _load(paths["audio"], (NUM_SNIPPETS, NUM_SNIPPETS), RAW_WIDTHS["audio"]),
        "visual": average_frames(frames),
        "motion": _load(paths["motion"], (NUM_SNIPPETS, NUM_SNIPPETS), RAW_WIDTHS["motion"]),
    }
    return clip, len(frames) < MAX_FRAMES


def _ordered_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """`pool.map` with at most `window` items in flight, so memory stays bounded; results in order."""
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def import_han(
    root: str | os.PathLike,
    out: str | os.PathLike,
    dtype: str = "float16",
    video_ids: list[str] | None = None,
    skip_missing: bool = False,
    workers: int = 8,
    overwrite: bool = False,
    show_progress: bool = False,
    annotations: str | os.PathLike | None = None,
) -> ImportResult:
    """Convert a release folder into a store at `out` (atomically).

    The videos are `video_ids`, or every video of the `annotations` folder (`read_dataset_videos`), or by
    default the files in `ROOT/vggish/` (ids = file stems). A video's files are named by its id or by its
    YouTube id (`avvp.video_ids.match_videos`); both present is an error. A video with a missing feature file
    is an error, or with `skip_missing` is left out: the ids go into the store's `skipped_video_ids` attribute
    and `OUT.skipped.txt`. Videos sharing one YouTube id file, and (with `annotations`) files of no annotated
    video, are left out and returned for the caller to report. A malformed file (too few frames, a wrong
    width) is always an error naming it. One writer at a time per `out` (`avvp.runs.output_lock`); a full disk
    is a one-line error, nothing left.
    """
    with output_lock(out), writing(out):
        return _import_han(root, out, dtype, video_ids, skip_missing, workers, overwrite, show_progress, annotations)


def _import_han(
    root,
    out,
    dtype: str,
    video_ids,
    skip_missing: bool,
    workers: int,
    overwrite: bool,
    show_progress: bool,
    annotations,
) -> ImportResult:
    root = Path(root)
    if video_ids is not None and annotations is not None:
        raise ConfigError("--annotations and --video-ids: give one of the two")
    if float_dtype(dtype) is None:
        raise ConfigError(f"--dtype {dtype}: not supported; expected float16 or float32")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1")
    skipped_list = check_writable(skipped_list_path(out), overwrite)  # an output too, whether or not one is written
    absent = [f"{folder}/" for folder in FOLDERS.values() if not (root / folder).is_dir()]
    if absent:
        raise StoreError(
            f"{root}: no {', '.join(absent)} folder; expected the LLP feature release layout "
            f"({', '.join(f'{folder}/' for folder in FOLDERS.values())})"
        )
    stems = release_video_ids(root)
    if annotations is not None:
        video_ids = read_dataset_videos(annotations)[0]
    if video_ids is None:
        if not stems:
            raise StoreError(f"{root / FOLDERS['audio']}: no .npy files")
        video_ids, file_of, shared, unmatched = stems, {stem: stem for stem in stems}, {}, []
    else:
        match = match_videos(stems, video_ids)
        if match.doubled:
            video_id, other = match.doubled[0]
            raise StoreError(
                f"{root / FOLDERS['audio']}: two files for video {video_id!r}, {video_id}.npy and {other}.npy (its "
                f"YouTube id; {len(match.doubled)} video(s) in all); expected one, named by either"
            )
        file_of, shared = match.names, match.shared
        unmatched = match.unmatched(stems) if annotations is not None else []
    left_out = {video_id for sharing in shared.values() for video_id in sharing}
    present, skipped = [], []  # present: (video id, file stem)
    first_missing: tuple[str, str, Path] | None = None  # (video id, file stem, its first missing file)
    for video_id in video_ids:
        if video_id in left_out:
            continue
        stem = file_of.get(video_id, video_id)
        missing = [path for path in feature_paths(root, stem).values() if not path.is_file()]
        if not missing:
            present.append((video_id, stem))
            continue
        skipped.append(video_id)
        first_missing = first_missing or (video_id, stem, missing[0])
    if skipped and not skip_missing:
        video_id, stem, path = first_missing
        also = f"; nor {youtube_id(video_id)}.npy, its YouTube id" if youtube_id(video_id) != stem else ""
        raise StoreError(
            f"{path}: no such file (video {video_id!r}{also}); {len(skipped)} of the {len(video_ids)} videos lack "
            f"a feature file ({shown(skipped)}); pass --skip-missing to leave them out"
        )
    if not present:
        raise StoreError(f"{root}: none of the {len(video_ids)} requested videos has all three feature files")

    check_free_space(out, len(present) * NUM_SNIPPETS * sum(RAW_WIDTHS.values()) * float_dtype(dtype).itemsize)
    padded_videos = []
    attrs = {
        "skipped_video_ids": np.array(skipped, dtype=h5py.string_dtype()),
        "shared_file_video_ids": np.array(sorted(left_out), dtype=h5py.string_dtype()),
    }
    source = f"LLP feature release {root.resolve()}" + exported_from(root)
    with (
        StoreWriter(out, RAW_WIDTHS, dtype=dtype, source=source, attrs=attrs, overwrite=overwrite) as writer,
        ThreadPoolExecutor(max_workers=workers) as pool,
        # Closed before the pool shuts down, so that on an error the queued reads are cancelled, not waited for.
        closing(_ordered_map(pool, partial(load_clip, root), [s for _, s in present], 2 * CHUNK_VIDEOS)) as clips,
        progress(disable=not show_progress) as bar,
    ):
        task = bar.add_task("import-han", total=len(present))
        for start in range(0, len(present), CHUNK_VIDEOS):
            chunk_ids = [video_id for video_id, _ in present[start : start + CHUNK_VIDEOS]]
            chunk = []
            for video_id in chunk_ids:
                clip, was_padded = next(clips)
                chunk.append(clip)
                if was_padded:
                    padded_videos.append(video_id)
                bar.advance(task)
            with np.errstate(over="ignore"):  # an overflow is reported below, naming the file
                streams = {name: np.stack([clip[name] for clip in chunk]).astype(writer.dtype) for name in FOLDERS}
            for name, array in streams.items():
                overflow = ~np.isfinite(array).all(axis=(1, 2))
                if overflow.any():
                    _, stem = present[start + int(np.flatnonzero(overflow)[0])]
                    raise StoreError(
                        f"{feature_paths(root, stem)[name]}: values overflow {writer.dtype}; use --dtype float32"
                    )
            writer.append(chunk_ids, **streams)

    if skipped:
        with atomic_path(skipped_list, overwrite) as tmp:
            tmp.write_text("".join(f"{video_id}\n" for video_id in skipped), encoding="utf-8")
    elif skipped_list.exists():
        skipped_list.unlink()  # a stale list from the import this one replaces (with overwrite)
    return ImportResult(
        path=Path(out),
        video_ids=[video_id for video_id, _ in present],
        skipped=skipped,
        padded=len(padded_videos),
        padded_videos=padded_videos,
        skipped_list=skipped_list if skipped else None,
        by_youtube_id=sum(video_id != stem for video_id, stem in present),
        shared=shared,
        unmatched=unmatched,
    )


def exported_from(root: Path) -> str:
    """' (exported from ...)' where the folder says what it was exported from (SOURCE_FILE), else ''."""
    path = root / SOURCE_FILE
    if path.is_symlink() or not path.is_file():  # a link could carry any file's first line into the store
        return ""
    with open(path, "rb") as handle:
        text = " ".join(handle.read(4096).decode("utf-8", errors="replace").split())[:200]
    return f" (exported from {text})" if text else ""
