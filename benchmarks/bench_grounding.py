"""Speed of the grounding stage: the `fast` engine against `networkx` and per-pair Python loops.

One run, one store: 20,000 made-up videos at the LLP widths (audio 128, visual 2048) in float16, written to a
temporary folder and read once so that it sits in the page cache. Reported, each the best of a few repeats,
as wall time and as CPU time (user + system of the process; the steadier figure when other work shares the
CPU, and wall <= CPU time whenever the process has a core to itself, as it never waits on I/O here):

- `fast` end to end (`avvp.grounding.build.build`: read, similarities, components, write) in videos per minute,
  and its parts timed one after another on one thread: the HDF5 read, the float16 -> float32 upcast, the
  gram matrices, the normalisation to cosines, the components (adjacency + labelling), the write;
- on features already in memory (similarities + components), on the same subset: `fast` on every core and on
  one thread, and `networkx`;
- per-pair loops on a smaller subset, their per-video rates extrapolated (the whole store would take them
  minutes): the authors' way (their compute_gt.py: pairs i < j, one `torch.nn.CosineSimilarity` at a time on
  tensors made per pair, union-find; with this toolkit's rule) and a leaner numpy one (dot over norms).

Labels from `fast`, `networkx` and the build must be identical; the loops' are compared and differences
counted. The load average is printed with the figures.

    python -m avvp.benchmarks.bench_grounding [--videos 20000] [--networkx-videos 5000] [--loop-videos 300]
    python -m avvp.benchmarks.speed grounding
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.avg_labels import AvgLabelWriter, read_avg_labels
from avvp.classes import NUM_SNIPPETS
from avvp.console import run_app
from avvp.grounding.build import BATCH_SIZE, PAPER_THRESHOLDS, GroundingConfig, available_cores, build
from avvp.grounding.graph import (
    SIMILARITY_BLOCK,
    EdgeRule,
    components_fast,
    cosine_from_gram,
    gram_matrices,
    ground,
    torch_threads,
)
from avvp.store import RAW_WIDTHS, StoreWriter, iter_store, read_store, read_video_ids

TARGET_SPEEDUP = 100.0
TARGET_VIDEOS_PER_MINUTE = 1_000_000


def write_benchmark_store(path: Path, videos: int, seed: int = 0) -> Path:
    """A float16 store whose snippets fall into 1-10 segments per video and modality, with LLP's widths.

    Within a segment the visual cosine is about 0.97 (always over 0.96; 0.6 across segments) and the audio one
    0.987-0.993 (about half over 0.99; 0 across), so at the paper's thresholds the components range from
    single snippets to whole videos.
    """
    rng = np.random.default_rng(seed)
    with StoreWriter(path, {"audio": RAW_WIDTHS["audio"], "visual": RAW_WIDTHS["visual"]}, dtype="float16") as w:
        for start in range(0, videos, 1000):
            count = min(1000, videos - start)
            streams = {}
            for name, noise in (("audio", 0.1), ("visual", 0.18)):
                width = RAW_WIDTHS[name]
                segments = rng.integers(1, NUM_SNIPPETS + 1, count)[:, None]  # (n, 1) segments per video
                segment = (rng.random((count, NUM_SNIPPETS)) * segments).astype(np.int64)  # (n, 10)
                centres = rng.standard_normal((count, NUM_SNIPPETS, width), dtype=np.float32)  # (n, 10, W)
                if name == "visual":
                    centres = np.abs(centres)  # ResNet features are averages of ReLU outputs
                picked = np.take_along_axis(centres, segment[:, :, None], axis=1)  # (n, 10, W)
                streams[name] = picked + noise * rng.standard_normal((count, NUM_SNIPPETS, width), dtype=np.float32)
            w.append([f"bench{i:07d}_0_10" for i in range(start, start + count)], **streams)
    return path


@dataclass
class Timing:
    wall: float
    """Best wall time of the repeats, seconds."""
    cpu: float
    """Best CPU time (user + system, all threads of the process) of the repeats, seconds: what the work costs
    whatever else runs on the machine."""
    result: object = None


def timed(fn: Callable[[], object], repeats: int) -> Timing:
    """Run `fn` `repeats` times; the best wall and CPU times, and the last result."""
    best = Timing(float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        best = Timing(min(best.wall, time.perf_counter() - wall), min(best.cpu, time.process_time() - cpu), result)
    return best


def _per_pair_components(
    audio: np.ndarray, visual: np.ndarray, dtype: type, edge: Callable[[np.ndarray, np.ndarray, int, int], bool]
) -> np.ndarray:
    """(n, 10) component ids, video by video: `edge(audio, visual, i, j)` for each pair i < j, then union-find
    with the smaller root kept (as the authors' compute_gt.py does)."""
    components = np.empty((len(audio), NUM_SNIPPETS), dtype=np.int8)
    for video in range(len(audio)):
        a, v = audio[video].astype(dtype), visual[video].astype(dtype)
        parent = list(range(NUM_SNIPPETS))

        def find(i: int, parent=parent) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for i in range(NUM_SNIPPETS):
            for j in range(i + 1, NUM_SNIPPETS):
                if edge(a, v, i, j):
                    root_i, root_j = find(i), find(j)
                    parent[root_i] = parent[root_j] = min(root_i, root_j)
        roots = [find(i) for i in range(NUM_SNIPPETS)]
        number = {root: n for n, root in enumerate(dict.fromkeys(roots))}
        components[video] = [number[root] for root in roots]
    return components


def per_pair_loop(audio: np.ndarray, visual: np.ndarray, edge_rule: EdgeRule) -> np.ndarray:
    """The authors' compute_gt.py with this toolkit's rule: one `torch.nn.CosineSimilarity` at a time on tensors
    made for the pair, from float32 features (their .npy files)."""
    import torch

    cosine = torch.nn.CosineSimilarity(dim=0, eps=1e-6)

    def edge(a: np.ndarray, v: np.ndarray, i: int, j: int) -> bool:
        return bool(
            cosine(torch.tensor(v[i]), torch.tensor(v[j])) >= edge_rule.visual_threshold
            or cosine(torch.tensor(a[i]), torch.tensor(a[j])) >= edge_rule.audio_threshold
        )

    return _per_pair_components(audio, visual, np.float32, edge)


def per_pair_loop_numpy(audio: np.ndarray, visual: np.ndarray, edge_rule: EdgeRule) -> np.ndarray:
    """A leaner per-pair loop: one numpy cosine (dot over norms, float64) at a time."""

    def cos(x: np.ndarray, i: int, j: int) -> float:
        return np.dot(x[i], x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))

    def edge(a: np.ndarray, v: np.ndarray, i: int, j: int) -> bool:
        return cos(v, i, j) >= edge_rule.visual_threshold or cos(a, i, j) >= edge_rule.audio_threshold

    return _per_pair_components(audio, visual, np.float64, edge)


