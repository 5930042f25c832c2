"""Pointwise activations, each with its derivative written out.

Each ``backward`` reads as the formula in its docstring, out of place, so that it serves double
backward too. A first-order backward (no graph recorded) takes the same formula computed in
place, one named call into :mod:`trainer.functional._fast.activation`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._fast import activation as fast
from ._util import Function, check_float, fail, records_graph, to_dtype

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class ReLU(Function):
    r"""y = max(x, 0)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · [y ≠ 0]          (= g · [x > 0]; 0 at x = 0, and NaN passes g, as in torch)

    Saves: a bit-packed mask [y ≠ 0], 1 bit per element (⌈n/8⌉ bytes, 1/32 of the float32 y
    torch keeps), because the derivative is a 0/1 step and one bit holds all of it; see
    :func:`~trainer.functional._fast.activation.pack_bits`. ``g · mask`` stays differentiable in g, so double backward gives ∂/∂g
    and a zero second derivative in x.

    ``inplace=True`` clamps x in place (``mark_dirty``), exactly as ``torch.relu_``: the mask
    comes from the output, so nothing the backward needs is overwritten.
    """

    @staticmethod
    def vmap(info, in_dims, input, inplace):
        # Elementwise: the vmapped dim is one more dim of the physical tensor. (The generated
        # rule would not keep an in-place input's identity, which mark_dirty needs.)
        return ReLU.apply(input, inplace), in_dims[0]

    @staticmethod
    def forward(input: Tensor, inplace: bool) -> Tensor:
        if inplace:
            torch.relu_(input)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch.relu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        packed = None
        if ctx.needs_input_grad[0]:
            # A cast to bool is y ≠ 0: several times faster on CPU than the comparison y > 0.
            packed = fast.pack_bits(output.bool())
            ctx.shape = output.shape
        ctx.save_for_backward(packed)

    @staticmethod
    def backward(ctx, g: Tensor):
        (packed,) = ctx.saved_tensors
        nonzero = fast.unpack_bits(packed, ctx.shape)  # [y ≠ 0] as uint8 0/1
        if not records_graph():
            return fast.relu_backward(g, nonzero), None
        return g * nonzero, None  # ∂L/∂x = g · [y ≠ 0], differentiable in g


class LeakyReLU(Function):
    r"""y = x if x > 0 else s·x,   s = negative_slope

    Backward, with g = ∂L/∂y and m = [x > 0]:
        ∂L/∂x = g · (m + s·(1 − m)) = s·g + (1 − s)·g·m       (slope s at x = 0, as in torch)

    Saves: the mask m bit-packed, 1 bit per element (⌈n/8⌉ bytes, 1/32 of the float32 x torch
    keeps), because the derivative takes only the two values 1 and s (see ReLU).
    With ``inplace=True`` the mask is read off the output (y > 0 ⇔ x > 0 for s ≥ 0); for s < 0
    that is impossible, and, as torch does, backward then raises.
    """

    @staticmethod
    def vmap(info, in_dims, input, negative_slope, inplace):
        # Elementwise: the vmapped dim is one more dim of the physical tensor. (The generated
        # rule would not keep an in-place input's identity, which mark_dirty needs.)
        return LeakyReLU.apply(input, negative_slope, inplace), in_dims[0]

    @staticmethod
    def forward(input: Tensor, negative_slope: float, inplace: bool) -> Tensor:
        if inplace:
            torch.nn.functional.leaky_relu(input, negative_slope, inplace=True)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch.nn.functional.leaky_relu(input, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, negative_slope, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.negative_slope = negative_slope
        ctx.slope_lost = inplace and negative_slope < 0
        packed = None
        if ctx.needs_input_grad[0] and not ctx.slope_lost:
            packed = fast.pack_bits(fast.positive(output if inplace else input))
            ctx.shape = output.shape
        ctx.save_for_backward(packed)

    @staticmethod
    def backward(ctx, g: Tensor):
        if ctx.slope_lost:
            raise RuntimeError(
                "leaky_relu: in-place backward with a negative slope is not supported (the "
                "sign of x is lost); call it with inplace=False, as torch also requires"
            )
        (packed,) = ctx.saved_tensors
        m = fast.unpack_bits(packed, ctx.shape)  # [x > 0] as uint8 0/1
        s = ctx.negative_slope
        if not records_graph():
            return fast.leaky_relu_backward(g, m, s), None, None
        m = m.to(g.dtype)
        return g * (m + s * (1 - m)), None, None  # ∂L/∂x = g · (m + s·(1 − m))


class GELU(Function):
    r"""approximate='none':  y = x·Φ(x),   Φ(x) = ½(1 + erf(x/√2)),   φ(x) = e^(−x²/2)/√(2π)
    approximate='tanh':  y = ½x(1 + tanh u) = x·σ(2u),   u = √(2/π)(x + 0.044715x³)

    Backward, with g = ∂L/∂y:
        'none':  ∂L/∂x = g · (Φ(x) + x·φ(x))
        'tanh':  ∂L/∂x = g · (s + 2x·s(1 − s)·u′),   s = σ(2u) = ½(1 + tanh u),
                 u′ = √(2/π)(1 + 3·0.044715x²)
    Both are built from differentiable ops of x, so double backward is exact too. A first-order
    backward takes Φ(x) = ½ + (gelu(x) − x/2)/x from torch's gelu forward instead of erf (same
    accuracy: both lose Φ's relative precision only where Φ < ulp(1)).

    Saves: x, because the derivative is a function of x that y alone does not determine
    (gelu is not invertible for x < 0).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, approximate: str) -> Tensor:
        return torch.nn.functional.gelu(input, approximate=approximate)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, approximate = inputs
        ctx.approximate = approximate
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        x = to_dtype(x, g.dtype)
        if ctx.approximate == "tanh":
            if not records_graph():
                return fast.gelu_tanh_backward(x, g), None
            k, c = fast.SQRT_2_OVER_PI, fast.GELU_TANH_CUBIC
            s = torch.sigmoid(2 * k * (x + c * x**3))  # σ(2u) = ½(1 + tanh u)
            du = k * (1 + 3 * c * x**2)  # u′
            return g * (s + 2 * x * s * (1 - s) * du), None
        if not records_graph():
            return fast.gelu_backward(x, g), None
        cdf = 0.5 * (1 + torch.erf(x * _SQRT1_2))  # Φ(x)
        pdf = torch.exp(-0.5 * x * x) * _INV_SQRT_2PI  # φ(x)
        return g * (cdf + x * pdf), None


