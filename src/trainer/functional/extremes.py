"""The extremes: amax and amin over dims, max and min along a dim, each with its gradient
written out. The gradient goes to the elements that reach the extreme: shared among ties for
amax/amin, to the returned index for max/min.

``dims`` and ``restore`` are as in :mod:`trainer.functional.reduce`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._util import Function
from .reduce import Dims, _check_real, _one_dim, _reduced_dims, _restore

__all__ = ["amax", "amin", "max", "min"]


class _Extreme(Function):
    """amax and amin: the same gradient, ties sharing it equally."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.dims, ctx.keepdim = inputs
        ties = None
        if ctx.needs_input_grad[0]:
            ties = input == _restore(output, ctx.dims, ctx.keepdim, input.dim())
        ctx.save_for_backward(ties)

    @staticmethod
    def backward(ctx, g: Tensor):
        (ties,) = ctx.saved_tensors
        g = _restore(g, ctx.dims, ctx.keepdim, ties.dim())
        count = ties.sum(ctx.dims, keepdim=True)
        return g / count * ties, None, None


class Amax(_Extreme):
    r"""y = max_dims x

    Backward, with g = ∂L/∂y and m = [x = restore(y)] (the elements that reach the max):
        ∂L/∂x = restore(g) · m / Σ_dims m          (ties share g equally, as torch)

    Saves: m as bool, 1 byte per element: all the gradient needs of x and y (native keeps both).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, keepdim: bool) -> Tensor:
        return torch.amax(input, dims, keepdim)


class Amin(_Extreme):
    r"""y = min_dims x

    Backward, with g = ∂L/∂y and m = [x = restore(y)] (the elements that reach the min):
        ∂L/∂x = restore(g) · m / Σ_dims m          (ties share g equally, as torch)

    Saves: m as bool, 1 byte per element: all the gradient needs of x and y (native keeps both).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, keepdim: bool) -> Tensor:
        return torch.amin(input, dims, keepdim)


class _Selection(Function):
    """max and min along a dim: the gradient goes to the index that forward returns."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.dim, ctx.keepdim = inputs
        _, indices = output
        ctx.mark_non_differentiable(indices)
        ctx.shape = input.shape
        ctx.save_for_backward(indices if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor, _g_indices: Tensor | None):
        (indices,) = ctx.saved_tensors
        ndim = len(ctx.shape)
        g = _restore(g, (ctx.dim,), ctx.keepdim, ndim)
        indices = _restore(indices, (ctx.dim,), ctx.keepdim, ndim)
        grad = torch.zeros(ctx.shape, dtype=g.dtype, device=g.device)
        return grad.scatter(ctx.dim, indices, g), None, None


class Max(_Selection):
    r"""(y, i) = (max_dim x, argmax_dim x): torch's own index i among ties

    Backward, with g = ∂L/∂y (i carries no gradient):
        ∂L/∂x = scatter of restore(g) at restore(i) along dim, 0 elsewhere

    Saves: the indices i, which forward returns anyway: what native autograd keeps too.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int, keepdim: bool) -> tuple[Tensor, Tensor]:
        values, indices = torch.max(input, dim, keepdim)
        return values, indices


class Min(_Selection):
    r"""(y, i) = (min_dim x, argmin_dim x): torch's own index i among ties

    Backward, with g = ∂L/∂y (i carries no gradient):
        ∂L/∂x = scatter of restore(g) at restore(i) along dim, 0 elsewhere

    Saves: the indices i, which forward returns anyway: what native autograd keeps too.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int, keepdim: bool) -> tuple[Tensor, Tensor]:
        values, indices = torch.min(input, dim, keepdim)
        return values, indices



# -- the ops ----------------------------------------------------------------------------------


def amax(input: Tensor, dim: int | Sequence[int] = (), keepdim: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.amax` (dim empty: every dim)."""
    _check_real("amax", input)
    return Amax.apply(input, _reduced_dims("amax", input, dim), bool(keepdim))


def amin(input: Tensor, dim: int | Sequence[int] = (), keepdim: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.amin` (dim empty: every dim)."""
    _check_real("amin", input)
    return Amin.apply(input, _reduced_dims("amin", input, dim), bool(keepdim))


def max(input: Tensor, dim: int, keepdim: bool = False) -> torch.return_types.max:
    """Explicit twin of ``torch.max(input, dim, keepdim)``: (values, indices). The full
    ``torch.max(x)`` and the elementwise ``torch.max(x, y)`` are other ops."""
    _check_real("max", input)
    return torch.return_types.max(Max.apply(input, _one_dim("max", input, dim), bool(keepdim)))


def min(input: Tensor, dim: int, keepdim: bool = False) -> torch.return_types.min:
    """Explicit twin of ``torch.min(input, dim, keepdim)``: (values, indices). The full
    ``torch.min(x)`` and the elementwise ``torch.min(x, y)`` are other ops."""
    _check_real("min", input)
    return torch.return_types.min(Min.apply(input, _one_dim("min", input, dim), bool(keepdim)))
