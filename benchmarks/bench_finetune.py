"""Finetune speed on CPU: training throughput per parser, and the in-memory store path against per-video .npy files.

1. Throughput: videos/s of training steps (forward, loss, backward, Adam) for each of the paper's rows, at the
   demo width (d_model 128) and the paper width (512), batch 64.
2. Data path: one training epoch over the same features served two ways — the finetune loop's path (the split
   held in memory as tensors, batches by one fancy index) and a per-video `.npy` DataLoader in the LLP release
   layout (`vggish/ID.npy` 10x128, `res152/ID.npy` 80x2048, `r2plus1d_18/ID.npy` 10x512; 8 frames averaged per
   second as the store does, default collation). Timed without the model (the input pipeline alone) and
   with the demo-width model's training step; both measured in this one run, best of 3 epochs each.

    python -m benchmarks.bench_finetune [--videos 1400] [--throughput-videos 512]
    python -m benchmarks.speed finetune
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avvp.annotations import WeakLabels, write_weak_labels
from avvp.classes import NUM_CLASSES, NUM_SNIPPETS
from avvp.store import RAW_WIDTHS, write_store
from finetune.data import SplitData, load_split_data, make_loader
from finetune.losses import parser_loss
from finetune.models import PAPER_ROWS, STREAMS, FinetuneModel, build_parser

TARGET_RATIO = 3.0
"""The store path must be at least this much faster per epoch than the per-video .npy path."""
BATCH_SIZE = 64
REPEATS = 3
"""Epochs timed per path; the best is reported."""
FRAMES_PER_SECOND = 8
NPY_FOLDERS = {"audio": "vggish", "visual": "res152", "motion": "r2plus1d_18"}


def make_corpus(root: Path, num_videos: int, seed: int = 0) -> tuple[Path, Path]:
    """Random features for `num_videos` train videos: a store (+ AVVP_train.csv) and the LLP .npy layout.

    The visual .npy files hold 80 frames whose per-second means are the store's rows, so both paths serve
    the same features. Returns (store path, npy root); the annotation folder is `root`.
    """
    rng = np.random.default_rng(seed)
    video_ids = [f"bench{i:06d}_0_10" for i in range(num_videos)]
    streams = {
        name: rng.standard_normal((num_videos, NUM_SNIPPETS, width), np.float32) for name, width in RAW_WIDTHS.items()
    }
    npy_root = root / "feats"
    for folder in NPY_FOLDERS.values():
        (npy_root / folder).mkdir(parents=True)
    for index, video_id in enumerate(video_ids):
        frames = rng.standard_normal((NUM_SNIPPETS * FRAMES_PER_SECOND, RAW_WIDTHS["visual"]), np.float32)
        streams["visual"][index] = frames.reshape(NUM_SNIPPETS, FRAMES_PER_SECOND, -1).mean(axis=1)
        for name, folder in NPY_FOLDERS.items():
            np.save(npy_root / folder / f"{video_id}.npy", frames if name == "visual" else streams[name][index])
    labels = rng.random((num_videos, NUM_CLASSES)) < 0.08
    labels[np.arange(num_videos), rng.integers(0, NUM_CLASSES, num_videos)] = True
    write_weak_labels(root / "AVVP_train.csv", WeakLabels(video_ids=video_ids, labels=labels))
    return write_store(root / "llp.h5", video_ids, streams, dtype="float32"), npy_root


class NpyVideos(Dataset):
    """The per-video path: three np.load calls per video, 80 frames averaged to 10, labels from memory."""

    def __init__(self, root: Path, video_ids: list[str], labels: torch.Tensor):
        self.root, self.video_ids, self.labels = root, video_ids, labels

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video_id = self.video_ids[index]
        item = {name: np.load(self.root / folder / f"{video_id}.npy") for name, folder in NPY_FOLDERS.items()}
        item["visual"] = item["visual"].reshape(NUM_SNIPPETS, FRAMES_PER_SECOND, -1).mean(axis=1)
        return {**{name: torch.from_numpy(a) for name, a in item.items()}, "labels": self.labels[index]}


def train_step(model_name: str, widths: dict[str, int], d_model: int) -> Callable[[dict], None]:
    """One optimisation step of a freshly initialised parser, as a function of a batch."""
    torch.manual_seed(0)
    model = FinetuneModel(build_parser(model_name, widths, d_model=d_model, ff_dim=d_model)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)

    def step(batch: dict[str, torch.Tensor]) -> None:
        output = model({name: batch[name] for name in STREAMS}, adv_strength=0.5)
        terms = parser_loss(output, batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        terms.backward.backward()
        optimizer.step()

    return step


def touch(batch: dict[str, torch.Tensor]) -> None:
    """Use every tensor of a batch once (the input pipeline alone)."""
    for tensor in batch.values():
        tensor.float().sum()


def epoch_seconds(loader, step: Callable[[dict], None]) -> float:
    start = time.perf_counter()
    for batch in loader:
        step(batch)
    return time.perf_counter() - start


def throughput(data: SplitData, model_name: str, d_model: int) -> float:
    """Training videos/s over one epoch of `data` (after one warm-up batch)."""
    step = train_step(model_name, data.widths, d_model)
    loader = make_loader(data, BATCH_SIZE, shuffle=True)
    step(next(iter(loader)))
    return len(data) / epoch_seconds(loader, step)


def run(videos: int = 1400, throughput_videos: int = 512, paper_videos: int = 128) -> list[str]:
    """The report's lines."""
    lines = [f"CPU, {torch.get_num_threads()} torch threads; batch {BATCH_SIZE}"]
    with tempfile.TemporaryDirectory(prefix="bench_finetune.") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        store, npy_root = make_corpus(root, videos)
        lines.append(f"corpus: {videos} train videos of random features ({time.perf_counter() - start:.1f} s to write)")

        start = time.perf_counter()
        data = load_split_data(store, root, "train", STREAMS)
        load_seconds = time.perf_counter() - start

        lines.append("training throughput (videos/s):")
        lines.append(f"  {'model':<20}{'d_model 128':>12}{'d_model 512':>12}")
        small = SplitData("train", data.video_ids[:throughput_videos], *_head(data, throughput_videos))
        paper = SplitData("train", data.video_ids[:paper_videos], *_head(data, paper_videos))
        for model_name in PAPER_ROWS:
            demo_speed, paper_speed = throughput(small, model_name, 128), throughput(paper, model_name, 512)
            lines.append(f"  {model_name:<20}{demo_speed:>12.0f}{paper_speed:>12.1f}")

        npy_loader = DataLoader(NpyVideos(npy_root, data.video_ids, data.labels), batch_size=BATCH_SIZE, shuffle=True)
        store_loader = make_loader(data, BATCH_SIZE, shuffle=True)
        lines.append(f"one epoch of {videos} videos, store in memory vs per-video .npy DataLoader (num_workers 0):")
        lines.append(f"  store: read once in {load_seconds:.2f} s, before the first epoch")
        ratio = _compare(lines, "input pipeline only", store_loader, npy_loader, touch, touch)
        lines[-1] += f"  [target >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}]"
        steps = [train_step("base-adv-skip-gcaa", data.widths, 128) for _ in range(2)]
        _compare(lines, "with the training step of base-adv-skip-gcaa, d_model 128", store_loader, npy_loader, *steps)
    return lines


def _compare(lines: list[str], label: str, store_loader, npy_loader, store_step, npy_step) -> float:
    """Best of REPEATS epochs of each path (same step on both), as a report line; returns the ratio."""
    store_seconds = min(epoch_seconds(store_loader, store_step) for _ in range(REPEATS))
    npy_seconds = min(epoch_seconds(npy_loader, npy_step) for _ in range(REPEATS))
    ratio = npy_seconds / store_seconds
    lines.append(f"  {label}: store {store_seconds:.3f} s, npy {npy_seconds:.3f} s, store {ratio:.1f}x faster")
    return ratio


def _head(data: SplitData, n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return {name: t[:n] for name, t in data.features.items()}, data.labels[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1400, help="Train videos for the data-path epoch (LLP-sim demo).")
    parser.add_argument("--throughput-videos", type=int, default=512, help="Videos per throughput epoch at width 128.")
    parser.add_argument("--paper-videos", type=int, default=128, help="Videos per throughput epoch at width 512.")
    args = parser.parse_args()
    print("\n".join(run(args.videos, args.throughput_videos, args.paper_videos)))


if __name__ == "__main__":
    main()
