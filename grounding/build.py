"""The streaming build: a feature store in, an AVG label file out, one chunk of videos at a time."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avvp.avg_labels import AvgLabelWriter
from avvp.classes import NUM_SNIPPETS
from avvp.config_cli import cli
from avvp.console import progress
from avvp.errors import ConfigError, StoreError
from avvp.grounding.graph import (
    ENGINES,
    RULES,
    SILENCE_THRESHOLD,
    EdgeRule,
    cosine_similarity,
    silent_snippets,
    torch_threads,
)
from avvp.grounding.thresholds import BALANCED_SHARE, balanced_quantile, calibrate, check_quantile, check_share
from avvp.inputs import MAX_SEED, read_npy
from avvp.io import check_writable
from avvp.runs import check_free_space, output_lock, writing
from avvp.store import check_stream_finite, iter_store, store_info

PAPER_THRESHOLDS = {"visual": 0.96, "audio": 0.99}
"""The authors' thresholds, for ResNet-152 (visual) and VGGish (audio) features: the `release` recipe."""
RECIPES = ("toolkit", "release")
"""Thresholds when none is given: `toolkit` balanced (a stated share of pairs grounded), `release` the authors'."""


BATCH_SIZE = 512
"""Videos read and labelled at a time by default: 22 MB of float16 features at the LLP widths. Measured the
least CPU time per video (larger chunks pass glibc's mmap threshold and are page-faulted in afresh each time)."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class GroundingConfig:
    """Everything `avvp-groundtruth build` needs; recorded in the label file's attributes."""

    features: Path
    """Feature store with `audio` and `visual` streams."""
    out: Path
    """AVG label file to write."""
    visual_threshold: float | None = None
    """Fixed visual cosine threshold in [-1, 1]; unset: the recipe's (the other modality's unset one: 0.96)."""
    audio_threshold: float | None = None
    """Fixed audio cosine threshold in [-1, 1]; unset: the recipe's (the other modality's unset one: 0.99)."""
    visual_quantile: float | None = None
    """Calibrate the visual threshold at this quantile (0, 1) of the sample's neighbour similarities."""
    audio_quantile: float | None = None
    """Calibrate the audio threshold at this quantile (0, 1) of the sample's neighbour similarities."""
    recipe: str = "toolkit"
    """With no threshold or quantile given: `toolkit` (balanced, `grounded_share`) or `release` (0.96, 0.99)."""
    grounded_share: float = BALANCED_SHARE
    """`toolkit`: the share of the calibration sample's snippet pairs grounded after the components are joined."""
    rule: str = "or"
    """`or` (the paper) or `and`: how the visual and audio tests combine into an edge."""
    engine: str = "fast"
    """`fast` (batched, vectorised) or `networkx` (one graph per video; the reference)."""
    exclude_silence: Path | None = None
    """A .npy silence embedding, (audio width,) or (1, audio width): snippets that sound like it get no edge."""
    silence_threshold: float = SILENCE_THRESHOLD
    """Cosine similarity to the silence embedding at or above which a snippet is silent."""
    neighbours: int = 10
    """Calibration: nearest neighbours per sampled snippet."""
    sample_videos: int = 2000
    """Calibration: videos sampled from the store (all their snippets are used)."""
    seed: int = 0
    """Calibration: seed of the sample."""
    batch_size: int = BATCH_SIZE
    """Videos read and labelled at a time (memory is bounded by this, not by the corpus)."""
    threads: int = 0
    """Threads computing the gram matrices (a further one reads ahead); 0: the cores this process may use."""
    overwrite: bool = False
    """Replace an existing `out`."""
    show_progress: bool = field(default=True, metadata=cli(flags="--show-progress/--quiet"))
    """Draw a progress bar on stderr."""

    def __post_init__(self):
        self.features, self.out = Path(self.features), Path(self.out)
        if self.out.resolve() == self.features.resolve():
            raise ConfigError(f"--out {self.out}: that is the feature store itself; write the labels elsewhere")
        for modality in ("visual", "audio"):
            threshold = getattr(self, f"{modality}_threshold")
            quantile = getattr(self, f"{modality}_quantile")
            if threshold is not None and quantile is not None:
                raise ConfigError(f"give --{modality}-threshold or --{modality}-quantile, not both")
            if threshold is not None and not -1.0 <= threshold <= 1.0:
                raise ConfigError(f"--{modality}-threshold {threshold}: a cosine threshold must lie in [-1, 1]")
            if quantile is not None:
                check_quantile(f"--{modality}-quantile", quantile)
        if self.rule not in RULES:
            raise ConfigError(f"--rule {self.rule!r}: choose one of {', '.join(RULES)}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"--recipe {self.recipe!r}: choose one of {', '.join(RECIPES)}")
        check_share(self.grounded_share)
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if not -1.0 <= self.silence_threshold <= 1.0:
            raise ConfigError(f"--silence-threshold {self.silence_threshold}: a cosine threshold must lie in [-1, 1]")
        if self.threads < 0:
            raise ConfigError(f"--threads {self.threads}: need a number of threads, or 0 for one per core")
        self.threads = self.threads or available_cores()
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: need at least one video per batch")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed {self.seed}: must be at least 0 and at most {MAX_SEED:,}")

    @property
    def explicit(self) -> bool:
        """Whether a threshold or a quantile was given (the recipe then sets nothing)."""
        given = (self.visual_threshold, self.audio_threshold, self.visual_quantile, self.audio_quantile)
        return any(value is not None for value in given)

    @property
    def balanced(self) -> bool:
        """Whether the thresholds are balanced to `grounded_share` (the toolkit's default)."""
        return not self.explicit and self.recipe == "toolkit"

    @property
    def calibrated(self) -> bool:
        """Whether a threshold comes from a quantile (FAISS calibration on a sample of the store)."""
        return self.visual_quantile is not None or self.audio_quantile is not None or self.balanced


