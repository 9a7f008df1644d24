"""The pretraining corpus in memory: feature streams and grounding labels as tensors, batched by indexing."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from avvp.avg_labels import read_avg_labels
from avvp.errors import AvvpError
from avvp.pretrain.modeling import STREAMS
from avvp.store import read_store


@dataclass
class PretrainCorpus:
    """Every video of the pretraining store with its AVG labels, in the store's order."""

    video_ids: list[str]
    streams: dict[str, torch.Tensor]
    """audio, visual, motion -> (N, 10, W) as stored (float16 or float32); batches are float32."""
    grounded: torch.Tensor | None
    """(N, 10, 10) bool: G_ij, snippets i and j grounded to each other; None when read without labels."""

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def widths(self) -> dict[str, int]:
        return {name: int(tensor.shape[-1]) for name, tensor in self.streams.items()}


def load_corpus(features: str | os.PathLike, labels: str | os.PathLike | None) -> PretrainCorpus:
    """Read the store's three streams and the label file; the labels must be for the same videos, same order.

    Without `labels` (the untrained control needs only the streams' statistics) `grounded` is None.
    """
    store = read_store(features, streams=STREAMS, dtype=None)  # float16 stays float16 in memory
    grounded = None
    if labels is not None:
        grounded = torch.from_numpy(read_avg_labels(labels, video_ids=store.video_ids).labels)
    return PretrainCorpus(
        video_ids=store.video_ids,
        streams={name: torch.from_numpy(store[name]) for name in STREAMS},
        grounded=grounded,
    )


def feature_statistics(
    corpus: PretrainCorpus, rows: np.ndarray, chunk: int = 4096
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-feature mean and std of each stream over the given videos' snippets (float64 sums, chunk by chunk).

    A feature constant over these videos gets a thousandth of the stream's typical std, so it stays finite.
    """
    rows = torch.as_tensor(rows, dtype=torch.long)
    statistics = {}
    for name, stream in corpus.streams.items():
        total = torch.zeros(stream.shape[-1], dtype=torch.float64)
        squares = torch.zeros_like(total)
        for part in rows.split(chunk):
            snippets = stream[part].reshape(-1, stream.shape[-1]).double()  # (n * 10, W)
            total += snippets.sum(dim=0)
            squares += snippets.square().sum(dim=0)
        count = len(rows) * stream.shape[1]
        mean = total / count
        std = (squares / count - mean.square()).clamp(min=0).sqrt()
        std = std.clamp(min=1e-3 * float(std.mean()) + 1e-12)
        statistics[name] = (mean.float(), std.float())
    return statistics


def split_rows(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random held-out share of the corpus: (train rows, validation rows), each sorted."""
    n_val = max(1, round(count * val_fraction)) if val_fraction > 0 else 0
    if count - n_val < 1:
        raise AvvpError(f"{count} video(s) in the corpus: too few to hold out {val_fraction:.0%} for validation")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class CorpusRows(Dataset):
    """Some rows of the corpus; a batch is gathered with one tensor index per stream (`__getitems__`)."""

    def __init__(self, corpus: PretrainCorpus, rows: np.ndarray):
        self.corpus = corpus
        self.rows = torch.as_tensor(rows, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        rows = self.rows[torch.as_tensor(positions, dtype=torch.long)]  # (B,) corpus rows
        batch = {name: tensor[rows].float() for name, tensor in self.corpus.streams.items()}  # (B, 10, W) each
        batch["grounded"] = self.corpus.grounded[rows]  # (B, 10, 10)
        batch["video_index"] = rows
        return batch

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return {name: tensor[0] for name, tensor in self.__getitems__([position]).items()}


def keep_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """collate_fn: `__getitems__` already returns the whole batch."""
    return batch
