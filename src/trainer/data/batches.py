"""Whole batches straight from tensors: no per-sample ``__getitem__``, no collation.

A :class:`BatchSampler` yields the indices of one batch at a time; :class:`TensorBatches` answers
a list of indices with ``(x[indices], y[indices])``. A ``DataLoader(batch_size=None)`` over the
pair serves each batch with one indexing operation per tensor.

Under ``torch.distributed`` the sampler shards by rank with ``DistributedSampler``'s semantics:
one permutation per epoch shared by all ranks (seeded by ``seed + epoch``), padded so every
rank gets as many training samples, rank ``r`` taking every ``world``-th index from ``r``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


class TensorBatches(Dataset):
    """Tensors indexed a batch at a time: ``batches[[3, 1, 4]] == (x[[3, 1, 4]], y[[3, 1, 4]])``."""

    def __init__(self, *tensors: Tensor):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatches: expected tensors with the same first dimension")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, indices) -> tuple[Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class BatchSampler(Sampler[list[int]]):
    """Yields lists of indices, one list per batch, for this process's shard of the data.

    ``pad`` makes every rank see the same number of samples (repeating a few from the start, as
    ``DistributedSampler`` does); training needs it so that ranks step together. Evaluation
    leaves it off so that no sample counts twice.
    """

    def __init__(self, num_samples: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, pad: bool = True):
        if batch_size < 1:
            raise ValueError(f"BatchSampler: batch_size must be >= 1, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.pad = pad
        self.epoch = 0
        self._epoch_was_set = False

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch, so every rank shuffles alike."""
        self.epoch = epoch
        self._epoch_was_set = True

    def _shard(self) -> Tensor:
        rank, world = _rank_and_world()
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        if world > 1 and self.pad:
            total = math.ceil(self.num_samples / world) * world
            order = torch.cat([order, order[: total - self.num_samples]])
        return order[rank::world]

    def __iter__(self) -> Iterator[list[int]]:
        shard = self._shard()
        if not self._epoch_was_set:
            self.epoch += 1  # used outside Lightning: still a new order each pass
        for start in range(0, len(shard), self.batch_size):
            batch = shard[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        rank, world = _rank_and_world()
        if world > 1 and self.pad:
            shard = math.ceil(self.num_samples / world)
        else:
            shard = len(range(rank, self.num_samples, world))
        if self.drop_last:
            return shard // self.batch_size
        return math.ceil(shard / self.batch_size)


def batch_loader(x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool, seed: int = 0,
                 pad: bool | None = None, pin_memory: bool = False) -> DataLoader:
    """A DataLoader that serves ``(x[batch], y[batch])`` for each batch of indices."""
    sampler = BatchSampler(len(x), batch_size, shuffle=shuffle, seed=seed,
                           pad=shuffle if pad is None else pad)
    # batch_size=None: the sampler's items are already whole batches, so nothing is collated.
    # Its own generator: each new iterator draws a seed from it, which would otherwise come
    # from torch's global RNG and shift dropout's masks between a resumed and an unbroken run.
    return DataLoader(TensorBatches(x, y), batch_size=None, sampler=sampler, num_workers=0,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