class SiLU(Function):
    r"""y = x·σ(x)

    Backward, with g = ∂L/∂y and s = σ(x):
        ∂L/∂x = g · s·(1 + x·(1 − s))

    Saves: x, because s = σ(x) is not recoverable from y (silu is not invertible for x < 0).

    ``inplace=True`` overwrites x only when autograd is not recording through it; when it is,
    the result is computed out of place and x is left untouched (torch would keep a full copy
    of x to do the same), since the backward needs the original x.
    """

    @staticmethod
    def vmap(info, in_dims, input, inplace):
        # Elementwise: the vmapped dim is one more dim of the physical tensor. (The generated
        # rule would not keep an in-place input's identity, which mark_dirty needs.)
        return SiLU.apply(input, inplace), in_dims[0]

    @staticmethod
    def forward(input: Tensor, inplace: bool) -> Tensor:
        if inplace:
            torch.nn.functional.silu(input, inplace=True)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch.nn.functional.silu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        x = to_dtype(x, g.dtype)
        if not records_graph():
            return fast.silu_backward(x, g), None
        s = torch.sigmoid(x)
        return g * s * (1 + x * (1 - s)), None


class Sigmoid(Function):
    r"""y = σ(x) = 1 / (1 + e^(−x))

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · y(1 − y)

    Saves: y, because σ′ is a function of y alone (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.sigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        if not records_graph():
            return fast.sigmoid_backward(y, g)
        return g * y * (1 - y)


class Tanh(Function):
    r"""y = tanh(x)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · (1 − y²)

    Saves: y, because tanh′ is a function of y alone (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.tanh(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        if not records_graph():
            return fast.tanh_backward(y, g)
        return g * (1 - y * y)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.relu`."""
    return ReLU.apply(input, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.leaky_relu`."""
    check_float("leaky_relu", "input", input)
    return LeakyReLU.apply(input, float(negative_slope), inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.gelu`."""
    if approximate not in ("none", "tanh"):
        raise fail("gelu", "approximate='none' or 'tanh'", f"approximate={approximate!r}")
    check_float("gelu", "input", input)
    return GELU.apply(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.silu` (see :class:`SiLU` on ``inplace``)."""
    check_float("silu", "input", input)
    recording = torch.is_grad_enabled() and input.requires_grad
    return SiLU.apply(input, inplace and not recording)


def sigmoid(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.sigmoid`."""
    return Sigmoid.apply(input)


def tanh(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.tanh`."""
    return Tanh.apply(input)
