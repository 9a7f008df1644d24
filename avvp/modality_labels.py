"""The modality-aware label file (HDF5): `avvp-finetune refine` writes it, `avvp-finetune --labels` reads it.

Datasets, one row per training video: `video_ids` (N,) utf-8; `weak` (N, 25) bool, the weak labels refined;
`audio` and `visual` (N, 25) bool, the refined labels (each a subset of `weak`); `partners` (N,) int64, the
row of the video whose audio or visual track replaced this one's (it shares no weak label with it); the
evidence, `evidence/NAME` (N, 25) float32 for NAME in EVIDENCE; `audio_error`, `visual_error` (25,) float32,
the first model's per-class error rates on the training split. Root attributes: `schema`, `created_by`, the
rule, its thresholds, the seed, the run, and `report` (JSON, the figures `refine` printed).

LLP-sim also knows which training classes are heard and which are seen: `avvp data synth` writes them
beside the annotations in the LLP eval format (TRAIN_TRUTH_FILES); the real LLP has no such files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from avvp.annotations import SPLIT_FILES, load_split, read_events
from avvp.classes import CLASSES, NUM_CLASSES
from avvp.errors import StoreError
from avvp.output import atomic_path, hdf5_writer, writing
from avvp.store import SCHEMA_VERSION, _created_by, _open, _plain, _read_ids

TRAIN_TRUTH_FILES = {"audio": "LLPsim_train_audio.csv", "visual": "LLPsim_train_visual.csv"}
"""LLP-sim's audio and visual events of the training videos (LLP eval format), beside AVVP_train.csv."""
EVIDENCE = (
    "audio_prob",
    "visual_prob",
    "audio_swap_audio_prob",
    "audio_swap_visual_prob",
    "visual_swap_audio_prob",
    "visual_swap_visual_prob",
)
"""Video-level probabilities of the first model: of the audio and visual streams as they are, then with the
video's audio replaced by its partner's (audio_swap_*), then with its visual and motion replaced (visual_swap_*)."""
LABEL_SETS = ("weak", "audio", "visual")


@dataclass
class ModalityLabels:
    """Refined audio and visual labels of the training videos, with the evidence they were decided from."""

    video_ids: list[str]
    weak: np.ndarray
    """(N, 25) bool weak labels."""
    audio: np.ndarray
    """(N, 25) bool: the class is heard (refined)."""
    visual: np.ndarray
    """(N, 25) bool: the class is seen (refined)."""
    partners: np.ndarray
    """(N,) int64: row of the swap partner."""
    evidence: dict[str, np.ndarray] = field(default_factory=dict)
    """EVIDENCE name -> (N, 25) float32."""
    audio_error: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.float32))
    """(25,) the first model's per-class error rate of the audio stream against the weak labels."""
    visual_error: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.float32))
    """(25,) the same for the visual stream."""
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.video_ids)
        for name in LABEL_SETS:
            if getattr(self, name).shape != (n, NUM_CLASSES):
                raise ValueError(f"{name}: shape {getattr(self, name).shape}; expected ({n}, {NUM_CLASSES})")
        if self.partners.shape != (n,):
            raise ValueError(f"partners: shape {self.partners.shape}; expected ({n},)")


def write_modality_labels(path: str | os.PathLike, labels: ModalityLabels, overwrite: bool = False) -> Path:
    """Write a label file atomically."""
    with writing(path), atomic_path(path, overwrite) as tmp:
        with hdf5_writer(tmp) as handle:
            handle.attrs["schema"] = SCHEMA_VERSION
            handle.attrs["created_by"] = _created_by()
            for key, value in labels.attrs.items():
                handle.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
            handle.create_dataset(
                "video_ids", data=np.asarray(labels.video_ids, dtype=object), dtype=h5py.string_dtype()
            )
            for name in LABEL_SETS:
                handle.create_dataset(name, data=getattr(labels, name).astype(bool))
            handle.create_dataset("partners", data=labels.partners.astype(np.int64))
            for name, values in labels.evidence.items():
                handle.create_dataset(f"evidence/{name}", data=values.astype(np.float32))
            handle.create_dataset("audio_error", data=labels.audio_error.astype(np.float32))
            handle.create_dataset("visual_error", data=labels.visual_error.astype(np.float32))
    return Path(path)


