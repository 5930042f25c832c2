"""First-order backwards of batch and layer norm: the forward kernel's μ and rstd, one buffer
of x's size, and sums as matrix-vector products.

Each computes its rule's formula (see :class:`~trainer.functional.norm.BatchNorm` and
:class:`~trainer.functional.norm.LayerNorm`) with the terms regrouped: ∂L/∂x as
a·g + b·(x − μ) + c with per-row or per-channel a, b, c, in the buffer that first holds
g·(x − μ) for Σ g·x̂, one allocation, as native's kernels make.
"""

from __future__ import annotations

import torch
from torch import Tensor


def channel_sum_fn(g: Tensor):
    """Σ over every dim but the channel dim 1, the fastest way for g's layout on CPU.

    (N, C): a matrix-vector product with ones reads the rows once, faster than sum(0).
    Contiguous (N, C, *): a sum over dims 0 and 2 of its (N, C, ∏*) view, faster than the
    same sum over dims (0, 2, 3, …). Under autocast a matmul would run in low precision,
    so there the plain reduction is used.
    """
    if g.dim() == 2 and not torch.is_autocast_enabled(g.device.type):
        ones = g.new_ones(g.shape[0])
        return lambda t: torch.mv(t.t(), ones)
    dims = [0, *range(2, g.dim())]
    return lambda t: (t.view(t.shape[0], t.shape[1], -1).sum([0, 2]) if t.is_contiguous()
                      else t.sum(dims))


def column_sum(rows: Tensor, weights: Tensor | None, use_matmul: bool) -> Tensor:
    """Σ_r weights[r]·rows[r] of a 2-D (R, D) tensor (plain Σ_r when weights is None).

    A vector-matrix product reads ``rows`` once, faster on CPU than ``sum(0)``.
    Under autocast a matmul would run in low precision, so there the plain reduction is used.
    """
    if not use_matmul:
        return (rows if weights is None else rows * weights.reshape(-1, 1)).sum(0)
    if weights is None:
        weights = rows.new_ones(rows.shape[0])
    return torch.mv(rows.t(), weights.view(-1))


def row_sum(rows: Tensor, weights: Tensor | None, use_matmul: bool) -> Tensor:
    """Σ_d rows[:, d]·weights[d] of a 2-D (R, D) tensor, as an (R, 1) column."""
    if weights is None:
        return rows.sum(1, keepdim=True)
    if not use_matmul:
        return (rows * weights).sum(1, keepdim=True)
    return torch.mv(rows, weights).view(-1, 1)


def batch_norm_backward(g: Tensor, x: Tensor | None, mean: Tensor | None, rstd: Tensor | None,
                        gamma: Tensor | None, training: bool, need_x: bool, need_w: bool,
                        need_b: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """BatchNorm's (∂L/∂x, ∂L/∂γ, ∂L/∂β) from the kernel's per-channel μ, rstd (shape (C,)).

    Training's ∂L/∂x = a·g + b·(x − μ) + c with a = γ·rstd, b = −γ·rstd²·Σ(g·x̂)/m and
    c = −γ·rstd·Σg/m, in the buffer that first held g·(x − μ).
    """
    shape = g.shape
    channels = shape[1]
    per_channel = (1, channels) + (1,) * (len(shape) - 2)
    channel_sum = channel_sum_fn(g)
    grad_input = grad_weight = None
    sum_g = channel_sum(g) if need_b or (need_x and training) else None
    sum_g_xhat = buffer = None
    if need_w or (need_x and training):  # the one full-size buffer: g·(x − μ), then ∂L/∂x
        mean = mean.view(per_channel)
        buffer = torch.sub(x, mean).mul_(g)
        sum_g_xhat = channel_sum(buffer).mul_(rstd)  # Σ g·x̂ = rstd·Σ g·(x − μ)
        grad_weight = sum_g_xhat if need_w else None
    if need_x:
        a = rstd if gamma is None else rstd * gamma  # γ·rstd, (C,)
        if not training:  # μ, rstd are constants: a per-channel scale
            grad_input = g * a.view(per_channel)
        else:  # a·g + b·(x − μ) + c, per-channel a, b, c
            coef = a * (-1.0 / (g.numel() // channels))  # −γ·rstd/m
            b = (coef * rstd).mul_(sum_g_xhat)  # −γ·rstd²·Σ(g·x̂)/m
            c = coef * sum_g  # −γ·rstd·Σg/m
            grad_input = torch.sub(x, mean, out=buffer)
            if len(shape) == 2:  # channels are the contiguous dim: one fused pass
                torch.addcmul(c, grad_input, b, out=grad_input)
            else:  # (addcmul with two per-channel operands takes a slow, scalar loop)
                grad_input.mul_(b.view(per_channel)).add_(c.view(per_channel))
            grad_input.addcmul_(g, a.view(per_channel))
    return grad_input, grad_weight, sum_g if need_b else None


def layer_norm_backward(g: Tensor, x: Tensor | None, mean: Tensor | None, rstd: Tensor | None,
                        gamma: Tensor | None, need_x: bool, need_w: bool, need_b: bool,
                        ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """LayerNorm's (∂L/∂x, ∂L/∂γ, ∂L/∂β) on (rows, D) views, from the kernel's per-row μ,
    rstd as (rows, 1) columns: ∂L/∂x = rstd/D · (D·gγ − Σ_d gγ − (x − μ)·rstd²·Σ_d gγ(x − μ)),
    in the buffer that first held g·(x − μ)."""
    row_size = g.shape[1]
    use_matmul = not torch.is_autocast_enabled(g.device.type)
    grad_input = grad_weight = None
    grad_bias = column_sum(g, None, use_matmul) if need_b else None
    if not (need_x or need_w):
        return grad_input, grad_weight, grad_bias
    buffer = torch.sub(x, mean).mul_(g)  # g·(x − μ) for the sums; then ∂L/∂x
    if need_w:
        grad_weight = column_sum(buffer, rstd, use_matmul)
    if need_x:
        sum_g_gamma = row_sum(g, gamma, use_matmul)
        # Σ_d(gγ·x̂)·rstd = Σ_d gγ(x − μ)·rstd², the coefficient of (x − μ)
        coef = row_sum(buffer, gamma, use_matmul).mul_(rstd).mul_(rstd)
        grad_input = torch.sub(mean, x, out=buffer).mul_(coef).sub_(sum_g_gamma)
        if gamma is None:
            grad_input.add_(g, alpha=row_size)
        else:
            grad_input.addcmul_(g, gamma * row_size)
        grad_input.mul_(rstd / row_size)
    return grad_input, grad_weight, grad_bias
