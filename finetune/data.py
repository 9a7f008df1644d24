"""Whole splits as in-memory tensors, served in batches of a seeded permutation (no per-video reads or copies)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from avvp.annotations import SPLIT_FILES, DenseLabels, load_split
from avvp.errors import AnnotationError, ConfigError, StoreError
from avvp.finetune.config import MISSING
from avvp.modality_labels import align_to_split, read_modality_labels
from avvp.store import read_store, read_video_ids, store_info
from avvp.video_ids import match_videos, store_ids_for


@dataclass(eq=False)
class SplitData(Dataset):
    """One split's streams and weak labels as contiguous tensors; a batch is one fancy index per tensor."""

    name: str
    video_ids: list[str]
    features: dict[str, torch.Tensor]
    """stream -> (N, 10, W) as stored (float16 or float32: half the memory for a float16 store); batches are float32."""
    labels: torch.Tensor
    """(N, 25) float32 weak labels (zeros where there are none, e.g. for parsing)."""
    dense: DenseLabels | None = None
    """Snippet-level ground truth (val and test)."""
    modality_labels: torch.Tensor | None = None
    """(N, 2, 25) float32 refined audio and visual labels (`avvp-finetune --labels`); None: L_g uses the weak ones."""
    left_out: list[str] = field(default_factory=list)
    """Videos of the split file not in the feature store, left out (`--missing skip`)."""

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        # DataLoader hands the whole batch's indices at once (torch >= 2.2).
        index = torch.as_tensor(indices, dtype=torch.long, device=self.labels.device)  # (B,)
        features = {name: t[index].float() for name, t in self.features.items()}  # (B, 10, W) each
        batch = {**features, "labels": self.labels[index], "index": index}
        if self.modality_labels is not None:
            batch["modality_labels"] = self.modality_labels[index]  # (B, 2, 25)
        return batch

    def to(self, device: torch.device | str) -> SplitData:
        """The same split with its tensors on `device`: on a GPU, batches are then cut there, with no copy per step."""
        return replace(
            self,
            features={name: t.to(device) for name, t in self.features.items()},
            labels=self.labels.to(device),
            modality_labels=None if self.modality_labels is None else self.modality_labels.to(device),
        )

    @property
    def widths(self) -> dict[str, int]:
        return {name: int(t.shape[-1]) for name, t in self.features.items()}


def check_streams(features: str | os.PathLike, streams: Sequence[str], model: str) -> None:
    """Fail in one line when the store lacks a stream the model reads."""
    available = store_info(features)["streams"]
    missing = [name for name in streams if name not in available]
    if missing:
        raise StoreError(
            f"{features}: model {model!r} needs stream(s) {', '.join(streams)}; the store lacks {', '.join(missing)} "
            f"(it has {', '.join(available) or 'no streams'})"
        )


def load_split_data(
    features: str | os.PathLike,
    annotations: str | os.PathLike,
    split: str,
    streams: Sequence[str],
    missing: str = "error",
) -> SplitData:
    """Read a split's weak (and, for val/test, dense) labels and its videos' streams from the store.

    `missing`: a video of the split absent from the store is an error naming `--missing skip`, or ("skip") left
    out and listed in `left_out`."""
    if missing not in MISSING:
        raise ConfigError(f"--missing {missing!r}: expected one of {', '.join(MISSING)}")
    labels = load_split(annotations, split)
    listed_in = Path(annotations) / SPLIT_FILES[split]
    if not labels.video_ids:
        raise AnnotationError(f"{listed_in}: no videos; the {split} split cannot be empty")
    stored = read_video_ids(features)
    store_ids = store_ids_for(features, stored, labels.video_ids, listed_in, skip_missing=missing == "skip")
    left_out: list[str] = []
    if len(store_ids) < len(labels.video_ids):
        left_out = match_videos(stored, labels.video_ids).missing
        if not store_ids:
            raise StoreError(
                f"{features}: none of the {len(labels.video_ids)} videos of {listed_in} is in the store; "
                "the features and the annotations must describe the same videos"
            )
        absent = set(left_out)
        rows = [i for i, video in enumerate(labels.video_ids) if video not in absent]
        labels = labels.take(rows)
    store = read_store(features, streams=streams, video_ids=store_ids, dtype=None)
    return SplitData(
        name=split,
        video_ids=labels.video_ids,
        features={name: torch.from_numpy(store[name]) for name in streams},
        labels=torch.from_numpy(labels.weak.labels).float(),
        dense=labels.dense,
        left_out=left_out,
    )