def read_modality_labels(path: str | os.PathLike) -> ModalityLabels:
    """Read and check a label file; a file of any other kind is a one-line error naming it."""
    path = Path(path)
    with _open(path) as handle:
        video_ids = _read_ids(path, handle)
        n = len(video_ids)
        missing = [name for name in (*LABEL_SETS, "partners") if name not in handle]
        if missing:
            raise StoreError(
                f"{path}: no {', '.join(repr(m) for m in missing)} dataset(s); "
                "expected a modality-aware label file from avvp-finetune refine"
            )
        sets = {name: handle[name][()] for name in LABEL_SETS}
        partners = handle["partners"][()]
        evidence = {name: handle[f"evidence/{name}"][()] for name in EVIDENCE if f"evidence/{name}" in handle}
        errors = {name: handle[name][()] for name in ("audio_error", "visual_error") if name in handle}
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
    for name, values in sets.items():
        if values.shape != (n, NUM_CLASSES) or values.dtype != bool:
            raise StoreError(f"{path}: {name!r} is {values.dtype} {values.shape}; expected bool ({n}, {NUM_CLASSES})")
    for name in ("audio", "visual"):
        extra = sets[name] & ~sets["weak"]
        if extra.any():
            row, column = np.argwhere(extra)[0]
            raise StoreError(
                f"{path}: video {video_ids[row]!r} has the {name} label of class {column} without the weak label; "
                "refined labels must be a subset of the weak labels"
            )
    if partners.shape != (n,) or partners.dtype.kind not in "iu" or ((partners < 0) | (partners >= n)).any():
        raise StoreError(f"{path}: 'partners' must be {n} row numbers in 0..{n - 1}")
    if isinstance(attrs.get("report"), str):
        attrs["report"] = json.loads(attrs["report"])
    return ModalityLabels(
        video_ids=video_ids,
        partners=partners.astype(np.int64),
        evidence=evidence,
        attrs=attrs,
        **sets,
        **{name: values.astype(np.float32) for name, values in errors.items()},
    )


def align_to_split(labels: ModalityLabels, video_ids: Sequence[str], weak: np.ndarray, path, split_file) -> np.ndarray:
    """(N, 2, 25) bool refined (audio, visual) labels in the order of a split's `video_ids`.

    The file must hold exactly the split's videos (in any order) with the same weak labels; otherwise a
    one-line error names the first differences.
    """
    position = {video_id: i for i, video_id in enumerate(labels.video_ids)}
    missing = [v for v in video_ids if v not in position]
    wanted = set(video_ids)
    extra = [v for v in labels.video_ids if v not in wanted]
    if missing or extra:
        problems = [
            f"{len(found)} {what} (e.g. {found[0]!r})"
            for what, found in (
                ("of the split's videos are not in it", missing),
                ("of its videos are not in the split", extra),
            )
            if found
        ]
        raise StoreError(
            f"{path}: its {len(labels.video_ids)} videos are not the {len(video_ids)} of {split_file}: "
            f"{'; '.join(problems)}; refine with the same annotations"
        )
    rows = np.array([position[v] for v in video_ids], dtype=np.int64)
    differ = np.flatnonzero((labels.weak[rows] != weak).any(1))
    if len(differ):
        raise StoreError(
            f"{path}: the weak labels of {len(differ)} video(s) differ from {split_file} "
            f"(e.g. {video_ids[differ[0]]!r}); refine with the same annotations"
        )
    return np.stack([labels.audio[rows], labels.visual[rows]], axis=1)


