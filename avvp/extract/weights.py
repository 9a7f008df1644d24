"""The published weight files of the three networks: where they come from, where they are looked for, how they load.

| name          | file                              | from                                             |
| ------------- | --------------------------------- | ------------------------------------------------ |
| resnet152     | resnet152-b121ed2d.pth            | download.pytorch.org (torchvision; the file the  |
|               |                                   | `pretrainedmodels` "imagenet" resnet152 loads)   |
| r2plus1d_18   | r2plus1d_18-91a641e6.pth          | download.pytorch.org (torchvision, Kinetics-400) |
| vggish        | vggish-10086976.pth               | github.com/harritaylor/torchvggish release v0.1  |
| vggish_pca    | vggish_pca_params-970ea276.pth    | github.com/harritaylor/torchvggish release v0.1  |

As torch.hub names them, the hex digits after the last `-` are the start of the file's sha256: every file is checked
against them (what `torch.hub` itself checks). No primary source we can read states a full sha256 of any of the
four, so none is recorded (`WeightFile.sha256` is None); `file_sha256` gives the digest of the file in hand, for a
store's provenance.

A file is looked for in `--weights DIR` (when given), then in the torch hub cache (`torch.hub.get_dir()/checkpoints`,
where `torch.hub` keeps downloads); missing there, it is downloaded into the cache with a progress bar, unless
downloading is off: then a one-line error says which file to put where. Files are read with
`torch.load(weights_only=True)` (for `vggish_pca`, which may hold numpy arrays, numpy's array reconstruction is
also allowed: no other code runs); every value must be a dense floating tensor (batch norm's `num_batches_tracked`
an integer scalar, optional: files saved before PyTorch 0.4 lack it), the keys exactly the network's.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avvp.errors import AvvpError
from avvp.extract.nets import VGGish, r2plus1d_18, resnet152
from avvp.extract.nets.vggish import EMBEDDING_DIM
from avvp.inputs import check_input_file


class WeightsError(AvvpError):
    """A weight file that is missing, cannot be downloaded, or is not the file it should be."""


@dataclass(frozen=True)
class WeightFile:
    """One published weight file."""

    name: str
    """Registry name (`resnet152`, `r2plus1d_18`, `vggish`, `vggish_pca`)."""
    file_name: str
    """The file's published name, as torch.hub keeps it in its cache."""
    url: str
    """Where it is downloaded from."""
    sha256_prefix: str
    """The leading hex digits of its sha256, from the file name (torch.hub's convention)."""
    sha256: str | None
    """Its full sha256 where a primary source states it; None otherwise (then only the prefix is checked)."""
    description: str
    """What the weights are, for messages and a store's provenance."""


WEIGHTS: dict[str, WeightFile] = {
    weight.name: weight
    for weight in (
        WeightFile(
            "resnet152",
            "resnet152-b121ed2d.pth",
            "https://download.pytorch.org/models/resnet152-b121ed2d.pth",
            "b121ed2d",
            None,
            "ResNet-152, ImageNet (torchvision; pretrainedmodels' 'imagenet' resnet152)",
        ),
        WeightFile(
            "r2plus1d_18",
            "r2plus1d_18-91a641e6.pth",
            "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
            "91a641e6",
            None,
            "R(2+1)D-18, Kinetics-400 (torchvision video.r2plus1d_18)",
        ),
        WeightFile(
            "vggish",
            "vggish-10086976.pth",
            "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
            "10086976",
            None,
            "VGGish, AudioSet (PyTorch conversion, harritaylor/torchvggish v0.1)",
        ),
        WeightFile(
            "vggish_pca",
            "vggish_pca_params-970ea276.pth",
            "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth",
            "970ea276",
            None,
            "VGGish PCA/whitening parameters of the AudioSet postprocessing (harritaylor/torchvggish v0.1)",
        ),
    )
}
"""The four weight files, by name."""

NETWORKS: dict[str, Callable[[], nn.Module]] = {"resnet152": resnet152, "r2plus1d_18": r2plus1d_18, "vggish": VGGish}
"""The network each weight file (but `vggish_pca`) belongs to."""

PCA_SHAPES = {
    "pca_eigen_vectors": ((EMBEDDING_DIM, EMBEDDING_DIM),),
    "pca_means": ((EMBEDDING_DIM,), (EMBEDDING_DIM, 1)),
}
"""The keys of `vggish_pca` and the shapes each may have (AudioSet keeps the means as a vector)."""

OPTIONAL_SUFFIX = "num_batches_tracked"
"""Batch-norm counters: not weights, absent from files saved before PyTorch 0.4, unused in eval mode."""

