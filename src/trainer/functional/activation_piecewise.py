"""The piecewise activations: hardtanh (and relu6, its 0..6 case), hardswish, hardsigmoid and
prelu, each with its derivative written out.

Forward is torch's own kernel, so values are torch's bit for bit. Each ``backward`` reads as
the formula in its docstring, out of place and from differentiable torch ops, so it serves
double backward too; half and bfloat16 are computed in float32 there, as torch's kernels do.
At the kinks each derivative takes torch's convention (its decompositions', which its CUDA
kernels and CPU scalar loops share; CPU's vectorised loops differ from them only for a NaN x).

Where the derivative is a step (hardtanh, hardsigmoid, prelu's ∂x) they keep a bit-packed code
of it, not the input (:func:`~trainer.functional._fast.activation.pack_bits`, ⌈n/8⌉ bytes);
see each Function on what it saves and why.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._elementwise import Elementwise, KeepsX, in_place_if_free, opmath
from ._fast import activation as fast
from ._util import (
    Function,
    autocast_lower,
    check_float,
    check_same_dtype,
    fail,
    records_graph,
    shape_str,
    sum_to_shape,
    to_dtype,
)

__all__ = ["hardsigmoid", "hardswish", "hardtanh", "prelu", "relu6"]

_ONE_SIXTH = 1.0 / 6.0


class Hardtanh(Elementwise):
    r"""y = min(max(x, lo), hi)        (lo = min_val, hi = max_val; relu6 is lo = 0, hi = 6)

    Backward, with g = ∂L/∂y and m = ¬(x ≤ lo ∨ x ≥ hi):
        ∂L/∂x = g · m          (0 at x = lo and x = hi, as torch; a NaN x passes g)

    Saves: m bit-packed, 1 bit per element (⌈n/8⌉ bytes, 1/32 of the float32 x torch keeps),
    because the derivative is a 0/1 step. Half and bfloat16 x are compared in float32, as
    torch's kernel does (a bound such as 0.7 is not a bfloat16). ``g · m`` stays
    differentiable in g, so double backward gives ∂/∂g and a zero second derivative in x.

    ``inplace=True`` clamps x in place (``mark_dirty``), as ``hardtanh_``: m is then read off
    y, as torch reads it (y ≤ lo ⇔ x ≤ lo and y ≥ hi ⇔ x ≥ hi, NaN stays NaN), so nothing the
    backward needs is overwritten.
    """

    @staticmethod
    def forward(input: Tensor, min_val: float, max_val: float, inplace: bool) -> Tensor:
        if inplace:
            torch._C._nn.hardtanh_(input, min_val, max_val)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch._C._nn.hardtanh(input, min_val, max_val)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, min_val, max_val, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        packed = None
        if ctx.needs_input_grad[0]:
            s = opmath(output if inplace else input)
            blocked = torch.le(s, min_val).logical_or_(torch.ge(s, max_val))
            packed = fast.pack_bits(blocked.logical_not_())
            ctx.shape = output.shape
        ctx.save_for_backward(packed)

    @staticmethod
    def backward(ctx, g: Tensor):
        (packed,) = ctx.saved_tensors
        m = fast.unpack_bits(packed, ctx.shape)  # ¬(x ≤ lo ∨ x ≥ hi) as uint8 0/1
        if not records_graph():
            return fast.relu_backward(g, m), None, None, None  # g · m, in m's buffer
        return g * m, None, None, None  # ∂L/∂x = g · m, differentiable in g


class Hardswish(KeepsX):
    r"""y = x · min(max(x + 3, 0), 6) / 6

    Backward, with g = ∂L/∂y:
        ∂L/∂x = 0                    where x ≤ −3
                g · (x/3 + 1/2)      where −3 < x < 3      (= g · (2x + 3)/6)
                g                    where x ≥ 3, and for a NaN x
    (torch's convention: the open middle region, so 0 at x = −3 and g at x = 3.) Its own
    derivative in x is g/3 on the open middle region and 0 elsewhere, torch's too.

    Saves: x. The derivative is 0 or 1 outside [−3, 3], but inside it is affine in x and needs
    x to full precision, and y cannot give it back: y = x(x + 3)/6 has its minimum at
    x = −3/2, where x = −3/2 ± √(9/4 + 6y) cancels catastrophically. A 2-bit region code plus
    x of the middle region alone would save bytes only when over 1/16 of the entries lie
    outside [−3, 3] (rare for normalised activations), and its data-dependent size breaks
    vmap and torch.compile(fullgraph=True). So x it is, as torch keeps.

    ``inplace=True`` overwrites x only when autograd is not recording through it; when it is,
    the result is computed out of place and x is left untouched (torch would keep a full copy
    of x to do the same), since the backward needs the original x.
    """

    @staticmethod
    def forward(input: Tensor, inplace: bool) -> Tensor:
        if inplace:
            torch._C._nn.hardswish_(input)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch._C._nn.hardswish(input)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        dtype = g.dtype
        x, g = opmath(to_dtype(x, dtype)), opmath(g)
        slope = torch.where(x <= -3, 0.0, torch.where(x < 3, x / 3 + 0.5, 1.0))
        return (g * slope).to(dtype), None


class Hardsigmoid(Elementwise):
    r"""y = min(max(x + 3, 0), 6) / 6

    Backward, with g = ∂L/∂y and m = [−3 < x < 3]:
        ∂L/∂x = g · m / 6          (0 at x = ±3 and for a NaN x, as torch)

    Saves: m bit-packed, 1 bit per element (⌈n/8⌉ bytes, 1/32 of the float32 x torch keeps):
    the derivative takes only the values 0 and 1/6.

    ``inplace=True`` computes y in place (``mark_dirty``); m is then read off y as
    [0 < y < 1]. That is m exactly, except at the one float32 (or float64) x = 3 − ulp(3),
    whose x + 3 rounds to 6, so that y = 1 already: there torch's 1/6 (for a flat y) becomes
    0. torch itself keeps a full copy of x for its in-place form.
    """

    @staticmethod
    def forward(input: Tensor, inplace: bool) -> Tensor:
        if inplace:
            torch._C._nn.hardsigmoid_(input)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch._C._nn.hardsigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        packed = None
        if ctx.needs_input_grad[0]:
            if inplace:  # [0 < y < 1]
                inside = torch.gt(output, 0).logical_and_(torch.lt(output, 1))
            else:  # [−3 < x < 3]
                inside = torch.gt(input, -3).logical_and_(torch.lt(input, 3))
            packed = fast.pack_bits(inside)
            ctx.shape = output.shape
        ctx.save_for_backward(packed)

    @staticmethod
    def backward(ctx, g: Tensor):
        (packed,) = ctx.saved_tensors
        m = fast.unpack_bits(packed, ctx.shape)  # [−3 < x < 3] as uint8 0/1
        return g * m * _ONE_SIXTH, None  # ∂L/∂x = g · m / 6


class PReLU(Function):
    r"""y = x          where x > 0
        w_c · x      where x ≤ 0
    (w: 1 slope, or C, one per channel c of x along dim 1; an x of 0 or 1 dims has one channel)

    Backward, with g = ∂L/∂y and m = [x > 0]:
        ∂L/∂x = g where m, w_c · g elsewhere       (slope w at x = 0 and for a NaN x, as torch)
        ∂L/∂w_c = Σ_{every dim but 1} g · x · (1 − m)
    Each is differentiable in g, w and x (∂L/∂x's derivative in x is 0), so double backward
    is exact too.

    Saves: w (C numbers) for ∂L/∂x. When ∂L/∂w is needed, x, whose negative part enters that
    sum (m then comes from x): torch keeps x and w too. When ∂L/∂x alone is needed (frozen
    slopes), m as bool, 1 byte per element (1/4 of a float32 x): the derivative in x is a
    two-valued step. (Bit-packed it would take 1/32, but unpacking costs more ops than the
    whole ∂L/∂w path, and this case is the rarer one.)
    Under autocast x and w are computed in autocast's dtype, as torch's (prelu is on its
    lower-precision list).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor) -> Tensor:
        input, weight = autocast_lower(input.device.type, input, weight)
        return torch.prelu(input, weight)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight = inputs
        need_x, need_w = ctx.needs_input_grad
        positive = input > 0 if need_x and not need_w else None  # m, without x
        ctx.weight_shape = weight.shape
        ctx.save_for_backward(input if need_w else None, weight if need_x else None, positive)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w, positive = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        x = to_dtype(x, g.dtype)
        m = x > 0 if positive is None else positive
        grad_x = grad_w = None
        if need_x:
            w_c = _channel_view(to_dtype(w, g.dtype), g.dim())
            grad_x = torch.where(m, g, w_c * g)  # ∂L/∂x = g where x > 0, w_c·g elsewhere
        if need_w:  # ∂L/∂w_c = Σ g·x·(1 − m), over every dim but the channel's
            channels = _channel_shape(ctx.weight_shape.numel(), g.dim())
            grad_w = sum_to_shape(torch.where(m, 0.0, g * x), channels)
            grad_w = grad_w.reshape(ctx.weight_shape)
        return grad_x, grad_w


def _channel_shape(channels: int, ndim: int) -> list[int]:
    """The shape that lays C per-channel values along dim 1 of an ndim-dim x (1s elsewhere);
    for x of 0 or 1 dims (one channel) all 1s."""
    shape = [1] * ndim
    if ndim >= 2:
        shape[1] = channels
    return shape


def _channel_view(w: Tensor, ndim: int) -> Tensor:
    return w.reshape(_channel_shape(w.numel(), ndim))


# -- the functionals ----------------------------------------------------------------------------


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.hardtanh`."""
    if min_val > max_val:  # a ValueError, as torch's
        raise fail("hardtanh", "min_val <= max_val", f"min_val={min_val}, max_val={max_val}")
    return Hardtanh.apply(input, min_val, max_val, inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.relu6`: hardtanh between 0 and 6."""
    return Hardtanh.apply(input, 0.0, 6.0, inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.hardswish` (see :class:`Hardswish` on
    ``inplace``)."""
    check_float("hardswish", "input", input)
    return Hardswish.apply(input, in_place_if_free(input, inplace))


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.hardsigmoid`."""
    check_float("hardsigmoid", "input", input)
    return Hardsigmoid.apply(input, inplace)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.prelu`."""
    op = "prelu"
    channels = input.shape[1] if input.dim() >= 2 else 1
    if weight.dim() > 1 or weight.numel() not in (1, channels):
        raise fail(op, f"weight of 1 or {channels} entries (one per channel of input "
                   f"{shape_str(input)}, along dim 1), as a scalar or 1-D",
                   f"weight {shape_str(weight)}")
    check_float(op, "input", input)
    check_same_dtype(op, input, weight=weight)
    return PReLU.apply(input, weight)
