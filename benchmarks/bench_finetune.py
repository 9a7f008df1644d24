"""Finetune speed: training throughput per parser, and the in-memory store path against per-video .npy files.

1. Throughput: videos/s of training steps (forward, loss, backward, Adam) for each of the paper's rows, at the
   demo width (hidden size 128) and the paper width (512), batch 64; and again under the release recipe for the rows
   whose net it changes (Base and Base+GCAA gain the modality discriminator there).
2. Data path: one training epoch over the same features served two ways — the finetune loop's path (the split
   held in memory as tensors, batches by one fancy index) and a per-video `.npy` DataLoader in the LLP release
   layout (`vggish/ID.npy` 10x128, `res152/ID.npy` 80x2048, `r2plus1d_18/ID.npy` 10x512; 8 frames averaged per
   second as the store does, default collation). Timed without the model (the input pipeline alone), with the
   demo-width model's training step, and the step alone on batches already in memory: the last bounds what any
   input path can gain per epoch, (step + npy pipeline) / step. All measured in this one run, best of 3 epochs.

On a GPU (`--device cuda`) the model runs there; the store path holds the split on the GPU as the finetune loop
does, the npy DataLoader pins memory and copies each batch over, and each epoch ends with a synchronisation.

    python -m avvp.benchmarks.bench_finetune [--videos 1400] [--device cpu|cuda] [--bf16] [--workers 0]
    python -m avvp.benchmarks.bench_finetune --throughput-only          # part 1 alone (a minute or two on 2 cores)
    python -m avvp.benchmarks.speed finetune
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avvp.annotations import WeakLabels, write_weak_labels
from avvp.classes import NUM_CLASSES, NUM_SNIPPETS
from avvp.console import run_app
from avvp.finetune.config import RECIPES, FinetuneConfig
from avvp.finetune.data import SplitData, load_split_data, make_loader
from avvp.finetune.losses import parser_loss
from avvp.finetune.models import PAPER_ROWS, STREAMS, FinetuneModel, build_parser, has_discriminator
from avvp.store import RAW_WIDTHS, write_store

TARGET_RATIO = 3.0
"""The store path must be at least this much faster per epoch than the per-video .npy path."""
BATCH_SIZE = 64
REPEATS = 3
"""Epochs timed per path; the best is reported."""
FRAMES_PER_SECOND = 8
NPY_FOLDERS = {"audio": "vggish", "visual": "res152", "motion": "r2plus1d_18"}


def make_corpus(root: Path, num_videos: int, seed: int = 0, npy: bool = True) -> tuple[Path, Path]:
    """Random features for `num_videos` train videos: a store (+ AVVP_train.csv) and the LLP .npy layout.

    The visual .npy files hold 80 frames whose per-second means are the store's rows, so both paths serve
    the same features (the store in float16, its default as `avvp data import-han` writes it, so up to float16
    rounding; the store path turns each batch into float32). Returns (store path, npy root); the annotation
    folder is `root`. With `npy` False only the store is written (the npy root stays empty).
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
        for name, folder in NPY_FOLDERS.items() if npy else ():
            np.save(npy_root / folder / f"{video_id}.npy", frames if name == "visual" else streams[name][index])
    labels = rng.random((num_videos, NUM_CLASSES)) < 0.08
    labels[np.arange(num_videos), rng.integers(0, NUM_CLASSES, num_videos)] = True
    write_weak_labels(root / "AVVP_train.csv", WeakLabels(video_ids=video_ids, labels=labels))
    return write_store(root / "llp.h5", video_ids, streams, dtype="float16"), npy_root


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


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch on `device` (asynchronous from pinned memory); unchanged on the CPU."""
    if device.type == "cpu":
        return batch
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def throughput_rows() -> list[tuple[str, str, str]]:
    """(label, model, recipe): each paper row under its default recipe, then under the release recipe each
    Base-family row whose net that recipe changes (a discriminator where the paper's has none)."""
    rows = [(name, name, "paper") for name in PAPER_ROWS]
    for name in PAPER_ROWS:
        if name != "han" and has_discriminator(name, adv_on_every_row=True) != has_discriminator(name):
            rows.append((f"{name} (release)", name, "release"))
    return rows


def train_step(
    model_name: str,
    widths: dict[str, int],
    hidden_size: int,
    device: torch.device,
    bf16: bool = False,
    recipe: str = "paper",
) -> Callable[[dict], None]:
    """One optimisation step of a freshly initialised parser on `device`, as a function of a (host) batch."""
    torch.manual_seed(0)
    cfg = FinetuneConfig(hidden_size=hidden_size, intermediate_size=hidden_size, **RECIPES[recipe])
    parser = build_parser(
        model_name,
        widths,
        cfg.parser_sizes(),
        gcaa_first_snippet=cfg.gcaa_first_snippet,
        adv_on_every_row=cfg.adv_on_every_row,
    )
    model = FinetuneModel(parser).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)

    def step(batch: dict[str, torch.Tensor]) -> None:
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = model({name: batch[name] for name in STREAMS}, adv_strength=0.5)
        terms = parser_loss(output, batch["labels"], cfg.loss_weights())
        optimizer.zero_grad(set_to_none=True)
        terms.backward.backward()
        optimizer.step()

    return step


def touch(device: torch.device) -> Callable[[dict], None]:
    """Use every tensor of a batch once, on `device` (the input pipeline alone)."""

    def step(batch: dict[str, torch.Tensor]) -> None:
        for tensor in to_device(batch, device).values():
            tensor.float().sum()

    return step


