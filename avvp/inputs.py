"""The input layer: every file a command reads from a user goes through here, and is safe to open.

"Safe" means: reading it reads that file and nothing else (an HDF5 file's external storage, virtual datasets,
external and soft links are refused by name), takes memory in proportion to its size (declared shapes, dtypes
and string lengths are bounded against the file's size before anything is read; a `.npy` header against the
file), never runs code (`.pt` with `weights_only=True`, then every value checked; no pickles anywhere), and
never hangs (only regular files where a file is expected: no FIFO, no device). Every refusal is one line naming
the file and the field.

- `check_input_file(path, what)`: a regular file.
- `open_hdf5(path, what)`: an HDF5 file opened read-only and checked as above (`check_hdf5`).
- `check_video_ids(path, ids)`: ids are non-empty UTF-8 of at most 255 bytes, with no tab, newline, path
  separator or NUL (a video id names files: `avvp.output.safe_child`).
- `check_npy_header(path, contents)`: a `.npy` file's declared shape fits the bytes it holds.
- `check_state_dict(path, state)`: a loaded `.pt` is a dict of string keys to dense, real floating tensors that
  own the memory they describe (no stride-0 expansion).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from avvp.errors import StoreError

MAX_ID_BYTES = 255
"""The longest video id (UTF-8 bytes): a video id names a file."""
DECLARED_SIZE_FACTOR = 4
"""An uncompressed HDF5 dataset may declare at most this many times its file's size (plus `DECLARED_SLACK`)."""
COMPRESSED_SIZE_FACTOR = 1024
"""A compressed (filtered) one at most this many times (gzip's ratio on constant data is about 1000)."""
DECLARED_SLACK = 1 << 20
MAX_HDF5_OBJECTS = 100_000
MAX_HDF5_DEPTH = 32


