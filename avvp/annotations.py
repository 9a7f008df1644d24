"""Reading and writing the LLP annotation files (tab-separated, with a header).

Split files (`AVVP_train.csv`, `AVVP_val_pd.csv`, `AVVP_test_pd.csv`) hold `filename  event_labels`;
eval files (`AVVP_eval_audio.csv`, `AVVP_eval_visual.csv`) hold `filename  onset  offset  event_labels`,
one event per row, integer seconds, offset exclusive.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.classes import CLASS_INDEX, CLASSES, NUM_CLASSES, NUM_SNIPPETS
from avvp.errors import AnnotationError
from avvp.inputs import check_input_file
from avvp.io import atomic_path, first_non_utf8

SPLIT_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
EVAL_FILES = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
DATASET_FILE = "AVVP_dataset_full.csv"
"""The HAN release's list of all 11,849 LLP videos (`filename  event_labels`, as a split file)."""
WEAK_COLUMNS = ("filename", "event_labels")
EVENT_COLUMNS = ("filename", "onset", "offset", "event_labels")

# `YTID_start_end`. The YouTube id has 11 characters; the LLP release lost the leading '-' of a few
# ids (e.g. `P7x4FV4lg_570_580`), so shorter ids are accepted. A few train clips have decimal times.
FILENAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,11}_\d+(\.\d+)?_\d+(\.\d+)?$")
SECOND_PATTERN = re.compile(r"^\d+$")


@dataclass
class WeakLabels:
    """Video-level labels of one split."""

    video_ids: list[str]
    labels: np.ndarray
    """(N, 25) bool: the classes each video contains."""


@dataclass
class DenseLabels:
    """Snippet-level labels (ground truth or predictions) of a list of videos."""

    video_ids: list[str]
    audio: np.ndarray
    """(N, 25, 10) bool: class heard in snippet."""
    visual: np.ndarray
    """(N, 25, 10) bool: class seen in snippet."""

    @property
    def audio_visual(self) -> np.ndarray:
        """(N, 25, 10) bool: heard and seen in the same snippet."""
        return self.audio & self.visual

    def take(self, rows: list[int]) -> DenseLabels:
        """The labels of some of the videos (rows, in that order)."""
        return DenseLabels([self.video_ids[i] for i in rows], self.audio[rows], self.visual[rows])


def _read_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """Rows of a tab-separated file with a header holding `columns`, as (line number, fields in that order)."""
    if not path.exists():
        raise AnnotationError(f"{path}: no such annotation file")
    if path.is_dir():
        raise AnnotationError(f"{path}: is a directory; expected a tab-separated annotation file")
    check_input_file(path, "tab-separated annotation file", AnnotationError)  # a FIFO or device: never read
    try:
        # utf-8-sig: a byte-order mark (as some spreadsheet exports write) is not part of the first column name.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            return _parse_rows(path, reader, columns)
    except UnicodeDecodeError:
        raise AnnotationError(_not_utf8_message(path)) from None
    except csv.Error as error:
        raise AnnotationError(f"{path}:{reader.line_num}: {error}; expected tab-separated text") from None
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read ({error.strerror})") from None


def _parse_rows(path: Path, reader, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    header = next(reader, None)
    if header is None:
        raise AnnotationError(f"{path}:1: empty file; expected a header with columns {', '.join(columns)}")
    header = [name.strip() for name in header]
    missing = [name for name in columns if name not in header]
    if missing:
        raise AnnotationError(
            f"{path}:1: missing column(s) {', '.join(missing)}; expected tab-separated columns "
            f"{', '.join(columns)} (found {', '.join(header) or 'none'})"
        )
    positions = [header.index(name) for name in columns]
    rows = []
    for row in reader:
        line = reader.line_num
        if not row or all(not field.strip() for field in row):
            continue
        if len(row) != len(header):
            raise AnnotationError(
                f"{path}:{line}: {len(row)} tab-separated field(s); expected {len(header)} ({', '.join(header)})"
            )
        rows.append((line, [row[i].strip() for i in positions]))
    return rows


def _not_utf8_message(path: Path) -> str:
    """Name the first line that is not UTF-8 (text reading decodes whole buffers, so it cannot say which)."""
    where = first_non_utf8(path.read_bytes())
    if where is None:
        return f"{path}: not UTF-8 text; expected a tab-separated file"
    line, byte = where
    return f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}); expected a tab-separated file"


def _check_filename(path: Path, line: int, filename: str) -> str:
    if not FILENAME_PATTERN.match(filename):
        raise AnnotationError(f"{path}:{line}: filename {filename!r} is not YTID_start_end (e.g. 'BjCEufrlXm4_20_30')")
    return filename


def _parse_classes(path: Path, line: int, field: str) -> list[int]:
    names = [name.strip() for name in field.split(",")]
    indices = []
    for name in names:
        if name not in CLASS_INDEX:
            raise AnnotationError(f"{path}:{line}: unknown class {name!r}; expected one of the 25 LLP classes")
        indices.append(CLASS_INDEX[name])
    return indices