def load_silence(path: str | os.PathLike, audio_width: int) -> np.ndarray:
    """A silence embedding from a .npy file: shape (audio_width,) or (1, audio_width), finite, not zero; float32."""
    path = Path(path)
    vector = read_npy(path, ConfigError)
    if vector.shape not in ((audio_width,), (1, audio_width)):
        raise ConfigError(
            f"{path}: silence embedding has shape {vector.shape}; expected ({audio_width},) or (1, {audio_width}), "
            "the width of the store's audio"
        )
    if not np.issubdtype(vector.dtype, np.number) or not np.isfinite(vector).all() or not vector.any():
        raise ConfigError(f"{path}: silence embedding must be finite, numeric and not all zero")
    return vector.reshape(audio_width).astype(np.float32)


def _check_store(path: Path) -> dict:
    """`store_info` of a store that has `audio` and `visual` streams; a one-line error if either is missing."""
    info = store_info(path)
    streams = info["streams"]
    missing = [name for name in ("audio", "visual") if name not in streams]
    if missing:
        raise StoreError(
            f"{path}: no stream {' or '.join(repr(m) for m in missing)}; grounding needs 'audio' and 'visual' "
            f"(the store has {', '.join(sorted(streams)) or 'no streams'})"
        )
    if info["videos"] == 0:
        raise StoreError(f"{path}: the feature store holds no videos")
    return info


def _similarity(path: Path, name: str, features: np.ndarray, video_ids: list[str], threads: int) -> np.ndarray:
    """Cosine similarities (B, 10, 10) of one stream of a chunk; non-finite features are an error naming the video.

    Checking the (B, 10, 10) result instead of the (B, 10, W) features costs nothing: any NaN or infinity in
    a snippet reaches its row of the gram matrix.
    """
    similarity = cosine_similarity(features, threads)
    bad = ~np.isfinite(similarity).all(axis=(1, 2))
    if bad.any():
        # Raises, naming the video, when a value is NaN or infinite.
        check_stream_finite(path, name, features, video_ids)
        video = video_ids[int(np.flatnonzero(bad)[0])]
        raise StoreError(f"{path}: stream {name!r} of video {video!r} is too large to compare in float32")
    return similarity


