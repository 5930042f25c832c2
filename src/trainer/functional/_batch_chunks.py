"""Attention over a large batch, a chunk at a time: a Plan cuts the broadcast batch into parts
of about CHUNK_SCORES scores each, so that the (L, S) temporaries of a part stay in cache and
are recycled by the allocator instead of being faulted in afresh. Used by
:mod:`trainer.functional.attention`; no math here."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Scores per part of the batch: ~1 MiB of float32.
CHUNK_SCORES = 1 << 18


class Plan:
    """Chunks of the broadcast batch: one batch dim cut into ranges of about CHUNK_SCORES
    scores.  Iterating gives one Part per range (a single whole part when all fits)."""

    def __init__(self, q_shape, k_shape, v_shape):
        self.batch = tuple(torch.broadcast_shapes(q_shape[:-2], k_shape[:-2], v_shape[:-2]))
        per_item = q_shape[-2] * k_shape[-2]
        self.dim, self.ranges = None, [(0, 0)]
        if per_item * math.prod(self.batch) <= 4 * CHUNK_SCORES:
            return  # a few MiB of scores: one part, no per-part overhead
        for d, size in enumerate(self.batch):
            inner = per_item * math.prod(self.batch[d + 1 :])
            # Cutting the first dim that is not 1 gives contiguous parts; an inner dim is cut
            # only when the parts would otherwise be far over budget (its parts are copies).
            if size == 1 and d < len(self.batch) - 1:
                continue
            if inner <= 8 * CHUNK_SCORES or d == len(self.batch) - 1:
                step = max(1, CHUNK_SCORES // inner)
                self.dim = d
                self.ranges = [(a, min(a + step, size)) for a in range(0, size, step)]
                return

    def __iter__(self):
        return (Part(self, start, stop) for start, stop in self.ranges)

    def local_dim(self, shape) -> int | None:
        """The dim of a (*, X, Y) tensor of ``shape`` that the plan cuts, None if not cut."""
        if self.dim is None or len(self.ranges) == 1:
            return None
        local = self.dim - (len(self.batch) - max(len(shape) - 2, 0))
        return local if local >= 0 and shape[local] != 1 else None

    def cat(self, parts: list[Tensor], batch_ndim: int) -> Tensor:
        """Put the outputs of the parts (full batch, batch_ndim dims) back together."""
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts, dim=self.dim - (len(self.batch) - batch_ndim))

    def join(self, parts: list[Tensor], shape) -> Tensor:
        """Gradient of a tensor of ``shape`` from its parts' gradients: the parts of a cut
        tensor are concatenated, those of a tensor every part saw whole are summed."""
        local = self.local_dim(shape)
        if local is not None:
            return torch.cat(parts, dim=local)
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total


class Part:
    def __init__(self, plan: Plan, start: int, stop: int):
        self.plan, self.start, self.stop = plan, start, stop

    def __call__(self, t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        local = self.plan.local_dim(t.shape)
        return t if local is None else t.narrow(local, self.start, self.stop - self.start)

    def shape(self, shape) -> tuple[int, ...]:
        shape = tuple(shape)
        local = self.plan.local_dim(shape)
        if local is None:
            return shape
        return shape[:local] + (self.stop - self.start,) + shape[local + 1 :]