def _parse_second(path: Path, line: int, field: str, name: str) -> int:
    if not SECOND_PATTERN.match(field) or int(field) > NUM_SNIPPETS:
        raise AnnotationError(f"{path}:{line}: {name} {field!r} is not a whole second in 0..{NUM_SNIPPETS}")
    return int(field)


def read_weak_labels(path: str | os.PathLike) -> WeakLabels:
    """Read a split file into video ids and an (N, 25) bool label matrix, in file order."""
    path = Path(path)
    rows = _read_rows(path, WEAK_COLUMNS)
    first_line: dict[str, int] = {}
    labels = np.zeros((len(rows), NUM_CLASSES), dtype=bool)
    for i, (line, (filename, field)) in enumerate(rows):
        _check_filename(path, line, filename)
        if filename in first_line:
            raise AnnotationError(
                f"{path}:{line}: video {filename!r} is listed again (first at line {first_line[filename]})"
            )
        first_line[filename] = line
        labels[i, _parse_classes(path, line, field)] = True
    return WeakLabels(video_ids=list(first_line), labels=labels)


def read_events(path: str | os.PathLike, video_ids: list[str], strict: bool = True) -> np.ndarray:
    """Read an eval-format file into an (N, 25, 10) bool matrix over `video_ids`.

    Rows for videos not in `video_ids` are checked and skipped (the eval files hold val and test).
    With `strict`, a row whose onset is not below its offset is an error; without it, such a row marks no
    snippet, as the official LLP evaluation does (the released ground-truth files contain a few).
    """
    return _read_events(Path(path), video_ids, strict)[0]


def _read_events(path: Path, video_ids: list[str], strict: bool) -> tuple[np.ndarray, list[str]]:
    """`read_events`, plus the filename of every row skipped for a video not in `video_ids`."""
    position = {video_id: i for i, video_id in enumerate(video_ids)}
    dense = np.zeros((len(video_ids), NUM_CLASSES, NUM_SNIPPETS), dtype=bool)
    empty_lines = []
    skipped = []
    first_line: dict[tuple[str, int, int, int], int] = {}  # (video, onset, offset, class) -> line
    for line, (filename, onset_field, offset_field, field) in _read_rows(path, EVENT_COLUMNS):
        _check_filename(path, line, filename)
        onset = _parse_second(path, line, onset_field, "onset")
        offset = _parse_second(path, line, offset_field, "offset")
        classes = _parse_classes(path, line, field)
        if strict:  # predictions: each event once (the released ground truth repeats a few, read leniently)
            for index in classes:
                event = (filename, onset, offset, index)
                if event in first_line:
                    raise AnnotationError(
                        f"{path}:{line}: the event {filename} {onset}-{offset} {CLASSES[index]} is also at line "
                        f"{first_line[event]}; each event is listed once"
                    )
                first_line[event] = line
        if onset >= offset:
            if strict:
                raise AnnotationError(f"{path}:{line}: onset {onset} is not below offset {offset}")
            if filename in position:
                empty_lines.append(line)
        elif filename in position:
            dense[position[filename], classes, onset:offset] = True
        if filename not in position:
            skipped.append(filename)
    if empty_lines:
        shown = ", ".join(str(line) for line in empty_lines[:5]) + (", ..." if len(empty_lines) > 5 else "")
        print(
            f"note: {path}: {len(empty_lines)} row(s) with onset >= offset mark no snippet "
            f"(as in the official evaluation): line(s) {shown}",
            file=sys.stderr,
        )
    return dense, skipped


def read_dataset_videos(annotations: str | os.PathLike) -> tuple[list[str], list[Path]]:
    """Every video of an LLP annotation folder and the files that list them: `AVVP_dataset_full.csv`, or where
    it is absent the split files present (a video in two of them is an error)."""
    folder = Path(annotations)
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such annotation folder"
        raise AnnotationError(f"{folder}: {what}; expected a folder of LLP annotation files ({DATASET_FILE}, ...)")
    if (folder / DATASET_FILE).exists():
        return read_weak_labels(folder / DATASET_FILE).video_ids, [folder / DATASET_FILE]
    files = [folder / name for name in SPLIT_FILES.values() if (folder / name).exists()]
    if not files:
        raise AnnotationError(
            f"{folder}: no {DATASET_FILE} and no split file ({', '.join(SPLIT_FILES.values())}); "
            "expected a folder of LLP annotation files"
        )
    listed_in: dict[str, Path] = {}
    for path in files:
        for video_id in read_weak_labels(path).video_ids:
            if video_id in listed_in:
                raise AnnotationError(
                    f"{path}: video {video_id!r} is also in {listed_in[video_id]}; a video belongs to one split"
                )
            listed_in[video_id] = path
    return list(listed_in), files


