"""Reductions (sum, mean, var, std, logsumexp, norm, cumsum), each with its gradient written out.

The extremes (amax, amin, max and min along a dim) are in :mod:`trainer.functional.extremes`.

Throughout, ``dims`` are the reduced dims (sorted, non-negative) and ``restore(t)`` puts them
back into a reduced tensor as size-1 dims (keepdim's shape), so that it broadcasts against the
input: that is all the bookkeeping of ``keepdim``. Each ``backward`` reads as the formula in
its docstring, out of place and built from differentiable ops, so that it serves double
backward too.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

from ._util import Function, ShapeError, fail, shape_str, to_dtype

__all__ = ["cumsum", "logsumexp", "mean", "norm", "std", "sum", "var"]

Dims = tuple[int, ...]


def _restore(t: Tensor, dims: Dims, keepdim: bool, ndim: int) -> Tensor:
    """A reduced ``t`` with its reduced dims back as size 1, to broadcast against the input."""
    if keepdim or ndim == 0:
        return t
    for d in dims:  # ascending: each lands where it was
        t = t.unsqueeze(d)
    return t


def _count(shape: Sequence[int], dims: Dims) -> int:
    """How many elements each output element reduces over."""
    return math.prod([shape[d] for d in dims]) if len(shape) else 1  # 0-d: one element


def _keep_input_and_output(ctx, inputs, output) -> None:
    """Keep x and y (logsumexp's and the norm's gradients read both), when x needs one."""
    input, ctx.dims, ctx.keepdim = inputs
    wanted = ctx.needs_input_grad[0]
    ctx.save_for_backward(input if wanted else None, output if wanted else None)


# -- sum and mean -------------------------------------------------------------------------------


class Sum(Function):
    r"""y = Σ_dims x   (x first cast to ``dtype`` when given)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = restore(g) broadcast to x's shape      (every x in a sum gets all of g)

    Saves: nothing but x's shape and dtype: the derivative is 1 everywhere.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, keepdim: bool, dtype: torch.dtype | None) -> Tensor:
        return torch.sum(input, dims, keepdim, dtype=dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.dims, ctx.keepdim, _ = inputs
        ctx.shape, ctx.dtype = input.shape, input.dtype

    @staticmethod
    def backward(ctx, g: Tensor):
        g = _restore(to_dtype(g, ctx.dtype), ctx.dims, ctx.keepdim, len(ctx.shape))
        return g.expand(ctx.shape), None, None, None


class Mean(Function):
    r"""y = (1/N) Σ_dims x,   N = the number of elements reduced   (x first cast to ``dtype``)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = restore(g) / N broadcast to x's shape

    Saves: nothing but x's shape, dtype and the count N.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, keepdim: bool, dtype: torch.dtype | None) -> Tensor:
        return torch.mean(input, dims, keepdim, dtype=dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.dims, ctx.keepdim, _ = inputs
        ctx.shape, ctx.dtype = input.shape, input.dtype
        ctx.count = _count(input.shape, ctx.dims)

    @staticmethod
    def backward(ctx, g: Tensor):
        g = _restore(to_dtype(g, ctx.dtype), ctx.dims, ctx.keepdim, len(ctx.shape))
        return (g / ctx.count).expand(ctx.shape), None, None, None


# -- var and std --------------------------------------------------------------------------------


def _var_grad(g: Tensor, x: Tensor, dims: Dims, correction: float) -> Tensor:
    """∂var/∂x applied to a restored g: 2 g (x − μ) / (N − c)."""
    dof = _count(x.shape, dims) - correction
    scale = 2.0 / dof if dof != 0 else math.inf  # 2/0 = ∞ as torch has it (x = μ: NaN)
    return scale * g * (x - x.mean(dims, keepdim=True))


class Var(Function):
    r"""y = Σ_dims (x − μ)² / (N − c),   μ = mean_dims x,   c = ``correction``

    Backward, with g = ∂L/∂y:
        ∂L/∂x = 2 restore(g) · (x − μ) / (N − c)        (Σ(x − μ) = 0 kills μ's own term)

    Saves: x, from which backward takes μ again: x alone is all native autograd keeps, and μ
    or x − μ beside or instead of it would keep more, or cut double backward off from x.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, correction: float, keepdim: bool) -> Tensor:
        return torch.var(input, dims, correction=correction, keepdim=keepdim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.dims, ctx.correction, ctx.keepdim = inputs
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        g = _restore(to_dtype(g, x.dtype), ctx.dims, ctx.keepdim, x.dim())
        return _var_grad(g, x, ctx.dims, ctx.correction), None, None, None


class Std(Function):
    r"""y = √var(x) = √(Σ_dims (x − μ)² / (N − c))

    Backward, with g = ∂L/∂y (the chain rule through √, then var's gradient):
        ∂L/∂x = restore(g / 2y) · 2(x − μ) / (N − c) = restore(g / y) · (x − μ) / (N − c)
        where y = 0 (no spread): 0, as torch has it (g / 2y taken as 0; x − μ = 0 there)

    Saves: x for x − μ, and y: the two that native autograd keeps.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, correction: float, keepdim: bool) -> Tensor:
        return torch.std(input, dims, correction=correction, keepdim=keepdim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.dims, ctx.correction, ctx.keepdim = inputs
        wanted = ctx.needs_input_grad[0]
        ctx.save_for_backward(input if wanted else None, output if wanted else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y = ctx.saved_tensors
        g = _restore(to_dtype(g, x.dtype), ctx.dims, ctx.keepdim, x.dim())
        y = _restore(to_dtype(y, x.dtype), ctx.dims, ctx.keepdim, x.dim())
        spread = y != 0
        # var's g: g / 2y, and 0 without spread (y made 1 there, so no ∞ reaches double backward)
        g_var = torch.where(spread, g / (2 * torch.where(spread, y, 1)), 0)
        return _var_grad(g_var, x, ctx.dims, ctx.correction), None, None, None


# -- logsumexp, norm, cumsum --------------------------------------------------------------------


class LogSumExp(Function):
    r"""y = log Σ_dims e^x

    Backward, with g = ∂L/∂y (∂y/∂x = e^x / Σ e^x = softmax over dims):
        ∂L/∂x = restore(g) · e^(x − restore(y))

    Saves: x and y, for softmax = e^(x − y): both what native autograd keeps; softmax itself
    would cost as much and leave double backward no path back to x.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, keepdim: bool) -> Tensor:
        return torch.logsumexp(input, dims, keepdim)

    setup_context = staticmethod(_keep_input_and_output)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y = ctx.saved_tensors
        g = _restore(to_dtype(g, x.dtype), ctx.dims, ctx.keepdim, x.dim())
        y = _restore(to_dtype(y, x.dtype), ctx.dims, ctx.keepdim, x.dim())
        return g * torch.exp(x - y), None, None


class Norm(Function):
    r"""y = ‖x‖₂ = √(Σ_dims x²)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = x · restore(g / y)
        where y = 0 (the zero vector): 0, as torch has it

    Saves: x and y, both what native autograd keeps.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dims: Dims, keepdim: bool) -> Tensor:
        return torch.linalg.vector_norm(input, 2, dims, keepdim)

    setup_context = staticmethod(_keep_input_and_output)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y = ctx.saved_tensors
        g = _restore(to_dtype(g, x.dtype), ctx.dims, ctx.keepdim, x.dim())
        y = _restore(to_dtype(y, x.dtype), ctx.dims, ctx.keepdim, x.dim())
        nonzero = y != 0
        # y made 1 at the zero vector, so no ∞ reaches double backward
        scale = torch.where(nonzero, g / torch.where(nonzero, y, 1), 0)
        return x * scale, None, None


class CumSum(Function):
    r"""y_i = Σ_{j ≤ i} x_j   along ``dim`` (x first cast to ``dtype`` when given)

    Backward, with g = ∂L/∂y (x_j reaches every y_i with i ≥ j):
        ∂L/∂x_j = Σ_{i ≥ j} g_i = flip(cumsum(flip(g)))        (a reversed cumsum)

    Saves: nothing but dim and x's dtype: the map is linear with 0/1 coefficients.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int, dtype: torch.dtype | None) -> Tensor:
        return torch.cumsum(input, dim, dtype=dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.dim, _ = inputs
        ctx.dtype = input.dtype

    @staticmethod
    def backward(ctx, g: Tensor):
        g = to_dtype(g, ctx.dtype)
        if g.dim() == 0 or g.shape[ctx.dim] <= 1:
            return g, None, None  # nothing to accumulate
        return g.flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim), None, None


# -- arguments ----------------------------------------------------------------------------------


class _DimError(ShapeError, IndexError):
    """A dim out of range: torch raises IndexError there, so this is one too."""


def _one_dim(op: str, input: Tensor, dim: object) -> int:
    """``dim`` as a non-negative int, checked against the input's dims (0-d: dim 0 or -1)."""
    rank = input.dim() or 1
    try:
        if isinstance(dim, bool):
            raise TypeError
        index = operator.index(dim)
    except TypeError:
        raise fail(op, "dim as an int", f"dim={dim!r}") from None
    if not -rank <= index < rank:
        raise _DimError(f"{op}: expected dim in [{-rank}, {rank - 1}] for input "
                        f"{shape_str(input)}, got dim={dim}")
    return index % rank


def _reduced_dims(op: str, input: Tensor, dim: object, *, required: bool = False) -> Dims:
    """``dim`` (None, an int, a tuple or list of ints; None or empty: every dim) as sorted
    non-negative dims, each checked against the input, no dim twice. ``required``: None and
    empty are refused (logsumexp's dim, which torch requires)."""
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        if required:
            raise fail(op, "dim as an int or a non-empty tuple of ints", f"dim={dim!r}")
        return tuple(range(input.dim()))
    listed = dim if isinstance(dim, (tuple, list)) else (dim,)
    dims = tuple([_one_dim(op, input, d) for d in listed])
    if len(set(dims)) != len(dims):
        raise fail(op, f"each dim once for input {shape_str(input)}", f"dim={dim}")
    return tuple(sorted(dims))


def _check_real(op: str, input: Tensor) -> None:
    if input.is_complex():
        raise fail(op, "a real input (complex ones run natively)", f"input of dtype {input.dtype}")


def _check_correction(op: str, correction: object) -> float:
    """The correction c of N − c; None is the default, 1, as torch takes it."""
    if correction is None:
        return 1
    if isinstance(correction, bool) or not isinstance(correction, (int, float)):
        raise fail(op, "correction as a number", f"correction={correction!r}")
    return correction


# -- the ops ------------------------------------------------------------------------------------


def sum(input: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False, *,
        dtype: torch.dtype | None = None) -> Tensor:
    """Explicit twin of :func:`torch.sum` (dim None or empty: every dim)."""
    return Sum.apply(input, _reduced_dims("sum", input, dim), bool(keepdim), dtype)


def mean(input: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False, *,
         dtype: torch.dtype | None = None) -> Tensor:
    """Explicit twin of :func:`torch.mean` (dim None or empty: every dim)."""
    return Mean.apply(input, _reduced_dims("mean", input, dim), bool(keepdim), dtype)


def var(input: Tensor, dim: int | Sequence[int] | None = None, *, correction: float | None = 1,
        keepdim: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.var` (``unbiased=`` goes through the table's adapter)."""
    _check_real("var", input)
    dims = _reduced_dims("var", input, dim)
    return Var.apply(input, dims, _check_correction("var", correction), bool(keepdim))


def std(input: Tensor, dim: int | Sequence[int] | None = None, *, correction: float | None = 1,
        keepdim: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.std` (``unbiased=`` goes through the table's adapter)."""
    _check_real("std", input)
    dims = _reduced_dims("std", input, dim)
    return Std.apply(input, dims, _check_correction("std", correction), bool(keepdim))


def logsumexp(input: Tensor, dim: int | Sequence[int], keepdim: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.logsumexp`."""
    _check_real("logsumexp", input)
    dims = _reduced_dims("logsumexp", input, dim, required=True)
    return LogSumExp.apply(input, dims, bool(keepdim))


def norm(input: Tensor, ord: float = 2, dim: int | Sequence[int] | None = None,
         keepdim: bool = False) -> Tensor:
    """Explicit twin of ``torch.linalg.vector_norm(input, ord=2, dim, keepdim)``, the 2-norm
    only (``torch.norm``'s p=2 and 'fro' go through the table's adapter)."""
    if isinstance(ord, bool) or ord != 2:
        raise fail("norm", "ord=2 (other orders run natively)", f"ord={ord!r}")
    _check_real("norm", input)
    return Norm.apply(input, _reduced_dims("norm", input, dim), bool(keepdim))


def cumsum(input: Tensor, dim: int, *, dtype: torch.dtype | None = None) -> Tensor:
    """Explicit twin of :func:`torch.cumsum`."""
    return CumSum.apply(input, _one_dim("cumsum", input, dim), dtype)

