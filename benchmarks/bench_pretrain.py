"""Pretraining throughput: videos/s of `avvp-pretrain` training steps at the demo size on CPU, 1 and 2 processes.

Each figure is a real run of `avvp-pretrain --preset demo --max-steps N` (hidden 256, 4 layers, 4 heads, batch 64
per process) in a subprocess, on random features at the LLP widths (throughput does not depend on the content);
the figure is metrics.json's `videos_per_second`: forward, AVG loss (multi), backward and AdamW steps only, no
start-up, validation or checkpointing. The runs, all in this one invocation:
- 1 process with PyTorch's default intra-op threads (one per core), and with 1 thread;
- 2 processes of 1 thread each, `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` (the
  torch.distributed launcher, gloo; Accelerate 1.x's `--cpu --num_processes 2` starts a single process).
Where a GPU is present, also the `paper` size (hidden 1024, 12 layers, 16 heads) with bf16 on it, and the share of
the GPU's dense bf16 peak that reaches (model FLOPs: 3 x the forward matmuls); on a CPU-only machine that line
says it needs a GPU.

    python -m avvp.benchmarks.bench_pretrain [--videos 2048] [--steps 16]
    python -m avvp.benchmarks.speed pretrain
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from avvp.avg_labels import write_avg_labels
from avvp.classes import NUM_SNIPPETS
from avvp.console import run_app
from avvp.pretrain.config import PRESETS
from avvp.store import RAW_WIDTHS, write_store

BIN = Path(sys.executable).parent
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
"""Dense bf16 tensor-core peak by GPU name (vendor data sheets, no sparsity)."""


def make_corpus(root: Path, videos: int, seed: int = 0) -> tuple[Path, Path]:
    """Random features at the LLP widths and random grounding components (1-3 segments per video)."""
    rng = np.random.default_rng(seed)
    ids = [f"bench{i:06d}" for i in range(videos)]
    streams = {
        name: rng.standard_normal((videos, NUM_SNIPPETS, width), dtype=np.float32) for name, width in RAW_WIDTHS.items()
    }
    cuts = rng.integers(1, NUM_SNIPPETS, size=(videos, 2))
    components = (np.arange(NUM_SNIPPETS)[None, :] >= cuts.min(1, keepdims=True)).astype(np.int8)
    components += np.arange(NUM_SNIPPETS)[None, :] >= cuts.max(1, keepdims=True)
    features = write_store(root / "pretrain.h5", ids, streams, dtype="float16")
    labels = write_avg_labels(root / "avg.h5", ids, components)
    return features, labels


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pretrain_run(
    features: Path,
    labels: Path,
    out: Path,
    steps: int,
    processes: int = 1,
    threads: int | None = None,
    preset: str = "demo",
    mixed_precision: str = "no",
) -> dict:
    """One `avvp-pretrain` run; returns its metrics.json."""
    args = [
        "--preset", preset, "--features", features, "--labels", labels, "--out", out, "--max-steps", steps,
        "--epochs", 100, "--val-fraction", 0.01, "--save-every", 100000, "--mixed-precision", mixed_precision,
    ]  # fmt: skip
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if processes == 1:
        command = [BIN / "avvp-pretrain", *args]
    else:
        env["ACCELERATE_USE_CPU"] = "1"
        command = [
            BIN / "accelerate", "launch", "--multi_gpu", "--num_processes", processes, "--num_machines", 1,
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", _free_port(),
            BIN / "avvp-pretrain", *args,
        ]  # fmt: skip
    result = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"avvp-pretrain failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads((out / "metrics.json").read_text())


def forward_flops_per_video(hidden: int, layers: int, intermediate: int | None = None) -> float:
    """Matmul FLOPs of one video's forward pass: the stream projections, then 30 tokens through the BERT layers."""
    intermediate = intermediate or 4 * hidden
    tokens = 3 * NUM_SNIPPETS
    projections = 2 * NUM_SNIPPETS * hidden * sum(RAW_WIDTHS.values())
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 2 * 2 * tokens * tokens * hidden
    return projections + layers * per_layer


def gpu_line(features: Path, labels: Path, root: Path, steps: int) -> str:
    if not torch.cuda.is_available():
        return "GPU, paper size (hidden 1024, 12 layers, 16 heads), bf16: needs a GPU; not measured on this machine"
    name = torch.cuda.get_device_name()
    metrics = pretrain_run(features, labels, root / "gpu", steps, preset="paper", mixed_precision="bf16")
    rate = metrics["videos_per_second"]
    paper = PRESETS["paper"]
    achieved = 3 * forward_flops_per_video(paper["hidden_size"], paper["num_layers"]) * rate / 1e12
    peak = next((tflops for key, tflops in BF16_PEAK_TFLOPS.items() if key in name), None)
    share = f", {100 * achieved / peak:.1f}% of its {peak:.0f} TFLOP/s bf16 peak" if peak else " (peak unknown)"
    return f"GPU {name}, paper size, bf16: {rate:,.0f} videos/s, {achieved:.1f} TFLOP/s{share}"


SMOKE = dict(videos=48, steps=2, preset="tiny", two_processes=False, default_threads=False)
"""Sizes of the suite's smoke run (`python -m avvp.benchmarks.speed --smoke`): the same code path and checks, in
seconds; its figures mean nothing. It makes one run: the default-threads run is the same command with another
OMP_NUM_THREADS, and the 2-process launch is tests/test_pretrain_train.py's (`test_two_processes_agree`)."""


def run(
    videos: int = 2048,
    steps: int = 16,
    preset: str = "demo",
    two_processes: bool = True,
    default_threads: bool = True,
) -> list[str]:
    """Measure and return the report lines (`two_processes`: also the 2-process launch and its ratio;
    `default_threads`: also 1 process with PyTorch's default threads)."""
    with tempfile.TemporaryDirectory(prefix="bench_pretrain.") as tmp:
        root = Path(tmp)
        features, labels = make_corpus(root, videos)
        rates = {}
        if default_threads:
            one_all = pretrain_run(features, labels, root / "one_all", steps, preset=preset)
            rates[f"1 process, {one_all['threads_per_process']} threads"] = one_all["videos_per_second"]
        one_single = pretrain_run(features, labels, root / "one_single", steps, threads=1, preset=preset)
        rates["1 process, 1 thread"] = one_single["videos_per_second"]
        if two_processes:
            two = pretrain_run(features, labels, root / "two", steps, processes=2, threads=1, preset=preset)
            assert two["processes"] == 2 and len(set(two["process_weight_checksums"])) == 1
            rates["2 processes, 1 thread each"] = two["videos_per_second"]
        sizes = PRESETS[preset]
        lines = [
            f"pretraining throughput, {preset} size (hidden {sizes['hidden_size']}, {sizes['num_layers']} layers, "
            f"{sizes['num_heads']} heads, batch {sizes['batch_size']} per process), CPU ({os.cpu_count()} cores), "
            f"{steps} steps, variant multi:"
        ]
        lines += [f"  {label:<28} {rate:8.1f} videos/s" for label, rate in rates.items()]
        best_one = max(rate for label, rate in rates.items() if label.startswith("1 process"))
        if two_processes:
            lines.append(f"  2 processes / best 1 process: {two['videos_per_second'] / best_one:.2f}x")
        lines.append(gpu_line(features, labels, root, steps))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2048, help="videos in the random corpus")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run")
    args = parser.parse_args(argv)
    print("\n".join(run(args.videos, args.steps)))
    return 0


if __name__ == "__main__":
    run_app(lambda: sys.exit(main()))