def with_modality_labels(data: SplitData, labels: str | os.PathLike, split_file: str | os.PathLike) -> SplitData:
    """The training split with the refined labels of a label file (`avvp-finetune refine`) for L_g.

    The file must hold exactly the split's videos, with the same weak labels (one-line error otherwise).
    """
    refined = align_to_split(
        read_modality_labels(labels), data.video_ids, data.labels.cpu().numpy() > 0.5, labels, split_file
    )
    return replace(data, modality_labels=torch.from_numpy(refined).float().to(data.labels.device))


def load_store_data(features: str | os.PathLike, streams: Sequence[str], video_ids: Sequence[str] | None) -> SplitData:
    """Videos of a store without annotations (for parsing): all of them, or `video_ids` in that order."""
    store = read_store(features, streams=streams, video_ids=video_ids, dtype=None)
    return SplitData(
        name="videos",
        video_ids=store.video_ids,
        features={name: torch.from_numpy(store[name]) for name in streams},
        labels=torch.zeros(len(store.video_ids), 25),
    )


class EpochPermutation(Sampler[int]):
    """The videos of an epoch in a permutation drawn from (seed, epoch), or in order; resume-exact by construction."""

    def __init__(self, size: int, shuffle: bool, seed: int = 0):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """(N,) the epoch's video order."""
        if not self.shuffle:
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.size


class PermutationBatches(BatchSampler):
    """Consecutive slices of the epoch's order (whole batches at once, not index by index)."""

    def __iter__(self) -> Iterator[list[int]]:
        for chunk in self.sampler.order().split(self.batch_size):
            if len(chunk) == self.batch_size or not self.drop_last:
                yield chunk.tolist()


def _already_batched(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def make_loader(data: SplitData, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader over `data` that Accelerate can shard; call `set_epoch(epoch)` on it before each epoch."""
    batches = PermutationBatches(EpochPermutation(len(data), shuffle, seed), batch_size, drop_last=False)
    return DataLoader(data, batch_sampler=batches, collate_fn=_already_batched)


def train_subset(data: SplitData, fraction: float, seed: int) -> SplitData:
    """A seeded subset of about `fraction` of the videos, stratified by label (`stratified_rows`), in split order."""
    rows = torch.as_tensor(stratified_rows(data.labels.cpu().numpy() > 0.5, fraction, seed), device=data.labels.device)
    changes = {
        "video_ids": [data.video_ids[i] for i in rows.tolist()],
        "features": {name: tensor[rows.to(tensor.device)] for name, tensor in data.features.items()},
        "labels": data.labels[rows],
    }
    for name in ("modality_labels",):  # per-video tensors some splits carry
        if getattr(data, name, None) is not None:
            changes[name] = getattr(data, name)[rows.to(getattr(data, name).device)]
    return replace(data, **changes)


def stratified_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted rows of a seeded subset of about `fraction` of the videos, stratified by their rarest label.

    labels (N, 25) bool. Each video belongs to the stratum of its rarest class (by frequency in `labels`; videos
    with no label form one more stratum), and each stratum keeps round(fraction x its size) of its videos, at
    least one: every class stays represented, and the classes keep about their shares of the full split.
    """
    counts = labels.sum(axis=0)  # (25,)
    rarity = np.where(labels, counts[None, :], np.inf)  # (N, 25)
    stratum = np.where(labels.any(axis=1), rarity.argmin(axis=1), labels.shape[1])  # (N,)
    rng = np.random.default_rng([seed, 11])  # its own stream: the subset does not move the run's other draws
    keep = []
    for value in np.unique(stratum):
        members = np.flatnonzero(stratum == value)
        keep.append(rng.choice(members, size=max(1, round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(keep))
