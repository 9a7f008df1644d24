"""Refinement speed: the MA pass's throughput (videos/s) at LLP-sim paper size, and its share of the MA recipe.

The MA recipe is: train a first parser, refine the training split's labels with it (`avvp-finetune refine`),
train the parser again on the refined labels. The refinement pass (partners, 3 forward passes per video,
the decision rule) is timed whole on a training split of LLP-sim paper size (10,000 videos; weak labels from
LLP-sim's label model, random features at the LLP widths, as throughput does not depend on their content),
with an untrained parser at the paper width (its weights do not change the cost). A training run is
`epochs` epochs at the training throughput measured here on `--train-videos` videos (batch 64, as
avvp.benchmarks.bench_finetune), without the validation passes; the recipe is two runs and one refinement.

    python -m avvp.benchmarks.bench_refine [--videos 10000] [--epochs 40] [--device cpu|cuda] [--models han,...]
    python -m avvp.benchmarks.speed refine
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from accelerate import Accelerator

from avvp.benchmarks.bench_finetune import throughput
from avvp.classes import NUM_SNIPPETS
from avvp.console import run_app
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.data import SplitData
from avvp.finetune.models import FinetuneModel, build_parser
from avvp.finetune.refine import BATCH_SIZE, refine_split
from avvp.store import RAW_WIDTHS
from avvp.synth import EventModel, llp_stats

MODELS = ("han", "base-adv-skip-gcaa")
"""The parsers of the +MA rows."""
PAPER_SIZES = FinetuneConfig().parser_sizes()
"""The paper's parser sizes (hidden 512, one head), as the +MA rows train them."""


def paper_split(videos: int, seed: int = 0) -> SplitData:
    """A training split of `videos` LLP-sim-like weak labels and random float16 features (as a store holds them)."""
    rng = np.random.default_rng(seed)
    weak = EventModel(llp_stats()).weak_labels(rng, videos, "train")
    generator = torch.Generator().manual_seed(seed)
    features = {
        name: torch.randn(videos, NUM_SNIPPETS, width, generator=generator).half() for name, width in RAW_WIDTHS.items()
    }
    video_ids = [f"bench{i:06d}_0_10" for i in range(videos)]
    return SplitData("train", video_ids, features, torch.from_numpy(weak).float())


SMOKE = dict(videos=64, epochs=1, train_videos=16, device="cpu", models=("han",))
"""Sizes of the suite's smoke run (`python -m avvp.benchmarks.speed --smoke`): the same code path and checks, in
seconds; its figures mean nothing."""


def run(
    videos: int = 10_000,
    epochs: int = 40,
    train_videos: int = 256,
    device: str | None = None,
    models: tuple[str, ...] = MODELS,
) -> list[str]:
    """The report's lines."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    data = paper_split(videos)
    lines = [
        f"{where}; {videos} training videos{' (LLP-sim paper size)' if videos == 10_000 else ''}, "
        f"hidden size {PAPER_SIZES.hidden_size}, refine batch {BATCH_SIZE} "
        f"(forward passes of {3 * BATCH_SIZE}); a training run = {epochs} epochs at the measured training throughput",
        f"  {'model':<20}{'refine s':>10}{'videos/s':>10}{'train v/s':>11}{'run s':>9}{'recipe s':>10}"
        f"{'refine share':>14}",
    ]
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no")
    head = SplitData("train", data.video_ids[:train_videos], *_head(data, train_videos))
    for name in models:
        torch.manual_seed(0)
        model = FinetuneModel(build_parser(name, data.widths, PAPER_SIZES))
        warm_up = SplitData("train", data.video_ids[:64], *_head(data, 64))
        refine_split(model, warm_up, accelerator=accelerator)
        start = time.perf_counter()
        refine_split(model, data, seed=0, accelerator=accelerator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        refine_seconds = time.perf_counter() - start
        train_speed = throughput(head.to(device), name, PAPER_SIZES.hidden_size, device, bf16=False)
        run_seconds = epochs * videos / train_speed
        recipe = 2 * run_seconds + refine_seconds
        lines.append(
            f"  {name:<20}{refine_seconds:>10.1f}{videos / refine_seconds:>10.0f}{train_speed:>11.0f}"
            f"{run_seconds:>9.0f}{recipe:>10.0f}{100 * refine_seconds / recipe:>13.2f}%"
        )
    return lines


def _head(data: SplitData, n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return {name: t[:n] for name, t in data.features.items()}, data.labels[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000, help="Training videos (LLP-sim paper: 10,000).")
    parser.add_argument("--epochs", type=int, default=40, help="Epochs of each training run of the recipe.")
    parser.add_argument("--train-videos", type=int, default=256, help="Videos of the training-throughput epoch.")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="Where the model runs [cuda if available].")
    parser.add_argument("--models", default=",".join(MODELS), help="Comma-separated parsers.")
    args = parser.parse_args()
    models = tuple(name.strip() for name in args.models.split(","))
    print("\n".join(run(args.videos, args.epochs, args.train_videos, args.device, models)))


if __name__ == "__main__":
    run_app(main)
