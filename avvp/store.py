"""The HDF5 feature store: one file per corpus, one (N, 10, W) dataset per stream.

Schema (version 1): `video_ids` (N,) utf-8; streams such as `audio` (N, 10, 128) VGGish, `visual`
(N, 10, 2048) ResNet-152 averaged per second, `motion` (N, 10, 512) R(2+1)D, float16 or float32; root
attributes `schema`, `source`, `created_by`. A store may hold other streams of any width (e.g. exported
pretrained embeddings).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from avvp.classes import NUM_SNIPPETS
from avvp.errors import StoreError
from avvp.inputs import open_hdf5, read_strings
from avvp.output import atomic_path, close_discarding, close_hdf5, create_hdf5  # noqa: F401  (close_discarding: re-exported)

SCHEMA_VERSION = 1
RAW_WIDTHS = {"audio": 128, "visual": 2048, "motion": 512}
"""Widths of the LLP feature release (VGGish, ResNet-152, R(2+1)D-18)."""
FLOAT_DTYPES = (np.dtype("float16"), np.dtype("float32"))
CHUNK_VIDEOS = 256
"""Videos per HDF5 chunk and per read when streaming."""


def float_dtype(dtype: str | np.dtype) -> np.dtype | None:
    """`dtype` as a numpy dtype when a store may hold it (FLOAT_DTYPES), else None (unknown names too)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        return None
    return dtype if dtype in FLOAT_DTYPES else None


def _created_by() -> str:
    from avvp import __version__

    return f"avvp {__version__}"