def fast_parts(store: Path, edge_rule: EdgeRule, out: Path) -> dict[str, float]:
    """CPU seconds of each part of the fast path over the whole store, one part after another on this thread."""
    import torch

    seconds = dict.fromkeys(("HDF5 read", "upcast f16->f32", "gram matrices", "cosines", "components", "write"), 0.0)
    clock = time.thread_time  # CPU time of this thread: what each part costs, however busy the machine is
    with AvgLabelWriter(out, overwrite=True) as writer, torch_threads(1):
        chunks = iter_store(store, ("audio", "visual"), chunk_size=BATCH_SIZE, check_finite=False)
        while True:
            start = clock()
            try:
                video_ids, streams = next(chunks)
            except StopIteration:
                break
            seconds["HDF5 read"] += clock() - start
            similarity = {}
            for name, features in streams.items():
                start = clock()  # the upcast alone, as gram_matrices does it (then subtracted from its time)
                buffer = torch.empty((SIMILARITY_BLOCK, *features.shape[1:]))
                source = torch.from_numpy(features)
                for block in range(0, len(features), SIMILARITY_BLOCK):
                    part = source[block : block + SIMILARITY_BLOCK]
                    buffer[: len(part)].copy_(part)
                upcast = clock() - start
                seconds["upcast f16->f32"] += upcast
                start = clock()
                gram = gram_matrices(features)
                seconds["gram matrices"] += clock() - start - upcast
                start = clock()
                similarity[name] = cosine_from_gram(gram)
                seconds["cosines"] += clock() - start
            start = clock()
            components = components_fast(similarity["visual"], similarity["audio"], edge_rule)
            seconds["components"] += clock() - start
            start = clock()
            writer.append(video_ids, components)
            seconds["write"] += clock() - start
    return seconds


