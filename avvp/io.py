"""Small helpers for the files commands read, and the names of the output layer (`avvp.output`) that callers
imported from here before it existed."""

from __future__ import annotations

from avvp.output import (  # noqa: F401  (re-exported: new code imports avvp.output)
    PICTURE_FORMATS,
    atomic_dir,
    atomic_path,
    check_picture,
    check_writable,
)


def first_non_utf8(contents: bytes) -> tuple[int, int] | None:
    """(line number, byte value) of the first invalid UTF-8 in `contents`; None where it all decodes."""
    try:
        contents.decode("utf-8")
    except UnicodeDecodeError as error:
        return contents[: error.start].count(b"\n") + 1, contents[error.start]
    return None
