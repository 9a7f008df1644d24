"""Where an LLP filename meets the name a store or a feature release gives the same video.

LLP names a video `YTID_start_end` (`-3M-k4nIYIM_30_40`); the LLP feature release names its files by the first
11 characters of that filename (`-3M-k4nIYIM.npy`), the video's YouTube id, which is what the HAN, MA and paper
loaders open. A store imported from the release without annotations therefore names its videos by YouTube
id. `match_videos` is the one place where filenames are paired with such names: `avvp data import-han` uses it
on the release's files, every reader of a store with annotations (finetune, evaluate, parse, the tables) uses
it through `store_ids_for`.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avvp.errors import StoreError

YOUTUBE_ID_LENGTH = 11


def youtube_id(filename: str) -> str:
    """The release's name for an LLP video: the first 11 characters of its filename."""
    return filename[:YOUTUBE_ID_LENGTH]


@dataclass
class VideoMatch:
    """Filenames paired with available names (store ids, release file stems)."""

    names: dict[str, str]
    """filename -> the name holding its video: the filename itself, or its YouTube id."""
    missing: list[str]
    """Filenames found under neither name."""
    shared: dict[str, list[str]] = field(default_factory=dict)
    """YouTube id -> the two or more filenames it would stand for (none of them is in `names`)."""
    doubled: list[tuple[str, str]] = field(default_factory=list)
    """(filename, YouTube id) where both names are available for one video."""

    @property
    def by_youtube_id(self) -> int:
        """How many filenames were found by their YouTube id."""
        return sum(name != filename for filename, name in self.names.items())

    def unmatched(self, available: Iterable[str]) -> list[str]:
        """The available names that stand for no filename (in their order), leaving out the shared ones."""
        taken = set(self.names.values()) | set(self.shared)
        return [name for name in available if name not in taken]


def match_videos(available: Iterable[str], filenames: Sequence[str]) -> VideoMatch:
    """Pair each filename with an available name: itself, or else its YouTube id when that stands for exactly
    one of `filenames` (one to one); a YouTube id two filenames would share is theirs neither."""
    available = set(available)
    by_prefix = [f for f in filenames if f not in available and youtube_id(f) in available]
    claims = Counter(youtube_id(f) for f in by_prefix)
    shared: dict[str, list[str]] = {}
    names, missing = {}, []
    for filename in filenames:
        if filename in available:
            names[filename] = filename
        elif youtube_id(filename) not in available:
            missing.append(filename)
        elif claims[youtube_id(filename)] > 1:
            shared.setdefault(youtube_id(filename), []).append(filename)
        else:
            names[filename] = youtube_id(filename)
    doubled = [
        (filename, youtube_id(filename))
        for filename, name in names.items()
        if name == filename and youtube_id(filename) != filename and youtube_id(filename) in available
        and youtube_id(filename) not in claims  # an id another filename stands for is that one's, not a double
    ]  # fmt: skip
    return VideoMatch(names=names, missing=missing, shared=shared, doubled=doubled)


def shown(items: Sequence[str], first: int = 3) -> str:
    """'a', 'b', 'c', ... : the first few items, quoted."""
    return ", ".join(repr(item) for item in items[:first]) + (", ..." if len(items) > first else "")


_NOTED: set[tuple[Path, int]] = set()
"""Stores (path, modification time) already announced as named by YouTube id: a command reading three splits
says it once."""


def store_ids_for(
    store: str | os.PathLike,
    stored_ids: Iterable[str],
    filenames: Sequence[str],
    listed_in: str | os.PathLike,
    skip_missing: bool = False,
) -> list[str]:
    """The store's id of each of `filenames` (listed in `listed_in`), in their order; with `skip_missing`, of
    those the store holds (`match_videos(...).missing` are the others).

    A store names a video by its filename, or (imported from the release without annotations) by its YouTube
    id: such a store is accepted when the pairing is one to one, with one note on stderr. Raises StoreError
    when a video is not in the store (unless `skip_missing`; the message names `--missing skip`), two videos
    would share one store video, or one is in it twice.
    """
    match = match_videos(stored_ids, filenames)
    if match.missing and not skip_missing:
        raise StoreError(
            f"{store}: {len(match.missing)} of the {len(filenames)} videos of {listed_in} are not in the store "
            f"({shown(match.missing)}), neither by filename nor by YouTube id; the features and the annotations "
            "must describe the same videos, or pass --missing skip to leave the absent ones out"
        )
    _check_one_to_one(store, match, listed_in)
    return [match.names[filename] for filename in filenames if filename in match.names]


def filenames_in_store(
    store: str | os.PathLike, stored_ids: Iterable[str], filenames: Sequence[str], listed_in: str | os.PathLike
) -> dict[str, str]:
    """Store id -> filename, for the store's videos among `filenames` (others may be absent, or not annotated);
    the same one-to-one rule and note as `store_ids_for`."""
    match = match_videos(stored_ids, filenames)
    _check_one_to_one(store, match, listed_in)
    return {name: filename for filename, name in match.names.items()}


def _check_one_to_one(store: str | os.PathLike, match: VideoMatch, listed_in: str | os.PathLike) -> None:
    if match.shared:
        video, sharing = next(iter(match.shared.items()))
        raise StoreError(
            f"{store}: store video {video!r} would be the features of {len(sharing)} videos of {listed_in} "
            f"({shown(sharing)}; {len(match.shared)} YouTube id(s) in all); a store named by YouTube id needs one "
            "video per id (import with --annotations to name them by filename)"
        )
    if match.doubled:
        filename, video = match.doubled[0]
        raise StoreError(
            f"{store}: video {filename!r} of {listed_in} is in the store twice, as {filename!r} and as its YouTube "
            f"id {video!r} ({len(match.doubled)} video(s) in all); expected one of the two"
        )
    if match.by_youtube_id:
        key = (Path(store).resolve(), Path(store).stat().st_mtime_ns)
        if key not in _NOTED:
            _NOTED.add(key)
            print(
                f"note: {store} names its videos by YouTube id (as the LLP feature release names its files): "
                f"matched one to one to the first {YOUTUBE_ID_LENGTH} characters of the annotations' filenames",
                file=sys.stderr,
            )