# numpy's array reconstruction and the floating dtypes, the only globals a numpy-holding `vggish_pca` file needs:
# they build float arrays from their bytes and run no other code (an object array stays refused). Files pickled
# under numpy 1 name the `numpy.core` module, numpy 2 `numpy._core`.
_reconstruct = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
_NUMPY_ARRAY_GLOBALS = [
    (np.ndarray, "numpy.ndarray"),
    (np.dtype, "numpy.dtype"),
    (_reconstruct, "numpy._core.multiarray._reconstruct"),
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
] + [getattr(np.dtypes, f"Float{bits}DType") for bits in (16, 32, 64) if hasattr(np, "dtypes")]


def weight_file(name: str) -> WeightFile:
    """The registry entry `name`, or a one-line error listing the names."""
    if name not in WEIGHTS:
        raise WeightsError(f"unknown weights {name!r}; expected one of {', '.join(WEIGHTS)}")
    return WEIGHTS[name]


def hub_checkpoints_dir() -> Path:
    """Where torch.hub keeps downloaded weights: `torch.hub.get_dir()/checkpoints` ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file, computed once per path, size and modification time."""
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def check_hash(weight: WeightFile, path: Path) -> None:
    """A one-line error unless `path`'s sha256 starts with the published prefix (and equals it where known)."""
    digest = file_sha256(path)
    expected = weight.sha256 or weight.sha256_prefix
    if not digest.startswith(expected):
        raise WeightsError(
            f"{path}: sha256 {digest[: max(len(expected), 8)]}... does not match the published {weight.name} "
            f"weights ({expected}...): a different or damaged file; delete it and download {weight.url} again"
        )