def epoch_seconds(loader: Iterable[dict], step: Callable[[dict], None], device: torch.device) -> float:
    start = time.perf_counter()
    for batch in loader:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def throughput(
    data: SplitData, model_name: str, hidden_size: int, device: torch.device, bf16: bool, recipe: str = "paper"
) -> float:
    """Training videos/s over one epoch of `data` (after one warm-up batch)."""
    step = train_step(model_name, data.widths, hidden_size, device, bf16, recipe)
    loader = make_loader(data, BATCH_SIZE, shuffle=True)
    step(next(iter(loader)))
    return len(data) / epoch_seconds(loader, step, device)


SMOKE = dict(videos=64, throughput_videos=8, paper_videos=8, device="cpu")
"""Sizes of the suite's smoke run (`python -m avvp.benchmarks.speed --smoke`): the same code path and checks, in
seconds; its figures mean nothing."""


def run(
    videos: int = 1400,
    throughput_videos: int = 512,
    paper_videos: int = 128,
    device: str | None = None,
    bf16: bool = False,
    workers: int = 0,
    throughput_only: bool = False,
) -> list[str]:
    """The report's lines."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"{where}; batch {BATCH_SIZE}; {'bf16 autocast' if bf16 else 'full precision'}"]
    with tempfile.TemporaryDirectory(prefix="bench_finetune.") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        if throughput_only:
            videos = max(throughput_videos, paper_videos)
        store, npy_root = make_corpus(root, videos, npy=not throughput_only)
        lines.append(f"corpus: {videos} train videos of random features ({time.perf_counter() - start:.1f} s to write)")

        start = time.perf_counter()
        data = load_split_data(store, root, "train", STREAMS)
        resident = data.to(device)  # as the finetune loop holds it: on the GPU when there is one
        load_seconds = time.perf_counter() - start

        lines.append("training throughput (videos/s):")
        lines.append(f"  {'model':<30}{'hidden 128':>12}{'hidden 512':>12}")
        small = SplitData("train", data.video_ids[:throughput_videos], *_head(resident, throughput_videos))
        paper = SplitData("train", data.video_ids[:paper_videos], *_head(resident, paper_videos))
        for label, model_name, recipe in throughput_rows():
            demo_speed = throughput(small, model_name, 128, device, bf16, recipe)
            paper_speed = throughput(paper, model_name, 512, device, bf16, recipe)
            lines.append(f"  {label:<30}{demo_speed:>12.0f}{paper_speed:>12.1f}")
        if throughput_only:
            return lines

        npy_loader = DataLoader(
            NpyVideos(npy_root, data.video_ids, data.labels),
            batch_size=BATCH_SIZE,
            shuffle=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
        )
        store_loader = make_loader(resident, BATCH_SIZE, shuffle=True)
        lines.append(f"one epoch of {videos} videos, store in memory vs per-video .npy DataLoader ({workers} workers):")
        lines.append(f"  store: read once in {load_seconds:.2f} s, before the first epoch")
        pipeline = touch(device), touch(device)
        _, npy_pipeline = _compare(lines, "input pipeline only", store_loader, npy_loader, *pipeline, device)
        model_name = "base-adv-skip-gcaa"
        steps = [train_step(model_name, data.widths, 128, device, bf16) for _ in range(3)]
        label = f"with the training step of {model_name}, hidden size 128"
        store_epoch, npy_epoch = _compare(lines, label, store_loader, npy_loader, *steps[:2], device)
        lines[-1] += (
            f"  [target >= {TARGET_RATIO:.0f}x: {'met' if npy_epoch >= TARGET_RATIO * store_epoch else 'NOT met'}]"
        )
        on_device = [to_device(batch, device) for batch in store_loader]
        step_seconds = min(epoch_seconds(on_device, steps[2], device) for _ in range(REPEATS))
        lines.append(
            f"  the step alone, batches already on the {device.type}: {step_seconds:.3f} s; so no input path can make "
            f"an epoch more than (step + npy pipeline) / step = {(step_seconds + npy_pipeline) / step_seconds:.1f}x "
            "faster here"
        )
    return lines


def _compare(
    lines: list[str], label: str, store_loader, npy_loader, store_step, npy_step, device: torch.device
) -> tuple[float, float]:
    """Best of REPEATS epochs of each path (same kind of step on both), as a report line; returns both times (s)."""
    store_seconds = min(epoch_seconds(store_loader, store_step, device) for _ in range(REPEATS))
    npy_seconds = min(epoch_seconds(npy_loader, npy_step, device) for _ in range(REPEATS))
    ratio = npy_seconds / store_seconds
    lines.append(f"  {label}: store {store_seconds:.3f} s, npy {npy_seconds:.3f} s, store {ratio:.1f}x faster")
    return store_seconds, npy_seconds


def _head(data: SplitData, n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return {name: t[:n] for name, t in data.features.items()}, data.labels[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1400, help="Train videos for the data-path epoch (LLP-sim demo).")
    parser.add_argument("--throughput-videos", type=int, default=512, help="Videos per throughput epoch at width 128.")
    parser.add_argument("--paper-videos", type=int, default=128, help="Videos per throughput epoch at width 512.")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="Where the model runs [cuda if available].")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the model (CPU or GPU).")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes of the .npy path.")
    parser.add_argument("--throughput-only", action="store_true", help="Only the training throughput (part 1).")
    args = parser.parse_args()
    options = (args.videos, args.throughput_videos, args.paper_videos, args.device, args.bf16, args.workers)
    lines = run(*options, throughput_only=args.throughput_only)
    print("\n".join(lines))


if __name__ == "__main__":
    run_app(main)