@dataclass
class Split:
    """One LLP split: weak labels, plus dense ground truth for val and test."""

    name: str
    weak: WeakLabels
    dense: DenseLabels | None

    @property
    def video_ids(self) -> list[str]:
        return self.weak.video_ids

    def take(self, rows: list[int]) -> Split:
        """The split cut to some of its videos (rows, in that order): e.g. those a feature store holds."""
        weak = WeakLabels([self.video_ids[i] for i in rows], self.weak.labels[rows])
        return Split(self.name, weak, None if self.dense is None else self.dense.take(rows))


def load_scored_split(annotations: str | os.PathLike, split: str) -> Split:
    """`load_split` of a split to score (val or test): a split file holding no video (only a header) is an error."""
    data = load_split(annotations, split)
    if not data.video_ids:
        raise AnnotationError(f"{Path(annotations) / SPLIT_FILES[split]}: no videos (only a header); nothing to score")
    return data


def load_split(annotations: str | os.PathLike, split: str, dense: bool | None = None) -> Split:
    """Load a split from an annotation folder in the LLP layout.

    `dense` defaults to True for val and test. Ground-truth eval files are read leniently (see `read_events`).
    """
    if split not in SPLIT_FILES:
        raise AnnotationError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_FILES)}")
    folder = Path(annotations)
    weak = read_weak_labels(folder / SPLIT_FILES[split])
    if dense is None:
        dense = split != "train"
    labels = None
    if dense:
        absent = [name for name in EVAL_FILES.values() if not (folder / name).exists()]
        if absent:
            raise AnnotationError(
                f"{folder}: no {' and no '.join(absent)} ({len(absent)} of the {len(EVAL_FILES)} eval files); they "
                f"hold the val and test videos' snippet-level events, read to validate and score the {split} split. "
                f"Training reads only the weak labels of {SPLIT_FILES['train']}: avvp-finetune --no-eval trains "
                "without them (the last epoch kept, no test scores)"
            )
        audio = read_events(folder / EVAL_FILES["audio"], weak.video_ids, strict=False)
        visual = read_events(folder / EVAL_FILES["visual"], weak.video_ids, strict=False)
        labels = DenseLabels(video_ids=weak.video_ids, audio=audio, visual=visual)
    return Split(name=split, weak=weak, dense=labels)


def read_predictions(
    audio_path: str | os.PathLike, visual_path: str | os.PathLike, video_ids: list[str]
) -> DenseLabels:
    """Read predictions in the LLP eval format (strictly: every row must be a real event).

    Rows for videos not in `video_ids` are ignored, as the official evaluation (which looks predictions up by
    the split's ids) does; one note on stderr says how many, so predictions of another split do not pass unseen.
    """
    audio, audio_skipped = _read_events(Path(audio_path), video_ids, strict=True)
    visual, visual_skipped = _read_events(Path(visual_path), video_ids, strict=True)
    skipped = audio_skipped + visual_skipped
    if skipped:
        videos = list(dict.fromkeys(skipped))
        files = [str(path) for path, rows in ((audio_path, audio_skipped), (visual_path, visual_skipped)) if rows]
        shown = ", ".join(repr(video) for video in videos[:3]) + (", ..." if len(videos) > 3 else "")
        print(
            f"note: {', '.join(files)}: {len(skipped)} prediction row(s) for {len(videos)} video(s) not in the "
            f"{len(video_ids)} evaluated are ignored: {shown}",
            file=sys.stderr,
        )
    return DenseLabels(video_ids=list(video_ids), audio=audio, visual=visual)


def runs_of(row: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D bool array, as (onset, offset) with offset exclusive."""
    padded = np.concatenate([[False], row.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def dense_to_rows(video_ids: list[str], dense: np.ndarray) -> list[tuple[str, int, int, str]]:
    """Events of an (N, 25, 10) matrix as eval-format rows (filename, onset, offset, class)."""
    rows = []
    for video_index, class_index in zip(*np.nonzero(dense.any(axis=2)), strict=True):
        for onset, offset in runs_of(dense[video_index, class_index]):
            rows.append((video_ids[video_index], onset, offset, CLASSES[class_index]))
    return rows


def write_events(path: str | os.PathLike, video_ids: list[str], dense: np.ndarray, overwrite: bool = False) -> Path:
    """Write an (N, 25, 10) bool matrix in the LLP eval format, one maximal run per row, atomically."""
    if dense.shape != (len(video_ids), NUM_CLASSES, NUM_SNIPPETS):
        raise ValueError(f"expected dense labels of shape ({len(video_ids)}, 25, 10), got {dense.shape}")
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(EVENT_COLUMNS)
            writer.writerows(dense_to_rows(video_ids, dense))
    return Path(path)


def write_weak_labels(path: str | os.PathLike, weak: WeakLabels, overwrite: bool = False) -> Path:
    """Write a split file (`filename  event_labels`) atomically."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(WEAK_COLUMNS)
            for video_id, row in zip(weak.video_ids, weak.labels, strict=True):
                writer.writerow((video_id, ",".join(CLASSES[i] for i in np.flatnonzero(row))))
    return Path(path)