def weights_path(name: str, weights_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The checked path of weight file `name`: in `weights_dir`, else the torch hub cache, else downloaded there.

    With `download` False a missing file is a one-line error naming the file, where to put it, and its URL.
    """
    weight = weight_file(name)
    folders = []
    if weights_dir is not None:
        weights_dir = Path(weights_dir)
        if not weights_dir.is_dir():
            raise WeightsError(f"--weights {weights_dir}: not a folder; expected the folder holding {weight.file_name}")
        folders.append(weights_dir)
    cache = hub_checkpoints_dir()
    folders.append(cache)
    for folder in folders:
        path = folder / weight.file_name
        if os.path.lexists(path):  # a FIFO or a device there is one error line, never read (nor hashed)
            check_input_file(path, f"{weight.name} weight file", WeightsError)
            check_hash(weight, path)
            return path
    if not download:
        where = f"{weights_dir} (--weights) or {cache}" if weights_dir is not None else str(cache)
        raise WeightsError(
            f"{weight.file_name}: {weight.description} weights not found and downloading is off; "
            f"put the file (from {weight.url}) in {where}"
        )
    return _download(weight, cache)


def _download(weight: WeightFile, folder: Path) -> Path:
    """Download `weight` into `folder` with a progress bar; torch.hub writes a temporary file, checks the sha256
    prefix and only then moves it into place, so a failed download leaves nothing behind."""
    path = folder / weight.file_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weight.url, str(path), hash_prefix=weight.sha256_prefix, progress=True)
    except RuntimeError as error:  # torch.hub's hash check
        raise WeightsError(
            f"{weight.url}: the download does not match sha256 {weight.sha256_prefix}... ({error}); nothing was kept"
        ) from None
    except OSError as error:  # URLError and HTTPError are OSErrors, as are a full disk and a read-only cache
        reason = getattr(error, "reason", None) or error.strerror or error
        raise WeightsError(
            f"{weight.file_name}: could not download it from {weight.url} ({reason}); "
            f"download it by hand and put it in {folder}, or in a folder given as --weights"
        ) from None
    if weight.sha256 is not None:
        check_hash(weight, path)
    return path


def expected_shapes(name: str) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Every key of weight file `name` and the shapes its tensor may have (built on the meta device: no memory)."""
    if name == "vggish_pca":
        return dict(PCA_SHAPES)
    with torch.device("meta"):
        network = NETWORKS[name]()
    return {key: (tuple(value.shape),) for key, value in network.state_dict().items()}


def _unpickler_reason(error: Exception) -> str:
    """What torch's weights-only refusal met, in a few words (its own message is a page long)."""
    message = str(error)
    found = re.search(r"GLOBAL (\S+)", message)
    if found:
        return f"it holds objects other than tensors ({found.group(1)})"
    if "WeightsUnpickler error:" in message:
        detail = message.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        return f"not a PyTorch weight file ({detail[0] if detail else 'unsupported contents'})"
    return type(error).__name__


def _read(weight: WeightFile, path: Path) -> object:
    safe_globals = _NUMPY_ARRAY_GLOBALS if weight.name == "vggish_pca" else []
    try:
        with torch.serialization.safe_globals(safe_globals), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path) if zipfile.is_zipfile(path) else []
        what = f"it holds objects other than tensors ({', '.join(found[:3])})" if found else _unpickler_reason(error)
        raise WeightsError(f"{path}: not a {weight.name} weight file: {what}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise WeightsError(f"{path}: not a readable PyTorch weight file ({reason})") from None


def _as_tensor(weight: WeightFile, path: Path, key: str, value: object) -> torch.Tensor:
    if isinstance(value, np.ndarray):  # only a `vggish_pca` file can hold them (see _NUMPY_ARRAY_GLOBALS)
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsError(f"{path}: {key} is a {value.dtype} array; expected floating-point weights")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise WeightsError(f"{path}: {key} holds a {type(value).__name__}; expected a tensor")
    if value.layout != torch.strided or value.is_quantized:
        raise WeightsError(f"{path}: {key} is a {value.layout} tensor; expected a dense tensor")
    if key.endswith(OPTIONAL_SUFFIX):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool or value.dim() != 0:
            raise WeightsError(
                f"{path}: {key} is a {value.dtype} tensor of shape {tuple(value.shape)}; expected an integer scalar"
            )
    elif not value.dtype.is_floating_point:
        raise WeightsError(f"{path}: {key} is a {value.dtype} tensor; expected floating-point weights")
    return value


def load_state_dict(
    name: str, weights_dir: str | os.PathLike | None = None, download: bool = True
) -> dict[str, torch.Tensor]:
    """The checked tensors of weight file `name` (see `weights_path` for where it is looked for)."""
    weight = weight_file(name)
    path = weights_path(name, weights_dir, download)
    contents = _read(weight, path)
    if not isinstance(contents, Mapping):
        raise WeightsError(f"{path}: holds a {type(contents).__name__}; expected a state dict (names to tensors)")
    bad_key = next((key for key in contents if not isinstance(key, str)), None)
    if bad_key is not None:
        raise WeightsError(f"{path}: key {bad_key!r} is a {type(bad_key).__name__}; expected parameter names")
    shapes = expected_shapes(name)
    missing = [key for key in shapes if key not in contents and not key.endswith(OPTIONAL_SUFFIX)]
    unexpected = [key for key in contents if key not in shapes]
    if missing or unexpected:
        parts = [
            f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise WeightsError(f"{path}: not the {weight.description} weights: keys {'; '.join(parts)}")
    state_dict = {}
    for key, value in contents.items():
        tensor = _as_tensor(weight, path, key, value)
        if tuple(tensor.shape) not in shapes[key]:
            allowed = " or ".join(str(shape) for shape in shapes[key])
            raise WeightsError(f"{path}: {key} has shape {tuple(tensor.shape)}; expected {allowed}")
        state_dict[key] = tensor
    return state_dict


def load_network(
    name: str, weights_dir: str | os.PathLike | None = None, download: bool = True, **options
) -> nn.Module:
    """Network `name` (`resnet152`, `r2plus1d_18`, `vggish`) with its published weights: float32, in eval mode,
    its parameters frozen (no gradient). `options` go to the network's constructor (e.g. `final_relu=False` for
    VGGish's pre-activation embedding); they change no parameter name."""
    if name not in NETWORKS:
        raise WeightsError(f"unknown network {name!r}; expected one of {', '.join(NETWORKS)}")
    state_dict = {
        key: value.to(torch.float32) if value.dtype.is_floating_point else value
        for key, value in load_state_dict(name, weights_dir, download).items()
    }
    with torch.device("meta"):  # no random initialisation to throw away: the file's tensors become the parameters
        network = NETWORKS[name](**options)
    network.load_state_dict(state_dict, strict=True, assign=True)
    for module in network.modules():  # counters the file lacks (saved before PyTorch 0.4) are still on meta
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.num_batches_tracked.is_meta:
            module.num_batches_tracked = torch.tensor(0, dtype=torch.long)
    return network.requires_grad_(False).eval()  # a frozen extractor, as the releases use it


def load_pca_params(weights_dir: str | os.PathLike | None = None, download: bool = True) -> dict[str, torch.Tensor]:
    """The `vggish_pca` tensors for `vggish_postprocess`: `pca_eigen_vectors` (128, 128), `pca_means` (128,)."""
    params = load_state_dict("vggish_pca", weights_dir, download)
    return {key: value.to(torch.float64).reshape(PCA_SHAPES[key][0]) for key, value in params.items()}
