"""Snippet graphs of a video and their connected components, on whole batches of videos.

For each video: the 10x10 cosine similarities of its audio snippets and of its visual snippets; an edge
between snippets i != j when the visual similarity >= the visual threshold OR (`rule="and"`: AND) the audio
similarity >= the audio threshold, with silent snippets (audio within a cosine threshold of a silence
embedding) left out of every edge; then the connected components, numbered 0, 1, ... in order of each
component's first snippet.

Two engines give identical labels from the same similarity matrices: `fast` (the adjacency and a bitmask
transitive closure over the whole batch at once) and `networkx` (one small graph per video, the readable
reference).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import networkx as nx
import numpy as np

from avvp.classes import NUM_SNIPPETS
from avvp.errors import ConfigError

RULES = ("or", "and")
"""How the visual and the audio test combine into an edge: the paper's disjunction, or the conjunction."""
SILENCE_THRESHOLD = 0.99
"""The authors' release: a snippet is silent when its VGGish feature is within cosine 0.99 of silence's."""
SIMILARITY_BLOCK = 64
"""Videos upcast to float32 at a time inside `gram_matrices` (5 MB at the ResNet width): the copy stays in cache."""


@dataclass(frozen=True)
class EdgeRule:
    """When two snippets of a video are joined by an edge."""

    visual_threshold: float
    """Edge when the cosine similarity of the two visual snippets is at least this ([-1, 1])."""
    audio_threshold: float
    """Edge when the cosine similarity of the two audio snippets is at least this ([-1, 1])."""
    rule: str = "or"
    """`or` (the paper: either modality suffices) or `and` (both must agree)."""

    def __post_init__(self):
        for name in ("visual_threshold", "audio_threshold"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: a cosine threshold must lie in [-1, 1]")
        if self.rule not in RULES:
            raise ConfigError(f"--rule {self.rule!r}: choose one of {', '.join(RULES)}")

    def thresholds(self) -> tuple[np.float32, np.float32]:
        """(visual, audio) as float32, the type of the similarities, so that every engine compares alike."""
        return np.float32(self.visual_threshold), np.float32(self.audio_threshold)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch's CPU ops on `count` intra-op threads inside the block, restoring the setting after.

    The build runs torch ops on one thread each and spreads blocks of videos over its own threads instead
    (`gram_matrices`): on a shared or busy machine torch's pool waits at a barrier for its slowest thread
    after every small op, which measured up to 10x slower here; independent threads do not wait.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gram_matrices(features: np.ndarray, threads: int = 1) -> np.ndarray:
    """(B, 10, W) float16/float32 snippet features -> (B, 10, 10) float32 inner products of the snippets per video.

    Works SIMILARITY_BLOCK videos at a time: float16 is upcast into a reused float32 buffer (torch's upcast is
    vectorised, numpy's is not), so no float32 copy of the whole batch is ever written. With `threads` > 1
    the blocks go to that many threads, each running torch ops on one thread (see `torch_threads`).
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(features))  # (B, T, W)
    batch, snippets, width = x.shape
    gram = torch.empty((batch, snippets, snippets), dtype=torch.float32)
    local = threading.local()  # one float32 buffer per thread

    def block_gram(start: int) -> None:
        block = x[start : start + SIMILARITY_BLOCK]
        if block.dtype != torch.float32:
            if not hasattr(local, "buffer"):
                local.buffer = torch.empty((SIMILARITY_BLOCK, snippets, width), dtype=torch.float32)
            block = local.buffer[: len(block)].copy_(block)
        torch.bmm(block, block.transpose(1, 2), out=gram[start : start + len(block)])

    starts = range(0, batch, SIMILARITY_BLOCK)
    if threads <= 1 or len(starts) < 2:
        for start in starts:
            block_gram(start)
    else:
        with torch_threads(1), ThreadPoolExecutor(min(threads, len(starts))) as pool:
            list(pool.map(block_gram, starts))
    return gram.numpy()


def cosine_from_gram(gram: np.ndarray) -> np.ndarray:
    """(B, 10, 10) gram matrices -> (B, 10, 10) float32 cosine similarities, exactly symmetric.

    A zero snippet has similarity 0 to every snippet, itself included; NaN or infinite features (which make
    their rows of the gram non-finite) give non-finite similarities, so callers can check these instead of
    the (much larger) features.
    """
    import torch

    gram = torch.from_numpy(gram)
    gram = (gram + gram.transpose(1, 2)) * 0.5  # bmm need not be bitwise symmetric; the edges must be
    norms = torch.diagonal(gram, dim1=1, dim2=2).sqrt()  # (B, T)
    scale = norms[:, :, None] * norms[:, None, :]  # (B, T, T)
    # (not `scale > 0`: NaN features must stay NaN so that callers see them)
    similarity = torch.where(scale == 0, torch.zeros((), dtype=torch.float32), gram / scale)
    return similarity.numpy()


def cosine_similarity(features: np.ndarray, threads: int = 1) -> np.ndarray:
    """(B, 10, W) float16/float32 snippet features -> (B, 10, 10) float32 cosine similarities per video.

    The gram matrix of the raw features divided by the outer product of the snippet norms: the same as the
    gram of unit-normalised features, without writing a normalised copy of the features.
    """
    return cosine_from_gram(gram_matrices(features, threads))


def silent_snippets(audio: np.ndarray, silence: np.ndarray, threshold: float) -> np.ndarray:
    """(B, 10, W) audio, (W,) silence embedding -> (B, 10) bool: cosine to the silence embedding >= threshold."""
    import torch

    a = torch.from_numpy(np.ascontiguousarray(audio)).float()  # (B, T, W)
    s = torch.from_numpy(np.asarray(silence, dtype=np.float32))  # (W,)
    cosine = (a @ s) / (a.norm(dim=-1) * s.norm()).clamp_min(torch.finfo(torch.float32).tiny)  # (B, T)
    return (cosine >= np.float32(threshold)).numpy()


def adjacency(
    visual_sim: np.ndarray, audio_sim: np.ndarray, edge_rule: EdgeRule, silent: np.ndarray | None = None
) -> np.ndarray:
    """(B, 10, 10) similarities (+ (B, 10) silent) -> (B, 10, 10) bool symmetric edges, no self loops."""
    visual_threshold, audio_threshold = edge_rule.thresholds()
    combine = np.logical_or if edge_rule.rule == "or" else np.logical_and
    edges = combine(visual_sim >= visual_threshold, audio_sim >= audio_threshold)
    if silent is not None:
        edges &= ~silent[:, :, None]
        edges &= ~silent[:, None, :]
    edges[:, np.arange(edges.shape[1]), np.arange(edges.shape[1])] = False
    return edges


def _lowest_bit_table(bits: int) -> np.ndarray:
    """Index of the lowest set bit of every `bits`-bit mask (0 for the empty mask, which never occurs here)."""
    return np.array([(m & -m).bit_length() - 1 if m else 0 for m in range(1 << bits)], dtype=np.intp)


_LOWEST_BIT = _lowest_bit_table(NUM_SNIPPETS)


def label_components(edges: np.ndarray) -> np.ndarray:
    """(B, 10, 10) bool symmetric edges -> (B, 10) int8 component ids, in order of each component's first snippet.

    Each snippet's row of the adjacency becomes a 10-bit mask of the snippets it reaches; squaring the
    reachability (a snippet reaches whatever the snippets it reaches reach) doubles the path length covered,
    so 4 rounds cover the longest path of a 10-node graph (9 edges). Every step works on the whole batch.
    """
    batch, snippets, _ = edges.shape
    if snippets != NUM_SNIPPETS:
        raise ValueError(f"label_components: {snippets} snippets per video; expected {NUM_SNIPPETS}")
    closed = edges | np.eye(snippets, dtype=bool)
    # bit j of reach[b, i]: snippet i of video b reaches snippet j
    reach = np.packbits(closed, axis=-1, bitorder="little").view("<u2")[..., 0].copy()  # (B, T) uint16
    for _ in range(int(np.ceil(np.log2(snippets - 1)))):
        before = reach.copy()
        for j in range(snippets):
            reaches_j = (reach & np.uint16(1 << j)) != 0  # (B, T)
            reach |= np.where(reaches_j, reach[:, j, None], np.uint16(0))
        if np.array_equal(reach, before):
            break
    first = _LOWEST_BIT[reach]  # (B, T) the first snippet of each snippet's component
    is_first = first == np.arange(snippets)
    number = np.cumsum(is_first, axis=1) - 1  # (B, T) component number of a first snippet
    return np.take_along_axis(number, first, axis=1).astype(np.int8)


def components_fast(
    visual_sim: np.ndarray, audio_sim: np.ndarray, edge_rule: EdgeRule, silent: np.ndarray | None = None
) -> np.ndarray:
    """Component ids (B, 10) int8 of a batch of videos: batched adjacency, then `label_components`."""
    return label_components(adjacency(visual_sim, audio_sim, edge_rule, silent))


def components_networkx(
    visual_sim: np.ndarray, audio_sim: np.ndarray, edge_rule: EdgeRule, silent: np.ndarray | None = None
) -> np.ndarray:
    """Component ids (B, 10) int8, one networkx graph per video: the readable reference for `components_fast`."""
    visual_threshold, audio_threshold = edge_rule.thresholds()
    batch, snippets, _ = visual_sim.shape
    components = np.empty((batch, snippets), dtype=np.int8)
    for video in range(batch):
        graph = nx.Graph()
        graph.add_nodes_from(range(snippets))
        for i in range(snippets):
            for j in range(i + 1, snippets):
                if silent is not None and (silent[video, i] or silent[video, j]):
                    continue
                visual_edge = visual_sim[video, i, j] >= visual_threshold
                audio_edge = audio_sim[video, i, j] >= audio_threshold
                if (visual_edge or audio_edge) if edge_rule.rule == "or" else (visual_edge and audio_edge):
                    graph.add_edge(i, j)
        for number, component in enumerate(sorted(nx.connected_components(graph), key=min)):
            components[video, sorted(component)] = number
    return components


Engine = Callable[[np.ndarray, np.ndarray, EdgeRule, "np.ndarray | None"], np.ndarray]
ENGINES: dict[str, Engine] = {"fast": components_fast, "networkx": components_networkx}
"""Engine name -> (visual_sim, audio_sim, edge_rule, silent) -> (B, 10) int8 component ids."""


def ground(
    audio: np.ndarray,
    visual: np.ndarray,
    edge_rule: EdgeRule,
    engine: str = "fast",
    silence: np.ndarray | None = None,
    silence_threshold: float = SILENCE_THRESHOLD,
    threads: int = 1,
) -> np.ndarray:
    """(B, 10, Wa) audio and (B, 10, Wv) visual features of a batch -> (B, 10) int8 component ids."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    silent = None if silence is None else silent_snippets(audio, silence, silence_threshold)
    visual_sim, audio_sim = cosine_similarity(visual, threads), cosine_similarity(audio, threads)
    return ENGINES[engine](visual_sim, audio_sim, edge_rule, silent)
