"""Atomic output: write to a temporary file beside the target, rename on success, never leave half a file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from avvp.errors import AvvpError


def first_non_utf8(contents: bytes) -> tuple[int, int] | None:
    """(line number, byte value) of the first invalid UTF-8 in `contents`; None where it all decodes."""
    try:
        contents.decode("utf-8")
    except UnicodeDecodeError as error:
        return contents[: error.start].count(b"\n") + 1, contents[error.start]
    return None


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_writable(path: str | os.PathLike, overwrite: bool, directory: bool = False) -> Path:
    """Refuse an output that cannot be written, before any work: an existing one without `overwrite`, a folder
    where a file is expected (`directory` False), a file where a folder should be on the way. Creates nothing."""
    path = Path(path)
    if path.is_dir() and not directory:
        raise AvvpError(f"{path}: is a directory; expected a file")
    if os.path.lexists(path) and not overwrite:
        raise AvvpError(f"{path}: already exists; pass --overwrite to replace it")
    for folder in path.parents:  # the nearest existing one must be a folder; the missing ones are made on writing
        if os.path.lexists(folder):
            if not folder.is_dir():
                raise AvvpError(f"{path}: cannot write it, {folder} is not a folder")
            break
    return path


PICTURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")
"""File extensions a plot may be written as (matplotlib draws each without extra packages)."""


def check_picture(path: str | os.PathLike, overwrite: bool, option: str = "--plot") -> Path:
    """`check_writable` for a plot, whose extension must also be one of PICTURE_FORMATS."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in PICTURE_FORMATS:
        raise AvvpError(f"{option} {path}: expected a .png, .pdf, .svg or .jpg picture")
    return check_writable(path, overwrite)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; it becomes `path` only if the block succeeds."""
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp (and some writers, e.g. safetensors) make files private (0600); give the mode open() would.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds.

    The block holds the output's lock (one writer at a time, `avvp.runs.output_lock`); a full disk inside it is a
    one-line error naming `path` (`avvp.runs.writing`), the temporary folder removed.
    """
    from avvp.runs import output_lock, writing

    with output_lock(path), writing(path), _atomic_dir(path, overwrite) as tmp:
        yield tmp


@contextlib.contextmanager
def _atomic_dir(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    path = check_writable(path, overwrite, directory=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp_path, 0o777 & ~_current_umask())
    try:
        yield tmp_path
        file_mode = 0o666 & ~_current_umask()  # as in atomic_path, for the files the block wrote
        for folder, _, names in os.walk(tmp_path):
            for name in names:
                os.chmod(os.path.join(folder, name), file_mode)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)