def _prefetch(chunks: Iterable, depth: int = 2) -> Iterator:
    """Iterate `chunks` in a background thread, `depth` items ahead: HDF5 reads overlap the (GIL-free) compute."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in chunks:
                if stop.is_set():
                    break
                items.put((item, None))
        except BaseException as error:  # handed to the consumer, raised there
            items.put((None, error))
        finally:
            if hasattr(chunks, "close"):
                chunks.close()  # a generator: runs its cleanup (closes the file) in this thread
        items.put((done, None))

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


def resolve_edge_rule(cfg: GroundingConfig) -> tuple[EdgeRule, dict]:
    """The edge rule with fixed or calibrated thresholds, and the attributes that say where they came from."""
    thresholds = {m: getattr(cfg, f"{m}_threshold") for m in ("visual", "audio")}
    attrs: dict = {}
    if cfg.calibrated:
        calibration = calibrate(cfg.features, cfg.neighbours, cfg.sample_videos, cfg.seed)
        quantiles = {m: getattr(cfg, f"{m}_quantile") for m in ("visual", "audio")}
        if cfg.balanced:
            quantile, achieved = balanced_quantile(calibration, cfg.grounded_share, cfg.rule)
            quantiles = {"visual": quantile, "audio": quantile}
            attrs.update(grounded_share=cfg.grounded_share, sample_grounded_share=achieved)
        for modality, quantile in quantiles.items():
            if quantile is not None:
                thresholds[modality] = calibration.threshold(modality, quantile)
                attrs[f"{modality}_quantile"] = quantile
        attrs.update(neighbours=cfg.neighbours, sample_videos=calibration.sample_videos, seed=cfg.seed)
    for modality, threshold in thresholds.items():
        if threshold is None:
            thresholds[modality] = PAPER_THRESHOLDS[modality]
    edge_rule = EdgeRule(thresholds["visual"], thresholds["audio"], cfg.rule)
    return edge_rule, attrs


def build(cfg: GroundingConfig) -> Path:
    """Label every video of the store and write the AVG label file atomically; returns its path.

    One writer at a time per `cfg.out` (`avvp.runs.output_lock`); a full disk is a one-line error, nothing left.
    """
    with output_lock(cfg.out), writing(cfg.out):
        return _build(cfg)


def _build(cfg: GroundingConfig) -> Path:
    info = _check_store(cfg.features)
    audio_width = info["streams"]["audio"]["shape"][-1]
    silence = None if cfg.exclude_silence is None else load_silence(cfg.exclude_silence, audio_width)
    check_writable(cfg.out, cfg.overwrite)  # before the calibration and the long pass
    check_free_space(cfg.out, info["videos"] * (NUM_SNIPPETS + NUM_SNIPPETS**2 + 16))  # components, labels, id
    edge_rule, calibration_attrs = resolve_edge_rule(cfg)
    attrs = {
        "source": str(cfg.features),
        "visual_threshold": edge_rule.visual_threshold,
        "audio_threshold": edge_rule.audio_threshold,
        "rule": edge_rule.rule,
        "engine": cfg.engine,
        "thresholds_from": "balanced" if cfg.balanced else "quantile" if cfg.calibrated else "fixed",
        **calibration_attrs,
    }
    if silence is not None:
        attrs.update(exclude_silence=str(cfg.exclude_silence), silence_threshold=cfg.silence_threshold)
    components_of = ENGINES[cfg.engine]
    chunks = iter_store(cfg.features, ("audio", "visual"), chunk_size=cfg.batch_size, check_finite=False)
    with (
        AvgLabelWriter(cfg.out, attrs=attrs, overwrite=cfg.overwrite) as writer,
        progress(disable=not cfg.show_progress) as bar,
        torch_threads(1),
        contextlib.closing(_prefetch(chunks)) as prefetched,
    ):
        task = bar.add_task("grounding", total=info["videos"])
        for video_ids, streams in prefetched:
            visual_sim = _similarity(cfg.features, "visual", streams["visual"], video_ids, cfg.threads)
            audio_sim = _similarity(cfg.features, "audio", streams["audio"], video_ids, cfg.threads)
            silent = None if silence is None else silent_snippets(streams["audio"], silence, cfg.silence_threshold)
            writer.append(video_ids, components_of(visual_sim, audio_sim, edge_rule, silent))
            bar.advance(task, len(video_ids))
    return cfg.out