def _file_kind(mode: int) -> str | None:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_input_file(path: str | os.PathLike, what: str = "file", error: type[Exception] = StoreError) -> Path:
    """`path` as a Path when it is a regular file (a link to one is followed); else a one-line `error`."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as failure:
        raise error(f"{path}: cannot read it ({failure.strerror or failure})") from None
    kind = _file_kind(mode)
    if kind is not None:
        raise error(f"{path}: is {kind}; expected a {what}")
    return path


def check_video_id(video_id: object, where: str) -> str:
    """One video id, checked (see the module's docstring); `where` names the file and field in the error."""
    if isinstance(video_id, bytes):
        try:
            video_id = video_id.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"{where}: video id {video_id[:40]!r} is not UTF-8") from None
    if not isinstance(video_id, str):
        raise StoreError(f"{where}: video id {video_id!r} is not a string")
    problem = None
    if not video_id:
        problem = "is empty"
    elif len(video_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        problem = f"is longer than {MAX_ID_BYTES} bytes"
    elif any(c in video_id for c in "\t\n\r\0/\\"):
        problem = "holds a tab, newline, NUL or path separator"
    elif video_id in (".", ".."):
        problem = "is not a name"
    if problem:
        shown = video_id if len(video_id) <= 40 else video_id[:40] + "..."
        raise StoreError(f"{where}: video id {shown!r} {problem}; expected a video name")
    return video_id


def check_video_ids(path: str | os.PathLike, video_ids: Sequence, field: str = "video_ids") -> list[str]:
    """Every id checked by `check_video_id`, decoded to str."""
    return [check_video_id(video_id, f"{path}: '{field}'") for video_id in video_ids]


# --- HDF5 ---


@contextlib.contextmanager
def open_hdf5(path: str | os.PathLike, what: str = "feature store") -> Iterator:
    """An HDF5 file opened read-only for the block, refused unless `check_hdf5` holds; an error HDF5 raises
    while the block reads it (damaged metadata or chunks) is a one-line StoreError naming the file."""
    import h5py

    path = check_input_file(path, what)
    try:
        handle = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise StoreError(f"{path}: not a readable HDF5 {what} ({_one_line(error)})") from None
    try:
        with metadata_deadline(path):
            check_hdf5(path, handle)
        yield handle
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
        if not _raised_in_h5py(error):
            raise
        raise StoreError(f"{path}: damaged HDF5 {what} ({_one_line(error)})") from None
    finally:
        with contextlib.suppress(Exception):
            handle.close()


def _raised_in_h5py(error: BaseException) -> bool:
    """Whether `error` comes from inside h5py (a damaged file), not from the code reading it."""
    frame = error.__traceback__
    while frame is not None:
        if f"{os.sep}h5py{os.sep}" in frame.tb_frame.f_code.co_filename or "h5py/" in frame.tb_frame.f_code.co_filename:
            return True
        frame = frame.tb_next
    return isinstance(error, KeyError) and "open object" in str(error)


def _one_line(error: BaseException, limit: int = 160) -> str:
    return " ".join(str(error).split())[:limit]


METADATA_SECONDS = 120.0
"""The longest a read of an HDF5 file's structure or ids may take (it takes well under a second for LLP)."""


def _give_up(path: Path) -> None:
    """A read of `path` did not return: HDF5 loops on some damaged files, where Python cannot interrupt it."""
    print(f"error: {path}: HDF5 did not finish reading its structure in {METADATA_SECONDS:.0f} s; a damaged file",
          file=sys.stderr, flush=True)  # fmt: skip
    os._exit(1)


ON_DEADLINE = _give_up
"""What happens when a metadata read overruns (the harness replaces it to record the case)."""


@contextlib.contextmanager
def metadata_deadline(path: Path) -> Iterator[None]:
    """Bound a read of HDF5 metadata (structure, ids) by METADATA_SECONDS: past it, one error line and exit 1
    (`ON_DEADLINE`), since a loop inside HDF5's C code cannot be interrupted; staged outputs a command had begun
    are removed by its next run on that output (`avvp.output`)."""
    timer = threading.Timer(METADATA_SECONDS, lambda: ON_DEADLINE(path))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def check_hdf5(path: Path, handle) -> None:
    """Refuse an HDF5 file whose reading would read other files or take memory out of proportion to its size:
    soft and external links, virtual datasets, external raw storage, and a dataset declaring more bytes than
    the file could hold (`DECLARED_SIZE_FACTOR`, `COMPRESSED_SIZE_FACTOR`)."""
    import h5py

    file_size = os.stat(path).st_size
    seen = 0
    pending = [(handle, "", 0)]
    while pending:
        group, prefix, depth = pending.pop()
        if depth > MAX_HDF5_DEPTH:
            raise StoreError(f"{path}: groups nested deeper than {MAX_HDF5_DEPTH} at {prefix!r}")
        for name in group.keys():
            seen += 1
            if seen > MAX_HDF5_OBJECTS:
                raise StoreError(f"{path}: more than {MAX_HDF5_OBJECTS} objects; not an avvp file")
            where = f"{prefix}/{name}".lstrip("/")
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink | h5py.ExternalLink):
                kind = "a soft link" if isinstance(link, h5py.SoftLink) else "an external link"
                raise StoreError(f"{path}: {where!r} is {kind}; avvp reads only objects stored in the file itself")
            item = group.get(name)
            if isinstance(item, h5py.Group):
                pending.append((item, where, depth + 1))
            elif isinstance(item, h5py.Dataset):
                _check_dataset(path, where, item, file_size)


