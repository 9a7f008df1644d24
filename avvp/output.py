"""The output layer: every file or folder a command writes goes through here.

- **Where.** `resolve_output` takes `--out` as the place it names (a symbolic link is the place it points to);
  device nodes, FIFOs and sockets are refused. `safe_child(folder, name)` is the one way a name taken from data
  (a video id) becomes a file name: it never leaves `folder`.
- **Before any work.** `check_writable` refuses an existing output without `--overwrite`, a folder where a file
  is expected, a file on the way, and a place that cannot be written (read-only, no permission): it creates a
  probe file there and removes it. `check_free_space` refuses what cannot fit.
- **One writer per output.** `output_lock(path)` holds an exclusive `fcntl.flock` on `.NAME.lock` beside the
  output's real path (so `c1` and a link to it share one lock); the lock file is opened with `O_NOFOLLOW` and
  must be a plain file with one link, so a planted link is refused, never truncated.
- **Staged, then renamed in.** `atomic_path` and `atomic_dir` (and `staged_files` for a set of files) write under
  `.NAME.stage-XXXXXXXX.tmp` beside the output and rename on success; the staged files a killed command left are
  removed by the next one on that output (under its lock).
- **`--overwrite` replaces only what avvp made.** A folder output is replaced only when it holds `MARKER` (written
  into every folder `atomic_dir` makes) or the run file its command names (`config.json`); a command's own input
  (`inputs=`) is never replaced; a file output replaces only a regular file.
- **Errors of writing.** `writing(output)` turns ENOSPC and the other OS errors of writing into one line naming
  the output; `hdf5_writer` closes (and empties) an HDF5 file before such an error propagates, since HDF5
  crashes the process when a file it failed to flush is closed at exit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from avvp.errors import AvvpError, ConfigError

T = typing.TypeVar("T")

MARKER = ".avvp-output"
"""Written into every folder `atomic_dir` makes: `--overwrite` may replace a folder holding it."""
STAGE = ".stage-"
"""Staged files and folders are `.NAME.stage-XXXXXXXX.tmp` (8 random characters) beside the output NAME."""
MAX_NAME_BYTES = 255
"""The longest file name (in UTF-8 bytes) the common file systems take."""


# --- where an output goes ---


def _kind(mode: int) -> str | None:
    """'a device', 'a FIFO', 'a socket' for the special files no command writes; None for files and folders."""
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def resolve_output(path: str | os.PathLike, option: str = "--out") -> Path:
    """The real path of an output (a symbolic link: the place it points to); a device, FIFO or socket there is
    a one-line error naming `option`."""
    if not str(path):
        raise ConfigError(f"{option}: no path given")
    real = Path(os.path.realpath(path))
    try:
        kind = _kind(os.stat(real).st_mode)
    except OSError:
        kind = None
    if kind is not None:
        raise AvvpError(f"{option} {path}: is {kind}; expected a file or folder to write")
    return real


def safe_child(folder: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """`folder / (name + suffix)`, for a `name` taken from data (a video id); a name that could leave `folder`
    or is no valid file name (empty, '.', '..', a path separator, NUL, over 255 bytes) is an AvvpError."""
    file_name = f"{name}{suffix}"
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\0" in file_name
        or os.sep in name
        or len(file_name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
    ):
        raise AvvpError(f"{folder}: cannot name a file after {name!r}: not a plain file name")
    return Path(folder) / file_name


def _nearest_existing(path: Path) -> Path:
    folder = Path(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = folder.parent
    return folder


def probe_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output whose folder cannot be written (read-only file system, no permission):
    an unnamed file (O_TMPFILE on Linux, so a signal at any instant leaves nothing behind) is made in its nearest
    existing folder and closed at once."""
    folder = _nearest_existing(Path(path).parent)
    try:
        with tempfile.TemporaryFile(prefix=".avvp-probe.", suffix=".tmp", dir=folder):
            pass
    except OSError as error:
        raise AvvpError(f"{path}: cannot write there ({error.strerror or error})") from None


