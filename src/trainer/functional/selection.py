"""Selection (clamp, maximum, minimum, where, masked_fill), each with its gradient written
out; what the pointwise rules share is in :mod:`._operands`."""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import Function, fail

from ._operands import Operand, _BINARY, _check_broadcast, _like, _number, _shaped

__all__ = ["clamp", "masked_fill", "maximum", "minimum", "where"]


def _save_masks_or_operands(ctx, masks: tuple[Tensor | None, ...],
                            operands: tuple[Operand | None, ...]) -> None:
    """Keep the bool masks a backward needs (one byte per element of y each) when they take
    no more bytes than the tensor operands they come from, else those operands, from which
    backward compares again: only where broadcasting made y much larger than the operands."""
    mask_bytes = sum(m.numel() for m in masks if m is not None)
    operand_bytes = sum(t.numel() * t.element_size() for t in operands
                        if isinstance(t, Tensor))
    ctx.from_operands = mask_bytes > operand_bytes
    if ctx.from_operands:
        ctx.numbers = tuple(map(_number, operands))
        ctx.save_for_backward(*(t if isinstance(t, Tensor) else None for t in operands))
    else:
        ctx.save_for_backward(*masks)


def _saved_masks(ctx, masks_of) -> tuple[Tensor | None, ...]:
    """The masks :func:`_save_masks_or_operands` kept, or ``masks_of`` the operands."""
    saved = ctx.saved_tensors
    if not ctx.from_operands:
        return saved
    operands = [n if t is None else t for t, n in zip(saved, ctx.numbers, strict=True)]
    return masks_of(ctx.needs_input_grad, *operands)