SMOKE = dict(videos=200, networkx_videos=50, loop_videos=5, repeats=1)
"""Sizes of the suite's smoke run (`python -m avvp.benchmarks.speed --smoke`): the same code path and checks, in
seconds; its figures mean nothing."""


def run(videos: int = 20_000, networkx_videos: int = 5_000, loop_videos: int = 300, repeats: int = 3) -> list[str]:
    """Write the store, time every path on it; lines of the report."""
    edge_rule = EdgeRule(PAPER_THRESHOLDS["visual"], PAPER_THRESHOLDS["audio"])
    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="bench_grounding.") as folder:
        store = write_benchmark_store(Path(folder) / "store.h5", videos)
        store_gb = store.stat().st_size / 1e9
        for _ in iter_store(store, ("audio", "visual"), chunk_size=BATCH_SIZE, check_finite=False):
            pass  # into the page cache
        ground(*(np.ones((1, NUM_SNIPPETS, 8), np.float16),) * 2, edge_rule)  # import torch before timing
        load_before = os.getloadavg()[0]
        out = Path(folder) / "avg.h5"
        # The paper's fixed thresholds, as every other path here uses (the toolkit's default build is balanced).
        thresholds = dict(visual_threshold=edge_rule.visual_threshold, audio_threshold=edge_rule.audio_threshold)
        cfg = GroundingConfig(store, out, **thresholds, overwrite=True, show_progress=False)
        end_to_end = timed(lambda: build(cfg), repeats)
        labels = read_avg_labels(out).components
        parts = min(
            (fast_parts(store, edge_rule, Path(folder) / "parts.h5") for _ in range(repeats)),
            key=lambda p: sum(p.values()),
        )
        subset = read_store(store, ("audio", "visual"), read_video_ids(store)[:networkx_videos], dtype="float16")
    audio, visual = subset["audio"], subset["visual"]
    count = len(audio)
    with torch_threads(1):
        runs = {
            "fast": timed(lambda: ground(audio, visual, edge_rule, threads=cores), repeats),
            "fast 1 thread": timed(lambda: ground(audio, visual, edge_rule), repeats),
            "networkx": timed(lambda: ground(audio, visual, edge_rule, "networkx"), 1),
            "authors' loop": timed(lambda: per_pair_loop(audio[:loop_videos], visual[:loop_videos], edge_rule), 1),
            "numpy loop": timed(lambda: per_pair_loop_numpy(audio[:loop_videos], visual[:loop_videos], edge_rule), 1),
        }
    load_after = os.getloadavg()[0]

    fast = runs["fast"].result
    if not (np.array_equal(fast, runs["networkx"].result) and np.array_equal(fast, labels[:count])):
        raise AssertionError("fast, networkx and the build do not give identical labels")
    per_video = {name: (loop_videos if "loop" in name else count) for name in runs}
    wall_rate = {name: per_video[name] / timing.wall for name, timing in runs.items()}  # videos per second
    cpu_rate = {name: per_video[name] / timing.cpu for name, timing in runs.items()}
    per_minute = 60 * videos / end_to_end.wall
    parts_total = sum(parts.values())
    components_per_video = np.bincount(labels.max(axis=1) + 1, minlength=NUM_SNIPPETS + 1)[1:] / len(labels)
    lines = [
        f"store: {videos} made-up videos, float16, audio 128 + visual 2048 ({store_gb:.2f} GB) in the page cache; "
        f"visual >= 0.96 or audio >= 0.99; {cores} CPU cores, load average {load_before:.1f} -> {load_after:.1f} "
        "(other work shares the CPU: CPU times are the steadier figures)",
        "  components per video (share of videos with 1..10): "
        + " ".join(f"{share:.2f}" for share in components_per_video),
        f"  fast end to end (read + similarities + components + write; batch {BATCH_SIZE}, {cfg.threads} compute "
        f"threads + 1 reader): {end_to_end.wall:.2f} s = {per_minute / 1e6:.2f} M videos/minute; CPU time "
        f"{end_to_end.cpu:.2f} s = {1e6 * end_to_end.cpu / videos:.1f} us/video = "
        f"{60 * videos / end_to_end.cpu / 1e6:.2f} M videos per CPU-minute",
        f"  its parts, one after another on one thread (CPU time of the thread, {parts_total:.2f} s in all):",
    ]
    lines += [
        f"    {name:<17}{elapsed:>7.3f} s {1e6 * elapsed / videos:>7.2f} us/video {100 * elapsed / parts_total:>5.1f}%"
        for name, elapsed in parts.items()
    ]
    lines.append(f"  features in memory (similarities + components), fast on {cores} threads and on 1:")
    for name, timing in runs.items():
        extrapolated = f"; {videos / wall_rate[name] / 60:.1f} min for the store" if "loop" in name else ""
        lines.append(
            f"    {name:<14} {per_video[name]:>5} videos: wall {timing.wall:>7.3f} s {wall_rate[name]:>9,.0f} videos/s"
            f", CPU {timing.cpu:>7.3f} s {cpu_rate[name]:>9,.0f} videos/CPU-s{extrapolated}"
        )
    for slow in ("networkx", "authors' loop", "numpy loop"):
        lines.append(
            f"    fast / {slow}: {wall_rate['fast'] / wall_rate[slow]:,.0f}x wall ({cores} threads against one); "
            f"one thread against one: {wall_rate['fast 1 thread'] / wall_rate[slow]:,.0f}x wall, "
            f"{cpu_rate['fast 1 thread'] / cpu_rate[slow]:,.0f}x CPU"
        )
    differ = {name: int((runs[name].result != fast[:loop_videos]).any(axis=1).sum()) for name in runs if "loop" in name}
    lines.append(
        f"  labels: fast == networkx == the build on {count} videos; the loops differ on "
        + ", ".join(f"{n} ({name})" for name, n in differ.items())
        + f" of {loop_videos}"
    )
    speedup = wall_rate["fast"] / wall_rate["authors' loop"]
    met_speedup, met_rate = speedup >= TARGET_SPEEDUP, per_minute >= TARGET_VIDEOS_PER_MINUTE
    lines.append(
        f"  target: fast >= {TARGET_SPEEDUP:.0f}x the authors' per-pair loop: {'met' if met_speedup else 'NOT MET'} "
        f"({speedup:,.0f}x); >= 1 M videos/minute end to end on {cores} cores: {'met' if met_rate else 'NOT MET'} "
        f"({per_minute / 1e6:.2f} M wall)"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20_000, help="videos in the store")
    parser.add_argument("--networkx-videos", type=int, default=5_000, help="subset for fast vs networkx in memory")
    parser.add_argument("--loop-videos", type=int, default=300, help="subset for the per-pair loops")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fast paths (best is reported)")
    args = parser.parse_args(argv)
    run_app(lambda: print("\n".join(run(args.videos, args.networkx_videos, args.loop_videos, args.repeats))))


if __name__ == "__main__":
    run_app(main)
