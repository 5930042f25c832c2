"""Faster routes to two pieces of the losses' formulas on CPU: e^t and log_softmax.

Both compute the same values as ``t.exp()`` and ``torch.log_softmax`` (to rounding), and both
are differentiable, so the rules use them in first- and second-order backwards alike.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._util import LOG2_E


def exp(t: Tensor) -> Tensor:
    """A fresh exp(t), as exp2(t · log2 e): the same value, and torch's CPU exp2 kernel is
    several times faster than its exp kernel (benchmarks/README.md has the numbers).
    exp2_ in place on the fresh product is safe: mul's backward does not need its output.
    Low precision keeps exp, whose float opmath skips the product's extra rounding."""
    if t.dtype not in (torch.float32, torch.float64):
        return t.exp()
    return (t * LOG2_E).exp2_()


# Floats in one SIMD vector of torch's CPU kernels. Its lastdim log_softmax kernel takes a
# scalar path for rows shorter than one vector, several times slower per value.
FLOAT32_LANES = {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability(), 0)


def log_softmax(z: Tensor, class_dim: int) -> Tensor:
    """log_softmax(z) = (z − max) − log Σ exp(z − max), torch's own algorithm.

    torch's kernel is used, except for float32 (N, C) CPU logits whose rows are shorter than a
    SIMD vector (C = 10 with AVX-512, say) and that hold enough values for the six vectorized
    ops below to beat its scalar path.
    """
    if (z.dim() != 2 or z.shape[1] >= FLOAT32_LANES or z.numel() < 1024
            or z.dtype != torch.float32 or z.device.type != "cpu"):
        return torch.log_softmax(z, class_dim)
    shifted = z - z.amax(1, keepdim=True)
    return shifted.sub_(shifted.exp().sum(1, keepdim=True).log_())