class Clamp(Function):
    r"""y = min(max(x, lo), hi)        (lo = min, hi = max: numbers or tensors; one may be None)

    Backward, with g = ∂L/∂y (torch's conventions: at a bound, g goes to x):
        ∂L/∂x  = Σ_broadcast g · [lo ≤ x ≤ hi]          (0 at a NaN x)
        ∂L/∂lo = Σ_broadcast g · [x < lo]·[lo < hi]      ([x < lo] when hi is None)
        ∂L/∂hi = Σ_broadcast g · ([x > hi] ∨ [hi < lo])  ([x > hi] when lo is None)
    With lo > hi, y = hi everywhere, and hi alone gets g.

    Saves: the mask of each operand that needs a gradient, as bool (one byte per element of
    y), not x (4 or 8 bytes per element) nor the bounds; x and the tensor bounds instead only
    where broadcasting makes the masks larger than them.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, min: Operand | None, max: Operand | None) -> Tensor:
        return torch.clamp(input, min, max)

    @staticmethod
    def masks(needs, x: Tensor, lo: Operand | None, hi: Operand | None):
        """[lo ≤ x ≤ hi], [x < lo]·[lo < hi], [x > hi] ∨ [hi < lo]: each where needed."""
        need_x, need_lo, need_hi = needs[:3]
        passes = lo_wins = hi_wins = None
        if need_x:
            if lo is None:
                passes = x <= hi
            elif hi is None:
                passes = x >= lo
            else:
                passes = (x >= lo) & (x <= hi)
        if need_lo:
            lo_wins = x < lo if hi is None else (x < lo) & (lo < hi)
        if need_hi:
            hi_wins = x > hi if lo is None else (x > hi) | (hi < lo)
        return passes, lo_wins, hi_wins

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, lo, hi = inputs
        need_x, need_lo, need_hi = ctx.needs_input_grad
        ctx.x, ctx.lo, ctx.hi = _like(x, need_x), _like(lo, need_lo), _like(hi, need_hi)
        _save_masks_or_operands(ctx, Clamp.masks(ctx.needs_input_grad, x, lo, hi), inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        passes, lo_wins, hi_wins = _saved_masks(ctx, Clamp.masks)
        grad_x = grad_lo = grad_hi = None
        if ctx.x is not None:
            grad_x = _shaped(torch.where(passes, g, 0.0), ctx.x)
        if ctx.lo is not None:
            grad_lo = _shaped(torch.where(lo_wins, g, 0.0), ctx.lo)
        if ctx.hi is not None:
            grad_hi = _shaped(torch.where(hi_wins, g, 0.0), ctx.hi)
        return grad_x, grad_lo, grad_hi


def _extremum_backward(ctx, g: Tensor, masks_of) -> tuple[Tensor | None, Tensor | None]:
    tie, a_loses, b_loses = _saved_masks(ctx, masks_of)
    shared = torch.where(tie, g / 2, g)
    grad_a = _shaped(shared.masked_fill(a_loses, 0), ctx.a) if ctx.a is not None else None
    grad_b = _shaped(shared.masked_fill(b_loses, 0), ctx.b) if ctx.b is not None else None
    return grad_a, grad_b


class Maximum(Function):
    r"""y = max(a, b), elementwise (NaN where either is NaN)

    Backward, with g = ∂L/∂y and h = where(a = b, g/2, g) (a tie splits g half and half,
    as torch's):
        ∂L/∂a = Σ_broadcast h · [¬(a < b)]
        ∂L/∂b = Σ_broadcast h · [¬(a > b)]
    A NaN compares false both ways, so then both operands get all of g, as in torch.

    Saves: the masks [a = b] and, for each operand that needs a gradient, where it loses
    ([a < b], [a > b]), as bool: one byte per element of y each, not a and b (4 or 8 bytes
    each); a and b instead only where broadcasting makes the masks larger than them.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, other: Tensor) -> Tensor:
        return torch.maximum(input, other)

    @staticmethod
    def masks(needs, a: Tensor, b: Tensor):
        """[a = b], [a < b] and [a > b], the last two where needed."""
        return a == b, a < b if needs[0] else None, a > b if needs[1] else None

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b = inputs
        ctx.a, ctx.b = _like(a, ctx.needs_input_grad[0]), _like(b, ctx.needs_input_grad[1])
        masks = Maximum.masks(ctx.needs_input_grad, a, b) if ctx.a or ctx.b else ()
        _save_masks_or_operands(ctx, masks, inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _extremum_backward(ctx, g, Maximum.masks)


class Minimum(Function):
    r"""y = min(a, b), elementwise (NaN where either is NaN)

    Backward, with g = ∂L/∂y and h = where(a = b, g/2, g) (a tie splits g half and half,
    as torch's):
        ∂L/∂a = Σ_broadcast h · [¬(a > b)]
        ∂L/∂b = Σ_broadcast h · [¬(a < b)]
    A NaN compares false both ways, so then both operands get all of g, as in torch.

    Saves: the masks [a = b] and, for each operand that needs a gradient, where it loses
    ([a > b], [a < b]), as bool: one byte per element of y each, not a and b (4 or 8 bytes
    each); a and b instead only where broadcasting makes the masks larger than them.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, other: Tensor) -> Tensor:
        return torch.minimum(input, other)

    @staticmethod
    def masks(needs, a: Tensor, b: Tensor):
        """[a = b], [a > b] and [a < b], the last two where needed."""
        return a == b, a > b if needs[0] else None, a < b if needs[1] else None

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b = inputs
        ctx.a, ctx.b = _like(a, ctx.needs_input_grad[0]), _like(b, ctx.needs_input_grad[1])
        masks = Minimum.masks(ctx.needs_input_grad, a, b) if ctx.a or ctx.b else ()
        _save_masks_or_operands(ctx, masks, inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _extremum_backward(ctx, g, Minimum.masks)


class Where(Function):
    r"""y = a where c, else b        (c: bool condition; a: input, b: other, numbers allowed)

    Backward, with g = ∂L/∂y:
        ∂L/∂a = Σ_broadcast g · [c]
        ∂L/∂b = Σ_broadcast g · [¬c]

    Saves: c, the caller's own tensor (no copy), and only when a gradient is needed.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(condition: Tensor, input: Operand, other: Operand) -> Tensor:
        return torch.where(condition, input, other)

    @staticmethod
    def setup_context(ctx, inputs, output):
        condition, a, b = inputs
        _, need_a, need_b = ctx.needs_input_grad
        ctx.a, ctx.b = _like(a, need_a), _like(b, need_b)
        ctx.save_for_backward(condition if need_a or need_b else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (c,) = ctx.saved_tensors
        grad_a = _shaped(torch.where(c, g, 0.0), ctx.a) if ctx.a is not None else None
        grad_b = _shaped(torch.where(c, 0.0, g), ctx.b) if ctx.b is not None else None
        return None, grad_a, grad_b


class MaskedFill(Function):
    r"""y = v where m, else x        (m: bool mask, broadcast with x; v: a number or 0-d tensor)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = Σ_broadcast g · [¬m]
        ∂L/∂v = Σ_all g · [m]

    Saves: m, the caller's own tensor (no copy), and only when a gradient is needed.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, mask: Tensor, value: Operand) -> Tensor:
        return torch.masked_fill(input, mask, value)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, mask, value = inputs
        need_x, _, need_v = ctx.needs_input_grad
        ctx.x, ctx.v = _like(x, need_x), _like(value, need_v)
        ctx.save_for_backward(mask if need_x or need_v else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (m,) = ctx.saved_tensors
        grad_x = _shaped(g.masked_fill(m, 0), ctx.x) if ctx.x is not None else None
        grad_v = _shaped(torch.where(m, g, 0.0).sum(), ctx.v) if ctx.v is not None else None
        return grad_x, None, grad_v


def clamp(input: Tensor, min: Operand | None = None,  # noqa: A002 - torch's names
          max: Operand | None = None) -> Tensor:  # noqa: A002
    """Explicit twin of :func:`torch.clamp`: numbers or tensors as bounds, not one of each."""
    if min is None and max is None:
        raise fail("clamp", "min or max (or both)", "neither")
    _check_broadcast("clamp", ("input", "min", "max"), input, min, max)
    return Clamp.apply(input, min, max)


def maximum(input: Tensor, other: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.maximum`."""
    _check_broadcast("maximum", _BINARY, input, other)
    return Maximum.apply(input, other)


def minimum(input: Tensor, other: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.minimum`."""
    _check_broadcast("minimum", _BINARY, input, other)
    return Minimum.apply(input, other)


def where(condition: Tensor, input: Operand, other: Operand) -> Tensor:
    """Explicit twin of the three-argument :func:`torch.where`."""
    _check_broadcast("where", ("condition", "input", "other"), condition, input, other)
    return Where.apply(condition, input, other)


def masked_fill(input: Tensor, mask: Tensor, value: Operand) -> Tensor:
    """Explicit twin of :func:`torch.masked_fill`: ``value`` a number or a 0-d tensor."""
    _check_broadcast("masked_fill", ("input", "mask"), input, mask)
    return MaskedFill.apply(input, mask, value)
