"""Build a full-size stand-in of the LLP release layout, for timing what the real download costs (files, not values).

    python -m avvp.benchmarks.full_size_layout --annotations ../shared/llp --out /tmp/full  # 8.1 GB apparent, 0.1 real
    python -m avvp.benchmarks.full_size_layout ... --skip 300        # a download with gaps: the last 300 videos absent

Writes `OUT/AVVP-ECCV20/data/` as the README's "Reproducing on real LLP" lays it out: the real annotation files
(copied from --annotations: AVVP_dataset_full.csv, the three split files, the two eval files) and `feats/vggish/`,
`feats/res152/`, `feats/r2plus1d_18/` with one float32 `.npy` per video named by its YouTube id: (10, 128),
(80, 2048) and (10, 512), 3 x 11,849 files for the full LLP list, 8.1 GB (7.6 GiB). The arrays hold zeros and
are written sparsely (a header, then the file extended to its size), so building takes seconds and little real
disk while every name, count and size is LLP's; reading them costs what reading the release does, minus the
disk. Not for numbers: every feature is zero. Delete the folder afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from avvp.annotations import DATASET_FILE, EVAL_FILES, SPLIT_FILES, read_dataset_videos
from avvp.console import run_app
from avvp.errors import AvvpError
from avvp.video_ids import youtube_id

SHAPES = {"vggish": (10, 128), "res152": (80, 2048), "r2plus1d_18": (10, 512)}
"""The release's three feature folders and the shape of each video's array (float32)."""
ANNOTATION_FILES = (DATASET_FILE, *SPLIT_FILES.values(), *EVAL_FILES.values())


def write_sparse_npy(path: Path, shape: tuple[int, ...]) -> None:
    """A float32 `.npy` of zeros with `shape`: its header, then the file extended to its full size (a hole)."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.truncate(handle.tell() + int(np.prod(shape)) * 4)


def build_layout(annotations: Path, out: Path, skip: int = 0) -> dict:
    """Write OUT/AVVP-ECCV20/data (annotation files and feats/); returns counts and bytes.

    `skip`: leave out the last `skip` videos of the list (all three files), as a download with gaps."""
    data = out / "AVVP-ECCV20" / "data"
    if data.exists():
        raise AvvpError(f"{data}: exists; remove it or pick another --out")
    missing = [name for name in ANNOTATION_FILES if not (annotations / name).is_file()]
    if missing:
        raise AvvpError(f"{annotations}: no {', '.join(missing)}; expected the six LLP annotation files")
    videos = read_dataset_videos(annotations)[0]
    kept = videos[: len(videos) - skip] if skip else videos
    data.mkdir(parents=True)
    for name in ANNOTATION_FILES:
        shutil.copyfile(annotations / name, data / name)
    size = 0
    for folder, shape in SHAPES.items():
        (data / "feats" / folder).mkdir(parents=True)
        for video in kept:
            write_sparse_npy(data / "feats" / folder / f"{youtube_id(video)}.npy", shape)
        size += len(kept) * (128 + int(np.prod(shape)) * 4)
    return {"folder": str(data), "videos": len(kept), "left_out": len(videos) - len(kept), "files": 3 * len(kept),
            "bytes": size}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m avvp.benchmarks.full_size_layout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--annotations", type=Path, required=True, help="Folder with the six LLP annotation files.")
    parser.add_argument("--out", type=Path, required=True, help="Folder to build AVVP-ECCV20/data in.")
    parser.add_argument("--skip", type=int, default=0, help="Leave out the last SKIP videos (a download with gaps).")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        built = build_layout(args.annotations, args.out, args.skip)
    except AvvpError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(
        f"wrote {built['folder']}: {built['videos']:,} videos ({built['left_out']} left out), {built['files']:,} "
        f".npy files, {built['bytes'] / 1e9:.1f} GB apparent, in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    run_app(main)