def _check_dataset(path: Path, where: str, dataset, file_size: int) -> None:
    if dataset.is_virtual:
        raise StoreError(f"{path}: dataset {where!r} is virtual (its data is in other files); not read")
    if dataset.external:
        raise StoreError(f"{path}: dataset {where!r} has external storage (its data is in other files); not read")
    plist = dataset.id.get_create_plist()
    factor = COMPRESSED_SIZE_FACTOR if plist.get_nfilters() else DECLARED_SIZE_FACTOR
    declared = int(np.prod(dataset.shape, dtype=np.float64)) * max(dataset.dtype.itemsize, 1)
    if declared > factor * file_size + DECLARED_SLACK:
        raise StoreError(
            f"{path}: dataset {where!r} declares shape {dataset.shape} of {dataset.dtype} ({declared:,} bytes), "
            f"more than a file of {file_size:,} bytes can hold"
        )


def read_strings(path: Path, handle, name: str) -> list[str]:
    """A 1-D string dataset as checked video ids (`check_video_ids`): fixed-length strings longer than an id
    are refused before they are read."""
    dataset = handle[name]
    if dataset.dtype.kind == "S" and dataset.dtype.itemsize > MAX_ID_BYTES:
        raise StoreError(f"{path}: '{name}' holds strings of {dataset.dtype.itemsize:,} bytes; ids have at most 255")
    if dataset.dtype.kind == "U" and dataset.dtype.itemsize > 4 * MAX_ID_BYTES:
        raise StoreError(f"{path}: '{name}' holds strings of {dataset.dtype.itemsize:,} bytes; ids have at most 255")
    try:
        with metadata_deadline(path):  # a damaged string heap can make HDF5 loop
            values = dataset.asstr("utf-8", "surrogateescape")[()] if dataset.dtype.kind in "SO" else dataset[()]
    except (OSError, ValueError, TypeError) as error:
        raise StoreError(f"{path}: '{name}' cannot be read as strings ({' '.join(str(error).split())[:120]})") from None
    ids = []
    for value in values:
        value = str(value)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise StoreError(f"{path}: '{name}': video id {value[:40]!r} is not UTF-8") from None
        ids.append(value)
    return check_video_ids(path, ids, name)


# --- .npy ---


def check_npy_header(path: str | os.PathLike, contents: bytes) -> None:
    """Refuse a `.npy` file whose header declares more data than the file holds, or objects (pickles)."""
    buffer = io.BytesIO(contents)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(buffer)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(buffer)
    except (ValueError, EOFError, SyntaxError) as error:
        if contents[:2] == b"PK":
            return  # a zip (.npz): the caller's np.load refuses it by name
        raise StoreError(f"{path}: not a readable .npy array ({error})") from None
    if dtype.hasobject:
        raise StoreError(f"{path}: holds Python objects (dtype {dtype}); expected numbers")
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if declared > len(contents) - buffer.tell():
        raise StoreError(
            f"{path}: its header declares shape {shape} of {dtype} ({declared:,} bytes); the file holds "
            f"{len(contents) - buffer.tell():,}"
        )


def parse_npy(path: str | os.PathLike, contents: bytes) -> np.ndarray:
    """A `.npy` file's bytes as its array (no pickles; a zip `.npz` refused), the header checked first. NumPy parses
    the header with `ast`, which CPython 3.11 can fail on in two threads at once: threads hold a lock around it."""
    check_npy_header(path, contents)
    try:
        array = np.load(io.BytesIO(contents), allow_pickle=False)
    except (ValueError, OSError, EOFError) as failure:
        raise StoreError(f"{path}: not a readable .npy array ({failure})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise StoreError(f"{path}: not a .npy array but an .npz archive; expected one array")
    return array


def read_npy(path: str | os.PathLike, error: type[Exception] = StoreError, max_bytes: int = 1 << 30) -> np.ndarray:
    """A `.npy` file's array (no pickles), its header checked against its size first."""
    path = check_input_file(path, ".npy array", error)
    if os.stat(path).st_size > max_bytes:
        raise error(f"{path}: {os.stat(path).st_size:,} bytes; expected a small .npy array")
    try:
        return parse_npy(path, path.read_bytes())
    except StoreError as failure:
        raise error(str(failure)) from None


# --- PyTorch state dicts ---


def read_torch_weights(path: str | os.PathLike, error: type[Exception] = StoreError) -> dict:
    """A `.pt` state dict loaded with `weights_only=True` (no code runs), then checked (`check_state_dict`)."""
    import pickle
    import re

    import torch

    path = check_input_file(path, "checkpoint", error)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError) as failure:
        # torch's message is a paragraph; its "WeightsUnpickler error:" part says what was refused.
        reason = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", str(failure))
        reason = reason.group(1) if reason else (str(failure).strip().splitlines() or [type(failure).__name__])[0]
        raise error(
            f"{path}: not a loadable PyTorch state dict (torch.load with weights_only=True: {reason})"
        ) from None
    return check_state_dict(path, state, error)