class StoreWriter:
    """Streams a feature store to disk chunk by chunk; the file appears only when `close` succeeds.

    Use as a context manager: `with StoreWriter(path, {"audio": 128}) as w: w.append(ids, audio=a)`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        widths: dict[str, int],
        dtype: str | np.dtype = "float16",
        source: str = "",
        attrs: dict | None = None,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.widths = dict(widths)
        self.dtype = float_dtype(dtype)
        if self.dtype is None:
            raise StoreError(f"{self.path}: dtype {dtype} not supported; expected float16 or float32")
        self._atomic = atomic_path(self.path, overwrite)
        tmp = self._atomic.__enter__()
        self._file = create_hdf5(tmp)
        self._file.attrs["schema"] = SCHEMA_VERSION
        self._file.attrs["source"] = source
        self._file.attrs["created_by"] = _created_by()
        for key, value in (attrs or {}).items():
            self._file.attrs[key] = value
        self._ids = self._file.create_dataset(
            "video_ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(4096,)
        )
        self._streams = {
            name: self._file.create_dataset(
                name,
                shape=(0, NUM_SNIPPETS, width),
                maxshape=(None, NUM_SNIPPETS, width),
                dtype=self.dtype,
                chunks=(
                    min(CHUNK_VIDEOS, max(1, (1 << 20) // (NUM_SNIPPETS * width * self.dtype.itemsize))),
                    NUM_SNIPPETS,
                    width,
                ),
            )
            for name, width in self.widths.items()
        }
        self._seen: set[str] = set()
        self.count = 0

    def append(self, video_ids: Sequence[str], **streams: np.ndarray) -> None:
        """Append a chunk: `video_ids` (n,) and each stream (n, 10, width)."""
        n = len(video_ids)
        if set(streams) != set(self.widths):
            raise StoreError(f"{self.path}: append got streams {sorted(streams)}; expected {sorted(self.widths)}")
        for name, array in streams.items():
            expected = (n, NUM_SNIPPETS, self.widths[name])
            if array.shape != expected:
                raise StoreError(f"{self.path}: stream {name!r} chunk has shape {array.shape}; expected {expected}")
        for video_id in video_ids:
            if video_id in self._seen:
                raise StoreError(f"{self.path}: video {video_id!r} written twice")
            self._seen.add(video_id)
        start, stop = self.count, self.count + n
        self._ids.resize((stop,))
        self._ids[start:stop] = np.asarray(video_ids, dtype=object)
        for name, array in streams.items():
            dataset = self._streams[name]
            dataset.resize((stop, NUM_SNIPPETS, self.widths[name]))
            dataset[start:stop] = array.astype(self.dtype, copy=False)
        self.count = stop

    def close(self) -> Path:
        """Finish the file and move it into place."""
        try:
            close_hdf5(self._file)
        except BaseException as error:  # a full disk at the final flush: the staged file goes too
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the half-written file."""
        close_discarding(self._file)
        try:
            self._atomic.__exit__(StoreError, StoreError("aborted"), None)
        except StoreError:
            pass

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_store(
    path: str | os.PathLike,
    video_ids: Sequence[str],
    streams: dict[str, np.ndarray],
    dtype: str | np.dtype = "float16",
    source: str = "",
    attrs: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write whole in-memory arrays as a store (in chunks, atomically)."""
    widths = {name: int(array.shape[-1]) for name, array in streams.items()}
    with StoreWriter(path, widths, dtype=dtype, source=source, attrs=attrs, overwrite=overwrite) as writer:
        for start in range(0, len(video_ids), CHUNK_VIDEOS * 4):
            stop = start + CHUNK_VIDEOS * 4
            writer.append(list(video_ids[start:stop]), **{name: a[start:stop] for name, a in streams.items()})
    return Path(path)


@dataclass
class FeatureStore:
    """A store's streams in memory, as contiguous arrays in the order of `video_ids`."""

    path: Path
    video_ids: list[str]
    streams: dict[str, np.ndarray]
    """name -> (N, 10, W) array."""
    attrs: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.streams[name]

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def widths(self) -> dict[str, int]:
        return {name: int(array.shape[-1]) for name, array in self.streams.items()}


def _open(path: Path) -> h5py.File:
    """The store opened read-only through the input layer (`avvp.inputs.open_hdf5`)."""
    return open_hdf5(path, "feature store file (.h5)")


def _read_ids(path: Path, handle: h5py.File) -> list[str]:
    if "video_ids" not in handle:
        raise StoreError(f"{path}: no 'video_ids' dataset; expected the avvp feature-store schema")
    ids = handle["video_ids"]
    if ids.ndim != 1:
        raise StoreError(f"{path}: 'video_ids' has shape {ids.shape}; expected (N,)")
    if ids.dtype.kind not in "SOU":
        raise StoreError(f"{path}: 'video_ids' holds {ids.dtype} values; expected strings (YouTube ids)")
    video_ids = read_strings(path, handle, "video_ids")
    if len(set(video_ids)) != len(video_ids):
        seen: set[str] = set()
        duplicate = next(v for v in video_ids if v in seen or seen.add(v))
        raise StoreError(f"{path}: video {duplicate!r} appears more than once in 'video_ids'")
    return video_ids


def _check_stream(path: Path, handle: h5py.File, name: str, n: int, width: int | None) -> h5py.Dataset:
    if name not in handle or not isinstance(handle[name], h5py.Dataset):
        available = sorted(k for k in handle if k != "video_ids" and isinstance(handle[k], h5py.Dataset))
        raise StoreError(f"{path}: no stream {name!r}; the store has {', '.join(available) or 'no streams'}")
    dataset = handle[name]
    if dataset.ndim != 3 or dataset.shape[0] != n or dataset.shape[1] != NUM_SNIPPETS:
        raise StoreError(f"{path}: stream {name!r} has shape {dataset.shape}; expected ({n}, {NUM_SNIPPETS}, width)")
    if width is not None and dataset.shape[2] != width:
        raise StoreError(f"{path}: stream {name!r} has width {dataset.shape[2]}; expected {width}")
    if dataset.dtype not in FLOAT_DTYPES:
        raise StoreError(f"{path}: stream {name!r} has dtype {dataset.dtype}; expected float16 or float32")
    return dataset


def check_stream_finite(path: Path, name: str, array: np.ndarray, video_ids: Sequence[str]) -> None:
    """Fail naming the first video whose `name` stream holds a NaN or infinite value."""
    bad = ~np.isfinite(array).all(axis=(1, 2))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise StoreError(
            f"{path}: stream {name!r} of video {video_ids[first]!r} holds NaN or infinite values"
            + (f" ({int(bad.sum())} videos in all)" if bad.sum() > 1 else "")
        )


def store_info(path: str | os.PathLike) -> dict:
    """Number of videos, streams with their shapes and dtypes, and the root attributes, without loading data."""
    path = Path(path)
    with _open(path) as handle:
        video_ids = _read_ids(path, handle)
        streams = {
            name: {"shape": list(handle[name].shape), "dtype": str(handle[name].dtype)}
            for name in handle
            if name != "video_ids" and isinstance(handle[name], h5py.Dataset)
        }
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
    return {"path": str(path), "videos": len(video_ids), "streams": streams, "attrs": attrs}


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def read_store(
    path: str | os.PathLike,
    streams: Sequence[str] = ("audio", "visual", "motion"),
    video_ids: Sequence[str] | None = None,
    widths: dict[str, int] | None = None,
    dtype: str | np.dtype | None = "float32",
    check_finite: bool = True,
) -> FeatureStore:
    """Load streams into memory, validated, optionally for the given videos in the given order.

    `widths` pins the expected width of some streams (e.g. `RAW_WIDTHS`); other streams may have any width.
    `dtype` None keeps each stream as stored (a float16 store then takes half the memory of float32).
    Missing videos are an error that names them.
    """
    path = Path(path)
    widths = widths or {}
    with _open(path) as handle:
        stored_ids = _read_ids(path, handle)
        datasets = {name: _check_stream(path, handle, name, len(stored_ids), widths.get(name)) for name in streams}
        if video_ids is None:
            rows = None
            order = stored_ids
        else:
            position = {video_id: i for i, video_id in enumerate(stored_ids)}
            missing = [v for v in video_ids if v not in position]
            if missing:
                shown = ", ".join(repr(v) for v in missing[:3]) + (", ..." if len(missing) > 3 else "")
                raise StoreError(f"{path}: {len(missing)} video(s) not in the store: {shown}")
            rows = np.fromiter((position[v] for v in video_ids), dtype=np.int64, count=len(video_ids))
            order = list(video_ids)
        arrays = {}
        for name, dataset in datasets.items():
            if rows is None:
                array = dataset[()]
            else:
                # h5py fancy indexing needs increasing indices: read sorted, then put back in order.
                sorted_rows, inverse = np.unique(rows, return_inverse=True)
                array = _read_rows(dataset, sorted_rows)[inverse]
            array = np.ascontiguousarray(array, dtype=dtype or array.dtype)
            if check_finite:
                check_stream_finite(path, name, array, order)
            arrays[name] = array
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
    return FeatureStore(path=path, video_ids=list(order), streams=arrays, attrs=attrs)


def _read_rows(dataset: h5py.Dataset, sorted_rows: np.ndarray) -> np.ndarray:
    """Rows of a dataset at increasing indices, reading whole slices when the rows are dense."""
    if len(sorted_rows) == 0:
        return np.empty((0,) + dataset.shape[1:], dtype=dataset.dtype)
    low, high = int(sorted_rows[0]), int(sorted_rows[-1]) + 1
    if len(sorted_rows) * 2 >= high - low:
        return dataset[low:high][sorted_rows - low]
    return dataset[sorted_rows]


def iter_store(
    path: str | os.PathLike,
    streams: Sequence[str] = ("audio", "visual"),
    chunk_size: int = 4096,
    dtype: str | np.dtype | None = None,
    widths: dict[str, int] | None = None,
    check_finite: bool = True,
) -> Iterator[tuple[list[str], dict[str, np.ndarray]]]:
    """Read a store chunk by chunk (memory bounded), validating each chunk; yields (video_ids, streams)."""
    path = Path(path)
    widths = widths or {}
    with _open(path) as handle:
        stored_ids = _read_ids(path, handle)
        datasets = {name: _check_stream(path, handle, name, len(stored_ids), widths.get(name)) for name in streams}
        for start in range(0, len(stored_ids), chunk_size):
            ids = stored_ids[start : start + chunk_size]
            arrays = {}
            for name, dataset in datasets.items():
                array = dataset[start : start + len(ids)]
                if dtype is not None:
                    array = array.astype(dtype, copy=False)
                if check_finite:
                    check_stream_finite(path, name, array, ids)
                arrays[name] = array
            yield ids, arrays


def read_video_ids(path: str | os.PathLike) -> list[str]:
    """The store's video ids, validated, without reading any stream."""
    path = Path(path)
    with _open(path) as handle:
        return _read_ids(path, handle)