def train_truth(annotations: str | os.PathLike, video_ids: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """LLP-sim's (heard, seen) (N, 25) bool for training videos, or None where the folder has no such files."""
    folder = Path(annotations)
    paths = {name: folder / filename for name, filename in TRAIN_TRUTH_FILES.items()}
    if not all(path.is_file() for path in paths.values()):
        return None
    heard = read_events(paths["audio"], video_ids).any(-1)
    seen = read_events(paths["visual"], video_ids).any(-1)
    return heard, seen


def train_split_labels(
    path: str | os.PathLike, annotations: str | os.PathLike
) -> tuple[ModalityLabels, tuple[np.ndarray, np.ndarray] | None]:
    """A label file checked against the training split of `annotations` (the same videos and weak labels, or a
    one-line error), with LLP-sim's (heard, seen) truth in the file's order (None where there is none)."""
    split = load_split(annotations, "train")
    labels = read_modality_labels(path)
    align_to_split(labels, split.video_ids, split.weak.labels, path, Path(annotations) / SPLIT_FILES["train"])
    return labels, train_truth(annotations, labels.video_ids)


def label_quality(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Precision and recall (%) of (N, 25) bool labels against (N, 25) bool truth: overall and per class.

    Overall figures pool every (video, class) pair; a class with no label (or no truth) has a NaN precision
    (recall) of its own.
    """
    hits = labels & truth
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class_precision = 100 * hits.sum(0) / labels.sum(0)
        per_class_recall = 100 * hits.sum(0) / truth.sum(0)
    return {
        "precision": 100 * float(hits.sum() / max(labels.sum(), 1)),
        "recall": 100 * float(hits.sum() / max(truth.sum(), 1)),
        "labels": int(labels.sum()),
        "truth": int(truth.sum()),
        "per_class_precision": per_class_precision.tolist(),
        "per_class_recall": per_class_recall.tolist(),
    }


def label_report(labels: ModalityLabels, truth: tuple[np.ndarray, np.ndarray] | None) -> dict:
    """Per modality: labels dropped per class; with LLP-sim's truth, precision/recall of weak and refined labels."""
    report: dict = {
        "videos": len(labels.video_ids),
        "weak_per_class": labels.weak.sum(0).tolist(),
        "dropped_per_class": {
            "audio": (labels.weak & ~labels.audio).sum(0).tolist(),
            "visual": (labels.weak & ~labels.visual).sum(0).tolist(),
        },
        "truth": truth is not None,
    }
    if truth is not None:
        for name, kept, true in (("audio", labels.audio, truth[0]), ("visual", labels.visual, truth[1])):
            report[name] = {"weak": label_quality(labels.weak, true), "refined": label_quality(kept, true)}
    return report


def format_report(report: dict) -> str:
    """The report as the lines `refine` prints."""
    lines = []
    if report["truth"]:
        lines.append(f"labels of the {report['videos']} training videos against LLP-sim's truth (heard, seen):")
        lines.append(f"{'':8}{'labels':>16}{'precision':>11}{'recall':>9}")
        for name in ("audio", "visual"):
            weak, refined = report[name]["weak"], report[name]["refined"]
            for kind, figures in (("weak", weak), ("refined", refined)):
                lines.append(
                    f"{name:<8}{kind:>8}{figures['labels']:>8}{figures['precision']:>11.1f}{figures['recall']:>9.1f}"
                )
            lines.append(
                f"{name:<8}precision {refined['precision'] - weak['precision']:+.1f} points "
                f"at a recall loss of {weak['recall'] - refined['recall']:.1f} points"
            )
    else:
        lines.append(
            f"no training-split truth in the annotations (real LLP has none): the {report['videos']} videos' "
            "label changes per class instead"
        )
    lines.append(f"{'class':<24}{'weak':>7}{'audio dropped':>15}{'visual dropped':>16}")
    dropped = report["dropped_per_class"]
    for i, name in enumerate(CLASSES):
        lines.append(f"{name:<24}{report['weak_per_class'][i]:>7}{dropped['audio'][i]:>15}{dropped['visual'][i]:>16}")
    lines.append(
        f"{'total':<24}{sum(report['weak_per_class']):>7}{sum(dropped['audio']):>15}{sum(dropped['visual']):>16}"
    )
    return "\n".join(lines)