def check_state_dict(path: str | os.PathLike, state: object, error: type[Exception] = StoreError) -> dict:
    """A `torch.load(..., weights_only=True)` result as a state dict: string keys, each value a dense (strided),
    real floating tensor that owns the memory it describes (BatchNorm's int64 `num_batches_tracked` too).
    Anything else is a one-line `error`."""
    import torch

    if not isinstance(state, dict):
        what = type(state).__name__
        raise error(f"{path}: expected a state dict of tensors (torch.save(model.state_dict())), not a {what}")
    floating = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    for key, value in state.items():
        if not isinstance(key, str):
            raise error(f"{path}: key {key!r} is a {type(key).__name__}; expected parameter names (strings)")
        if not isinstance(value, torch.Tensor):
            raise error(f"{path}: {key!r} is a {type(value).__name__}; expected a tensor")
        if value.layout != torch.strided:
            raise error(f"{path}: {key!r} is a {value.layout} tensor; expected a dense one")
        if value.dtype not in floating and not (key.endswith("num_batches_tracked") and value.dtype == torch.int64):
            raise error(f"{path}: {key!r} has dtype {value.dtype}; expected real floating-point weights")
        if value.numel() > 1 and (
            0 in value.stride() or value.untyped_storage().nbytes() < value.numel() * value.element_size()
        ):
            raise error(f"{path}: {key!r} is an expanded view (stride {value.stride()}); expected stored weights")
    return state


# --- sizes in configs ---

MAX_WIDTH = 1 << 16
"""The widest feature, hidden or feed-forward width a config may ask for (the paper's are 512 to 2048)."""
MAX_LAYERS = 64
MAX_HEADS = 1024
MAX_SEED = 2**32 - 1
"""NumPy's and torch's seeds are 32-bit; a larger one fails deep inside them."""
SIZE_BOUNDS = {
    "hidden_size": MAX_WIDTH,
    "intermediate_size": 4 * MAX_WIDTH,
    "num_heads": MAX_HEADS,
    "num_attention_heads": MAX_HEADS,
    "num_layers": MAX_LAYERS,
    "num_hidden_layers": MAX_LAYERS,
    "audio_size": MAX_WIDTH,
    "visual_size": MAX_WIDTH,
    "motion_size": MAX_WIDTH,
    "max_position_embeddings": 4096,
}
"""Config field -> its largest value: a config asking for more is refused before any model is built."""


def check_sizes(where: str, values: dict, error: type[Exception] = StoreError) -> None:
    """Refuse a config whose sizes (`SIZE_BOUNDS`, `input_widths`, `seed`) are not integers in range; `where`
    names the file or the options in the one-line `error`."""
    bounded = {name: (1, high, values[name]) for name, high in SIZE_BOUNDS.items() if values.get(name) is not None}
    for stream, width in (values.get("input_widths") or {}).items():
        bounded[f"input_widths.{stream}"] = (1, MAX_WIDTH, width)
    if values.get("seed") is not None:
        bounded["seed"] = (0, MAX_SEED, values["seed"])
    for name, (low, high, value) in bounded.items():
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise error(f"{where}: {name} is {value!r}; expected an integer from {low} to {high:,}")
