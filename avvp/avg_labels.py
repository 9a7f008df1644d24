"""The AVG label file (HDF5): the grounding stage writes it, the pretraining stage reads it.

Datasets: `video_ids` (N,) utf-8; `components` (N, 10) int8, the connected-component id of each snippet
(ids numbered 0, 1, ... in order of each component's first snippet); `labels` (N, 10, 10) bool, 1 where two
snippets are in the same component. Root attributes: `schema`, `created_by`, `source` (the feature store),
and whatever the grounding stage records (thresholds, rule, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from avvp.classes import NUM_SNIPPETS
from avvp.errors import StoreError
from avvp.output import atomic_path, close_hdf5, create_hdf5
from avvp.store import SCHEMA_VERSION, _created_by, _open, _plain, _read_ids, close_discarding


@dataclass
class AvgLabels:
    """Grounding labels of a corpus, in the order of `video_ids`."""

    video_ids: list[str]
    components: np.ndarray
    """(N, 10) int8: component id of each snippet."""
    attrs: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        """(N, 10, 10) bool: snippets i and j are grounded to each other (same component)."""
        return self.components[:, :, None] == self.components[:, None, :]


def check_components(path: Path, components: np.ndarray, video_ids: Sequence[str]) -> None:
    """Component ids must be integers in 0..9 (a video has 10 snippets); the error names the first bad video."""
    if components.dtype.kind not in "iu":
        raise StoreError(f"{path}: component ids of dtype {components.dtype}; expected integers")
    bad = (components < 0) | (components >= NUM_SNIPPETS)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise StoreError(
            f"{path}: video {video_ids[row]!r} has component ids {components[row].tolist()}; "
            f"expected ids in 0..{NUM_SNIPPETS - 1}"
        )


def labels_from_components(components: np.ndarray) -> np.ndarray:
    """(N, 10) component ids -> (N, 10, 10) bool same-component matrix."""
    return components[:, :, None] == components[:, None, :]


class AvgLabelWriter:
    """Streams AVG labels to disk chunk by chunk; the file appears only when the block succeeds."""

    def __init__(self, path: str | os.PathLike, attrs: dict | None = None, overwrite: bool = False):
        self.path = Path(path)
        self._atomic = atomic_path(self.path, overwrite)
        tmp = self._atomic.__enter__()
        self._file = create_hdf5(tmp)
        self._file.attrs["schema"] = SCHEMA_VERSION
        self._file.attrs["created_by"] = _created_by()
        for key, value in (attrs or {}).items():
            self._file.attrs[key] = value
        self._ids = self._file.create_dataset(
            "video_ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(4096,)
        )
        self._components = self._file.create_dataset(
            "components",
            shape=(0, NUM_SNIPPETS),
            maxshape=(None, NUM_SNIPPETS),
            dtype=np.int8,
            chunks=(4096, NUM_SNIPPETS),
        )
        self._labels = self._file.create_dataset(
            "labels",
            shape=(0, NUM_SNIPPETS, NUM_SNIPPETS),
            maxshape=(None, NUM_SNIPPETS, NUM_SNIPPETS),
            dtype=bool,
            chunks=(4096, NUM_SNIPPETS, NUM_SNIPPETS),
        )
        self.count = 0

    def set_attrs(self, **attrs) -> None:
        """Add root attributes (e.g. figures known only at the end)."""
        for key, value in attrs.items():
            self._file.attrs[key] = value

    def append(self, video_ids: Sequence[str], components: np.ndarray) -> None:
        """Append a chunk: `video_ids` (n,), `components` (n, 10) integer component ids."""
        n = len(video_ids)
        if components.shape != (n, NUM_SNIPPETS):
            raise StoreError(
                f"{self.path}: components chunk has shape {components.shape}; expected ({n}, {NUM_SNIPPETS})"
            )
        check_components(self.path, components, video_ids)
        start, stop = self.count, self.count + n
        self._ids.resize((stop,))
        self._ids[start:stop] = np.asarray(video_ids, dtype=object)
        self._components.resize((stop, NUM_SNIPPETS))
        self._components[start:stop] = components.astype(np.int8)
        self._labels.resize((stop, NUM_SNIPPETS, NUM_SNIPPETS))
        self._labels[start:stop] = labels_from_components(components)
        self.count = stop

    def __enter__(self) -> AvgLabelWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                close_hdf5(self._file)
            except BaseException as error:  # a full disk at the final flush: the staged file goes too
                self._atomic.__exit__(type(error), error, error.__traceback__)
                raise
        else:
            close_discarding(self._file)
        self._atomic.__exit__(exc_type, exc, tb)


def write_avg_labels(
    path: str | os.PathLike,
    video_ids: Sequence[str],
    components: np.ndarray,
    attrs: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a whole label file at once (atomically)."""
    with AvgLabelWriter(path, attrs=attrs, overwrite=overwrite) as writer:
        writer.append(list(video_ids), components)
    return Path(path)


def read_avg_labels(path: str | os.PathLike, video_ids: Sequence[str] | None = None) -> AvgLabels:
    """Read and validate a label file; with `video_ids`, they must be exactly the file's (same order)."""
    path = Path(path)
    with _open(path) as handle:
        stored_ids = _read_ids(path, handle)
        if "components" not in handle:
            raise StoreError(f"{path}: no 'components' dataset; expected an AVG label file from avvp-groundtruth")
        components = handle["components"][()]
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
    if components.shape != (len(stored_ids), NUM_SNIPPETS):
        raise StoreError(
            f"{path}: 'components' has shape {components.shape}; expected ({len(stored_ids)}, {NUM_SNIPPETS})"
        )
    check_components(path, components, stored_ids)
    if video_ids is not None and list(video_ids) != stored_ids:
        if len(video_ids) != len(stored_ids):
            raise StoreError(f"{path}: labels for {len(stored_ids)} videos; the feature store has {len(video_ids)}")
        first = next(i for i, (a, b) in enumerate(zip(video_ids, stored_ids, strict=True)) if a != b)
        raise StoreError(
            f"{path}: video ids differ from the feature store's at position {first} "
            f"({stored_ids[first]!r} vs {video_ids[first]!r})"
        )
    return AvgLabels(video_ids=stored_ids, components=components.astype(np.int8), attrs=attrs)