def check_writable(
    path: str | os.PathLike, overwrite: bool, directory: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """Refuse an output that cannot be written, before any work: an existing one without `overwrite`, a folder
    where a file is expected (`directory` False), a device, FIFO or socket, a file on the way, a folder that
    cannot be written, an output that is (or holds) one of the command's `inputs`. Leaves nothing behind."""
    path = Path(path)
    if os.path.lexists(path):
        kind = _kind(os.stat(path).st_mode) if path.exists() else None
        if kind is not None:
            raise AvvpError(f"{path}: is {kind}; expected a file or folder to write")
    if path.is_dir() and not directory:
        raise AvvpError(f"{path}: is a directory; expected a file")
    if os.path.lexists(path) and not overwrite:
        raise AvvpError(f"{path}: already exists; pass --overwrite to replace it")
    for folder in path.parents:  # the nearest existing one must be a folder; the missing ones are made on writing
        if os.path.lexists(folder):
            if not folder.is_dir():
                raise AvvpError(f"{path}: cannot write it, {folder} is not a folder")
            break
    check_not_input(path, inputs)
    probe_writable(path)
    return path


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is one of `inputs` or a folder holding one (it would be replaced)."""
    real = Path(os.path.realpath(output))
    for source in inputs:
        if not source:
            continue
        source_real = Path(os.path.realpath(source))
        if source_real == real or real in source_real.parents:
            raise AvvpError(f"{output}: holds the input {source}; choose another output")


PICTURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")
"""File extensions a plot may be written as (matplotlib draws each without extra packages)."""


def check_picture(path: str | os.PathLike, overwrite: bool, option: str = "--plot") -> Path:
    """`check_writable` for a plot, whose extension must also be one of PICTURE_FORMATS."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in PICTURE_FORMATS:
        raise AvvpError(f"{option} {path}: expected a .png, .pdf, .svg or .jpg picture")
    return check_writable(path, overwrite)


# --- one writer per output ---


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of an output: `.NAME.lock` beside its real path (one file however the output is spelled)."""
    real = Path(os.path.realpath(output))
    return real.parent / f".{real.name}.lock"


class _Held(threading.local):
    def __init__(self):
        self.counts: dict[Path, int] = {}


_HELD = _Held()
"""Lock file -> how many blocks of this thread hold it through `output_lock` / `hold_output`: a writer nested
in such a block (e.g. `atomic_path` inside a command's `output_lock`) shares the lock. A bare `acquire` is
never shared, as another command's would not be."""


class OutputLock:
    """An exclusive lock on one output, held from `acquire` to `release` (or the process's end)."""

    def __init__(self, output: str | os.PathLike):
        if not str(output):
            raise ConfigError("no output given (--out)")
        self.output = Path(output)
        self.path = lock_path(resolve_output(output))
        self._fd: int | None = None
        self._nested = False
        self._made: list[Path] = []

    def acquire(self, shared: bool = False) -> OutputLock:
        """Take the lock (a one-line AvvpError where another holds it); `shared`: join a block of this process
        that holds it already (`output_lock`)."""
        if shared and _HELD.counts.get(self.path):
            _HELD.counts[self.path] += 1
            self._nested = True
            return self
        check_writable(self.output, overwrite=True, directory=True)  # a file on the way: one line, not an OSError
        with writing(self.output):
            self._made = [folder for folder in (self.path.parent, *self.path.parent.parents) if not folder.exists()]
            self.path.parent.mkdir(parents=True, exist_ok=True)  # the folders the output goes into, as it would
            while True:
                fd = self._open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _holder_pid(fd)
                    os.close(fd)
                    raise AvvpError(
                        f"{self.output}: another command (pid {holder}) is writing it; wait for it to end "
                        "or choose another output"
                    ) from None
                try:
                    current = os.stat(self.path, follow_symlinks=False).st_ino
                except FileNotFoundError:
                    current = None
                if current != os.fstat(fd).st_ino:  # released and removed by its holder meanwhile: take the new one
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                if shared:
                    _HELD.counts[self.path] = 1
                return self

    def _open(self) -> int:
        """The lock file, never through a link: a symbolic link, a hard link or a special file there is refused."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise AvvpError(f"{self.path}: is a symbolic link, not avvp's lock file; remove it") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise AvvpError(f"{self.path}: not avvp's lock file (not a plain file with one link); remove it")
        return fd

    def release(self) -> None:
        if self._nested:
            _HELD.counts[self.path] -= 1
            self._nested = False
            return
        if self._fd is None:
            return
        _HELD.counts.pop(self.path, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still held, so that no one takes the file on its way out
        os.close(self._fd)
        self._fd = None
        for folder in self._made:  # made for the lock, left empty: the command wrote nothing there
            try:
                folder.rmdir()
            except OSError:
                break


def _holder_pid(fd: int, wait: float = 1.0) -> str:
    """The pid the holder wrote into the lock file (it writes it just after taking the lock)."""
    deadline = time.monotonic() + wait
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit() or time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.01)


@contextlib.contextmanager
def output_lock(*outputs: str | os.PathLike, shared: bool = True) -> Iterator[None]:
    """Hold the lock of every output for the block (one process); a taken one is a one-line AvvpError.

    `shared`: a writer nested in the block (`atomic_path`) shares it; False for a block that is a whole
    command's writer (`atomic_dir`), which another block of this process may not join."""
    locks: list[OutputLock] = []
    try:
        for output in outputs:
            locks.append(OutputLock(output).acquire(shared=shared))
        yield
    finally:
        for lock in reversed(locks):
            lock.release()


def main_decides(state, decide: Callable[[], T]) -> T:
    """`decide()` run by the main process of an (Accelerate) run only, its result or its one-line `AvvpError`
    (of the same class) handed to every process: the others never look at the files themselves, so none can see
    what the main process has already changed. `state`: a `PartialState`, or None for a single process."""
    if state is None or state.num_processes == 1:
        return decide()
    from accelerate.utils import broadcast_object_list

    answer: tuple = (None, None, None)
    if state.is_main_process:
        try:
            answer = (decide(), None, None)
        except AvvpError as error:
            answer = (None, type(error).__name__, str(error))
    # in-memory objects between our own processes (paths, flags, a message): nothing a user gave is unpickled
    value, kind, message = broadcast_object_list([answer])[0]
    if kind is not None:
        raise _ERROR_CLASSES.get(kind, AvvpError)(message)
    return value


_ERROR_CLASSES = {cls.__name__: cls for cls in (AvvpError, *AvvpError.__subclasses__())}


@contextlib.contextmanager
def hold_output(output: str | os.PathLike, state=None) -> Iterator[None]:
    """`output_lock` for the processes of one (Accelerate) run: the main process holds the lock, and every
    process stops with the same one-line error when another command holds it. `state`: a `PartialState`."""
    lock = OutputLock(output)

    def take() -> None:
        lock.acquire(shared=True)

    main_decides(state, take)
    try:
        yield
    finally:
        lock.release()


# --- full disks and other errors of writing ---

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
WRITE_ERRNOS = (*NO_SPACE_ERRNOS, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM)


def _no_space(error: BaseException) -> bool:
    text = str(error)
    return getattr(error, "errno", None) in NO_SPACE_ERRNOS or "No space left" in text or "os error 28" in text


def format_size(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def free_space(path: str | os.PathLike) -> int:
    """Bytes free for writing at `path` (measured on its nearest existing folder)."""
    return shutil.disk_usage(_nearest_existing(Path(path))).free


def check_free_space(output: str | os.PathLike, needed: int) -> None:
    """Refuse to start writing `needed` bytes (an estimate; 5% and 1 MB are added) where they do not fit."""
    free = free_space(output)
    wanted = int(needed * 1.05) + (1 << 20)
    if wanted > free:
        raise AvvpError(
            f"{output}: not enough free space: it needs about {format_size(wanted)}, {format_size(free)} are free"
        )


@contextlib.contextmanager
def writing(output: str | os.PathLike, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk (or another OS error of writing) inside the block into one line naming `output`.

    The block's own cleanup (temporary files, staging folders) runs before the error reaches the caller.
    """
    try:
        yield
    except AvvpError:
        raise
    except Exception as error:
        if not isinstance(error, OSError | RuntimeError) and type(error).__name__ != "SafetensorError":
            raise
        if _no_space(error):
            size = f" (it needs about {format_size(needed)})" if needed else ""
            raise AvvpError(f"{output}: no space left on the device while writing it{size}") from None
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            raise AvvpError(f"{output}: cannot write it ({error.strerror or error})") from None
        if isinstance(error, OSError) and "write" in str(error).lower():  # HDF5's own errors carry no errno
            raise AvvpError(f"{output}: cannot write it ({' '.join(str(error).split())[:160]})") from None
        raise


def close_discarding(handle) -> None:
    """Close an HDF5 file being written whose contents are to be dropped, even on a full disk.

    Closing flushes the chunk cache; where a write already failed for want of space the flush fails again, and
    HDF5 then crashes the process on its way out (exit 139). Shrinking every dataset to nothing drops its cached
    chunks, and truncating the file frees its space, so the close has only a little metadata left to write.
    """
    import h5py

    try:
        for dataset in [item for item in handle.values() if isinstance(item, h5py.Dataset)]:
            if dataset.maxshape[0] is None:
                dataset.resize(0, axis=0)
        os.truncate(handle.filename, 0)
    except Exception:  # a handle whose flush already failed can refuse anything: the close is still the best left
        pass
    with contextlib.suppress(Exception):
        handle.close()


def create_hdf5(path: str | os.PathLike):
    """A new HDF5 file at a staged path (`atomic_path`'s), opened for writing; close it with `close_discarding`
    when the writing fails."""
    import h5py

    return h5py.File(path, "w", track_order=True)


def close_hdf5(handle) -> None:
    """Close an HDF5 file being written; where the final flush fails (a full disk), the file is emptied and
    closed (`close_discarding`) and the failure is an OSError that `writing` reports in one line."""
    try:
        handle.close()
    except Exception as error:
        close_discarding(handle)
        raise OSError(errno.EIO, f"HDF5 could not finish the file: {' '.join(str(error).split())[:120]}") from None


@contextlib.contextmanager
def hdf5_writer(path: str | os.PathLike) -> Iterator:
    """An HDF5 file (up to tens of MB: label files, probabilities) built in memory and written to the staged
    `path` in one go when the block succeeds: a full disk is then an ordinary OSError of writing bytes
    (`writing` reports it), never a failed flush inside HDF5, which crashes the process on its way out."""
    import h5py

    buffer = io.BytesIO()
    handle = h5py.File(buffer, "w", track_order=True)
    try:
        yield handle
    finally:
        handle.close()  # in memory: nothing to fail
    with open(path, "wb") as output:
        output.write(buffer.getbuffer())
        output.flush()
        os.fsync(output.fileno())


# --- staged, then renamed in ---


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _stage_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}{re.escape(STAGE)}[A-Za-z0-9_]{{8}}\.tmp$")


def remove_stale_staging(path: str | os.PathLike) -> None:
    """Remove the staged files and folders a killed command left for the output `path` (hold its lock)."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    pattern = _stage_pattern(path.name)
    for entry in path.parent.iterdir():
        if pattern.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


def _stage_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{STAGE}", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _replace_file(tmp: Path, path: Path) -> None:
    # mkstemp (and some writers, e.g. safetensors) make files private (0600); give the mode open() would.
    os.chmod(tmp, 0o666 & ~_current_umask())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a staged path in the target's folder; it becomes `path` only if the block succeeds.

    The block holds the output's lock; staged files an earlier, killed writer left are removed first.
    """
    real = resolve_output(path)
    check_writable(real, overwrite, inputs=inputs)
    with output_lock(real):
        remove_stale_staging(real)
        tmp = _stage_file(real)
        try:
            yield tmp
            _replace_file(tmp, real)
        finally:
            if os.path.lexists(tmp):
                tmp.unlink()


@contextlib.contextmanager
def staged_files(
    paths: Sequence[str | os.PathLike], overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[list[Path]]:
    """`atomic_path` for several outputs written together: a staged path for each, all renamed in only when
    the block succeeds (one after the other), none of them otherwise."""
    reals = [resolve_output(path) for path in paths]
    for real in reals:
        check_writable(real, overwrite, inputs=inputs)
    with output_lock(*reals):
        staged: list[Path] = []
        try:
            for real in reals:
                remove_stale_staging(real)
                staged.append(_stage_file(real))
            yield staged
            for tmp, real in zip(staged, reals, strict=True):
                _replace_file(tmp, real)
        finally:
            for tmp in staged:
                if os.path.lexists(tmp):
                    tmp.unlink()


def is_ours(folder: str | os.PathLike, markers: Sequence[str] = (MARKER,)) -> bool:
    """Whether an existing folder is one avvp made (holds one of `markers`) or is empty."""
    folder = Path(folder)
    entries = [p for p in folder.iterdir() if not _stage_pattern(folder.name).match(p.name)]
    return not entries or any((folder / marker).is_file() for marker in markers)


def check_replaceable_dir(
    path: str | os.PathLike, overwrite: bool, markers: Sequence[str] = (MARKER,), inputs=()
) -> Path:
    """`check_writable` for a folder output that `--overwrite` may replace only when avvp made it."""
    real = resolve_output(path)
    check_writable(real, overwrite, directory=True, inputs=inputs)
    if os.path.lexists(real):
        if not real.is_dir():
            raise AvvpError(f"{path}: exists and is not a folder; --overwrite replaces only a folder avvp wrote")
        if not is_ours(real, markers):
            raise AvvpError(
                f"{path}: not written by avvp (no {' or '.join(markers)} in it); --overwrite will not delete it"
            )
    return real


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike,
    overwrite: bool = False,
    markers: Sequence[str] = (MARKER,),
    inputs: Iterable[str | os.PathLike] = (),
) -> Iterator[Path]:
    """Yield a staged folder beside `path`; it replaces `path` only if the block succeeds.

    An existing `path` is replaced (with `overwrite`) only when it holds one of `markers` (`MARKER`, which this
    writes into every folder it makes, or a command's own run file) or is empty, and never when it holds one of
    `inputs`. The block holds the output's lock; a full disk inside it is a one-line error naming `path`
    (`writing`), the staged folder removed.
    """
    inputs = list(inputs)
    real = check_replaceable_dir(path, overwrite, markers, inputs)
    with output_lock(real, shared=False), writing(path):
        remove_stale_staging(real)
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}{STAGE}", suffix=".tmp", dir=real.parent))
        os.chmod(tmp, 0o777 & ~_current_umask())
        try:
            yield tmp
            (tmp / MARKER).write_text(json.dumps({"written_by": "avvp"}) + "\n", encoding="utf-8")
            file_mode = 0o666 & ~_current_umask()  # as in atomic_path, for the files the block wrote
            for folder, _, names in os.walk(tmp):
                for name in names:
                    os.chmod(os.path.join(folder, name), file_mode)
            if os.path.lexists(real):
                shutil.rmtree(real) if real.is_dir() else real.unlink()
            os.replace(tmp, real)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def publish(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename a staged file or folder (written by this command, under the lock of the output holding `final`)
    into place; an earlier `final` folder (this command's own output, checked by the caller) is replaced."""
    staged, final = Path(staged), Path(final)
    if staged.is_dir() and final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    if staged.is_file():
        os.chmod(staged, 0o666 & ~_current_umask())
    os.replace(staged, final)


def remove_staged(path: str | os.PathLike) -> None:
    """Remove a file or folder this command staged or published inside its own output (under its lock)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


@contextlib.contextmanager
def staging_folder(out: Path, name: str) -> Iterator[Path]:
    """`out/.NAME.PID.tmp`, a staging folder inside the output folder `out` (whose lock the caller holds), removed
    whatever happens; the `.NAME.*.tmp` folders killed runs left are removed first. Its name is fixed before it
    exists, so a signal at any instant, even between its creation and the block, leaves nothing to find."""
    staging = out / f".{name}.{os.getpid()}.tmp"
    try:
        for leftover in out.glob(f".{name}.*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        staging.mkdir()
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(out: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder inside `out` (a folder whose lock the caller holds), removed whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=out))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
