"""Speed of the vectorised LLP evaluation (avvp.metrics) against the per-video oracle (avvp.benchmarks.oracles).

Scores the 1,200-video test split (the real annotations in ../shared/llp or --annotations DIR; without them
a synthetic 1,200-video split) with two sets of predictions, checks that both paths give the same ten
numbers, and prints the best time of several repeats for each and the speed-up.

    python -m avvp.benchmarks.bench_metrics [--annotations DIR] [--repeats 7]
    python -m avvp.benchmarks.speed evaluate
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avvp.annotations import DenseLabels, Split, WeakLabels, load_split
from avvp.baselines import reference_predictions
from avvp.benchmarks import oracles
from avvp.classes import NUM_CLASSES, NUM_SNIPPETS
from avvp.console import run_app
from avvp.metrics import LEVELS, SCORE_NAMES, evaluate, gate_predictions

SHARED_LLP = Path(__file__).resolve().parents[1].parent / "shared" / "llp"
TARGET_SPEEDUP = 20.0
TARGET_SECONDS = 1.0


def synthetic_split(num_videos: int = 1200, seed: int = 0) -> Split:
    """A made-up test split with LLP-like sparsity: 1-3 classes a video, visual events longer than audio ones."""
    rng = np.random.default_rng(seed)
    audio = np.zeros((num_videos, NUM_CLASSES, NUM_SNIPPETS), dtype=bool)
    visual = np.zeros_like(audio)
    for video in range(num_videos):
        for c in rng.choice(NUM_CLASSES, size=rng.integers(1, 4), replace=False):
            for dense, mean_length, share in ((audio, 4, 0.85), (visual, 7, 0.65)):
                if rng.random() < share:
                    length = int(np.clip(rng.poisson(mean_length), 1, NUM_SNIPPETS))
                    onset = int(rng.integers(0, NUM_SNIPPETS - length + 1))
                    dense[video, c, onset : onset + length] = True
    video_ids = [f"synth{i:06d}_0_10" for i in range(num_videos)]
    weak = WeakLabels(video_ids=video_ids, labels=audio.any(-1) | visual.any(-1))
    return Split(name="test", weak=weak, dense=DenseLabels(video_ids=video_ids, audio=audio, visual=visual))


def load_test_split(annotations: Path | None) -> tuple[str, Split]:
    """(description, split): the real test split where there is one, else a synthetic one."""
    if annotations is None and (SHARED_LLP / "AVVP_test_pd.csv").is_file():
        annotations = SHARED_LLP
    if annotations is None:
        return "synthetic split (no LLP annotations found)", synthetic_split()
    return f"LLP test split ({annotations})", load_split(annotations, "test")


def benchmark_predictions(split: Split, seed: int = 0) -> dict[str, DenseLabels]:
    """The weak-label oracle, and noisy gated probabilities that look like a model's output."""
    weak, truth = split.weak.labels, split.dense
    rng = np.random.default_rng(seed)
    video_prob = 0.45 * weak + 0.6 * rng.random(weak.shape)  # true classes mostly on, some false ones

    def snippet_prob(dense: np.ndarray) -> np.ndarray:
        noise = rng.random(dense.shape)
        smooth = (noise + np.roll(noise, 1, axis=-1) + np.roll(noise, -1, axis=-1)) / 3  # runs, not salt and pepper
        return 0.4 * dense + 0.75 * smooth

    audio, visual = gate_predictions(video_prob, snippet_prob(truth.audio), snippet_prob(truth.visual))
    return {
        "weak-label oracle": reference_predictions(split, "weak-oracle"),
        "random-ish": DenseLabels(truth.video_ids, audio, visual),
    }


def best_time(fn: Callable[[], dict], repeats: int) -> tuple[float, dict]:
    """Best wall time of `repeats` calls, and the result of the last."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


SMOKE = dict(repeats=1, oracle_repeats=1)
"""Sizes of the suite's smoke run (`python -m avvp.benchmarks.speed --smoke`): the same code path and checks, in
seconds; its figures mean nothing."""


def run(annotations: Path | None = None, repeats: int = 7, oracle_repeats: int = 3) -> list[str]:
    """Time both paths on each set of predictions; lines of the report."""
    description, split = load_test_split(annotations)
    truth = split.dense
    lines = [
        f"{description}: {len(truth.video_ids)} videos, segment + event level (ten numbers); "
        f"best of {repeats} (vectorised) and {oracle_repeats} (oracle) runs",
        f"  {'predictions':<18} {'vectorised':>11} {'oracle':>9} {'speed-up':>9}   segment / event Type@AV",
    ]
    met = True
    for name, pred in benchmark_predictions(split).items():
        fast_seconds, fast = best_time(lambda pred=pred: evaluate(pred, truth), repeats)
        slow_seconds, slow = best_time(lambda pred=pred: oracles.evaluate(pred, truth), oracle_repeats)
        for level in LEVELS:
            for score in SCORE_NAMES:
                fast_value, slow_value = fast[level][score], slow[level][score]
                if abs(fast_value - slow_value) > 1e-9:
                    raise AssertionError(f"{name}: {level} {score}: vectorised {fast_value!r}, oracle {slow_value!r}")
        speedup = slow_seconds / fast_seconds
        met &= speedup >= TARGET_SPEEDUP and fast_seconds < TARGET_SECONDS
        lines.append(
            f"  {name:<18} {fast_seconds * 1000:>8.1f} ms {slow_seconds:>7.3f} s {speedup:>8.1f}x   "
            f"{fast['segment']['type_av']:.1f} / {fast['event']['type_av']:.1f}"
        )
    lines.append("  same ten numbers from both paths (to 1e-9)")
    target = f"vectorised >= {TARGET_SPEEDUP:.0f}x faster and < {TARGET_SECONDS:.0f} s"
    lines.append(f"  target: {target}: {'met' if met else 'NOT MET'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=None, help="folder with the LLP annotation files")
    parser.add_argument("--repeats", type=int, default=7, help="runs of the vectorised path (best is reported)")
    parser.add_argument("--oracle-repeats", type=int, default=3, help="runs of the oracle (best is reported)")
    args = parser.parse_args(argv)
    run_app(lambda: print("\n".join(run(args.annotations, args.repeats, args.oracle_repeats))))


if __name__ == "__main__":
    run_app(main)
