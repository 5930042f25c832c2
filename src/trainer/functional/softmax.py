"""Softmax and log-softmax along a dim, each with its Jacobian-vector product written out.

Each ``backward`` reads as the formula in its docstring, out of place; a first-order backward
takes the same formula in place, one named call into :mod:`trainer.functional._fast.activation`.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._fast import activation as fast
from ._util import Function, ShapeError, fail, records_graph, shape_str, to_dtype


class Softmax(Function):
    r"""y_i = e^(x_i) / Σ_j e^(x_j)   along ``dim`` (x first cast to ``dtype`` when given)

    Backward, with g = ∂L/∂y (the Jacobian is diag(y) − y yᵀ along dim):
        ∂L/∂x = y ⊙ (g − Σ_dim g ⊙ y) = g⊙y − y · Σ_dim(g⊙y)

    Saves: y, because the Jacobian is a function of y alone (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int, dtype: torch.dtype | None) -> Tensor:
        return torch.softmax(input, dim, dtype=dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        if not records_graph():
            return fast.softmax_backward(y, g, ctx.dim), None, None
        return y * (g - (g * y).sum(ctx.dim, keepdim=True)), None, None


class LogSoftmax(Function):
    r"""y_i = x_i − log Σ_j e^(x_j)   along ``dim`` (x first cast to ``dtype`` when given)

    Backward, with g = ∂L/∂y (the Jacobian is I − 1·softmaxᵀ along dim):
        ∂L/∂x = g − e^y · Σ_dim g          (e^y = softmax(x))

    Saves: y, the output, because softmax(x) = e^y (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int, dtype: torch.dtype | None) -> Tensor:
        return torch.log_softmax(input, dim, dtype=dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        if not records_graph():
            return fast.log_softmax_backward(y, g, ctx.dim), None, None
        return g - torch.exp(y) * g.sum(ctx.dim, keepdim=True), None, None


class _DimError(ShapeError, IndexError):
    """A dim out of range: torch raises IndexError there, so this is one too."""


def softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.softmax`."""
    dim = _softmax_dim("softmax", input, dim, _stacklevel, dtype)
    return Softmax.apply(input, dim, dtype)


def log_softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.log_softmax`."""
    dim = _softmax_dim("log_softmax", input, dim, _stacklevel, dtype)
    return LogSoftmax.apply(input, dim, dtype)


def _softmax_dim(
    op: str, input: Tensor, dim: int | None, stacklevel: int, dtype: torch.dtype | None
) -> int:
    """Validate the dim (or, for dim=None, pick it by torch's legacy rule, with its warning)."""
    result_dtype = input.dtype if dtype is None else dtype
    if not result_dtype.is_floating_point:
        raise fail(op, "a floating input or dtype", f"{result_dtype}")
    ndim = input.dim()
    if dim is None:
        # Called from softmax as torch's own helper is, so the same stacklevel points the same way.
        warnings.warn(
            f"Implicit dimension choice for {op} has been deprecated. "
            "Change the call to include dim=X as an argument.",
            stacklevel=stacklevel,
        )
        return 0 if ndim in (0, 1, 3) else 1
    low, high = -max(ndim, 1), max(ndim, 1) - 1
    if isinstance(dim, bool) or not isinstance(dim, int) or not low <= dim <= high:
        raise _DimError(f"{op}: expected dim in [{low}, {high}] for input {shape_str(input)}, "
                        f"got dim={dim}")
    return dim
