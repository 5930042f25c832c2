"""Unary math (reciprocal, exp, log, sqrt, rsqrt, abs, sin, cos), each with its derivative
written out; what the pointwise rules share is in :mod:`._operands`."""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import Function, to_dtype

__all__ = ["abs", "cos", "exp", "log", "reciprocal", "rsqrt", "sin", "sqrt"]



def _keep_output(ctx, inputs, output) -> None:
    """Keep y, where the derivative is a function of y alone; only when x needs a gradient."""
    ctx.dtype = inputs[0].dtype
    ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)


def _keep_input(ctx, inputs, output) -> None:
    """Keep x, where y does not give the derivative back; only when x needs a gradient."""
    ctx.dtype = inputs[0].dtype
    ctx.save_for_backward(inputs[0] if ctx.needs_input_grad[0] else None)


class Reciprocal(Function):
    r"""y = 1/x

    Backward, with g = ∂L/∂y:
        ∂L/∂x = −g · conj(y²)

    Saves: y, because the derivative −1/x² = −y² is a function of y alone.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.reciprocal(input)

    setup_context = staticmethod(_keep_output)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        return to_dtype(-g * (y * y).conj(), ctx.dtype)


class Exp(Function):
    r"""y = eˣ

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · conj(y)

    Saves: y, because exp′ = exp: the derivative is y itself.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.exp(input)

    setup_context = staticmethod(_keep_output)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        return to_dtype(g * y.conj(), ctx.dtype)


class Log(Function):
    r"""y = ln x

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g / conj(x)

    Saves: x, because the derivative 1/x is not a function of y without an exp.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.log(input)

    setup_context = staticmethod(_keep_input)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        return to_dtype(g / x.conj(), ctx.dtype)


class Sqrt(Function):
    r"""y = √x

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g / (2·conj(y))

    Saves: y, because the derivative 1/(2√x) is a function of y alone.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.sqrt(input)

    setup_context = staticmethod(_keep_output)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        return to_dtype(g / (2 * y.conj()), ctx.dtype)


class Rsqrt(Function):
    r"""y = 1/√x

    Backward, with g = ∂L/∂y:
        ∂L/∂x = −½ g · conj(y³)

    Saves: y, because the derivative −½x^(−3/2) = −½y³ is a function of y alone.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.rsqrt(input)

    setup_context = staticmethod(_keep_output)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        return to_dtype(-0.5 * g * y.pow(3).conj(), ctx.dtype)


class Abs(Function):
    r"""y = |x|

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · sgn(x)        (sgn(x) = x/|x|, and 0 at x = 0 and at NaN, as torch's)

    Saves: for real x, sgn(x) as int8 (1 byte per element, not x's 4 or 8), because the
    derivative takes only the values −1, 0 and 1; it is piecewise constant, so double backward
    loses nothing. For complex x, x itself: sgn varies with x, and double backward needs that.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.abs(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.dtype = x.dtype
        kept = None
        if ctx.needs_input_grad[0]:
            kept = x if x.is_complex() else torch.sign(x).to(torch.int8)
        ctx.save_for_backward(kept)

    @staticmethod
    def backward(ctx, g: Tensor):
        (kept,) = ctx.saved_tensors
        sign = kept.sgn() if kept.is_complex() else kept
        return to_dtype(g * sign, ctx.dtype)


class Sin(Function):
    r"""y = sin x

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · conj(cos x)

    Saves: x, because cos x is not a function of sin x alone (its sign is lost).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.sin(input)

    setup_context = staticmethod(_keep_input)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        return to_dtype(g * x.cos().conj(), ctx.dtype)


class Cos(Function):
    r"""y = cos x

    Backward, with g = ∂L/∂y:
        ∂L/∂x = −g · conj(sin x)

    Saves: x, because sin x is not a function of cos x alone (its sign is lost).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.cos(input)

    setup_context = staticmethod(_keep_input)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        return to_dtype(g * -x.sin().conj(), ctx.dtype)


def reciprocal(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.reciprocal`."""
    return Reciprocal.apply(input)


def exp(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.exp`."""
    return Exp.apply(input)


def log(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.log`."""
    return Log.apply(input)


def sqrt(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.sqrt`."""
    return Sqrt.apply(input)


def rsqrt(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.rsqrt`."""
    return Rsqrt.apply(input)


def abs(input: Tensor) -> Tensor:  # noqa: A001 - torch's name
    """Explicit twin of :func:`torch.abs`."""
    return Abs.apply(input)


def sin(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.sin`."""
    return Sin.apply(input)


def cos(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.cos`."""
    return Cos.apply(input)
