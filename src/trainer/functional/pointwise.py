"""Pointwise arithmetic and math (add, mul, exp, clamp, where, ...), each with its derivative
written out.

What every rule here shares, with g = ∂L/∂y:

- Forward is torch's own kernel, so y's shape (broadcasting) and dtype (type promotion, a
  Python number or a 0-d tensor counting as torch counts them) are torch's exactly.
- The gradient of an operand that broadcasting stretched is summed back to its shape
  (Σ_broadcast: :func:`~trainer.functional._util.sum_to_shape`), and each gradient has its
  operand's dtype: the real part first for a real operand of a complex y, as autograd does.
- Complex values get torch's conjugate gradients: g · conj(∂y/∂x) (conj is a no-op on reals).
- A Python number is a constant: it gets no gradient, and is kept as itself, never a tensor.

Each backward is built from differentiable torch ops out of place, so it serves double
backward too.
"""

from __future__ import annotations

import cmath
import math

import torch
from torch import Tensor

from ._util import Function, fail, shape_str, sum_to_shape, to_dtype

__all__ = [
    "abs",
    "add",
    "clamp",
    "cos",
    "div",
    "exp",
    "log",
    "masked_fill",
    "maximum",
    "minimum",
    "mul",
    "neg",
    "pow",
    "reciprocal",
    "rsqrt",
    "sin",
    "sqrt",
    "sub",
    "where",
]

Operand = Tensor | bool | int | float | complex


# -- shared helpers ---------------------------------------------------------------------------

def _like(operand: Operand, needed: bool) -> tuple[torch.Size, torch.dtype] | None:
    """The shape and dtype that ``operand``'s gradient must have; None when it needs none."""
    return (operand.shape, operand.dtype) if needed else None


def _shaped(grad: Tensor, like: tuple[torch.Size, torch.dtype] | None) -> Tensor | None:
    """An operand's gradient from one of y's shape: summed over the dims broadcasting added or
    stretched, the real part for a real operand of a complex y, in the operand's dtype."""
    if like is None:
        return None
    shape, dtype = like
    grad = sum_to_shape(grad, shape)
    if grad.dtype != dtype:
        if grad.is_complex() and not dtype.is_complex:
            grad = grad.real
        grad = grad.to(dtype)
    return grad


def _number(operand: Operand) -> Operand | None:
    """A Python number as itself (kept on ctx, no tensor); None for a tensor."""
    return None if isinstance(operand, Tensor) else operand


def _conj(value: Operand) -> Operand:
    """conj(value) for a tensor or a number; the value itself when it is real."""
    if isinstance(value, Tensor):
        return value.conj()
    return value.conjugate() if isinstance(value, complex) else value


def _log_number(s: Operand) -> float | complex:
    """ln s of a Python number, as torch's Scalar log: −∞ at 0, NaN below 0 (real s)."""
    if isinstance(s, complex):
        return cmath.log(s) if s != 0 else complex(-math.inf, 0.0)
    s = float(s)
    return math.log(s) if s > 0 else (-math.inf if s == 0 else math.nan)


def _nonnegative(e: Tensor) -> Tensor:
    """[e ≥ 0]; for complex e, [e is real and ≥ 0] (torch's condition for pow at b = 0)."""
    if e.is_complex():
        return (e.imag == 0) & (e.real >= 0)
    return e >= 0


def _check_broadcast(op: str, names: tuple[str, ...], *operands: Operand | None) -> None:
    """Refuse tensor operands whose shapes do not broadcast together, naming each shape."""
    if len(operands) == 2:  # the common case first: one number, or equal shapes
        a, b = operands
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape == b.shape:
            return
    tensors = [(name, t) for name, t in zip(names, operands, strict=True)
               if isinstance(t, Tensor)]
    if len(tensors) < 2 or all(t.shape == tensors[0][1].shape for _, t in tensors):
        return
    rank = max(t.dim() for _, t in tensors)
    for i in range(1, rank + 1):
        sizes = {t.shape[-i] for _, t in tensors if t.dim() >= i and t.shape[-i] != 1}
        if len(sizes) > 1:
            listed = [f"{name} {shape_str(t)}" for name, t in tensors]
            got = ", ".join(listed[:-1]) + " and " + listed[-1]
            raise fail(op, "shapes that broadcast together", got)


_BINARY = ("input", "other")


# -- arithmetic -------------------------------------------------------------------------------

class Add(Function):
    r"""y = a + α·b        (a: input, b: other; either may be a Python number; α a number)

    Backward, with g = ∂L/∂y:
        ∂L/∂a = Σ_broadcast g
        ∂L/∂b = Σ_broadcast α·g        (conj(α) for a complex α)

    Saves: nothing. Each gradient is g itself (times α), summed back to its operand's shape:
    only the operands' shapes and dtypes are kept.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Operand, other: Operand, alpha: Operand) -> Tensor:
        return torch.add(input, other, alpha=alpha)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, other, alpha = inputs
        ctx.a = _like(input, ctx.needs_input_grad[0])
        ctx.b = _like(other, ctx.needs_input_grad[1])
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx, g: Tensor):
        grad_b = None
        if ctx.b is not None:
            grad_b = _shaped(g if ctx.alpha == 1 else g * _conj(ctx.alpha), ctx.b)
        return _shaped(g, ctx.a), grad_b, None


class Sub(Function):
    r"""y = a − α·b        (a: input, b: other; either may be a Python number; α a number)

    Backward, with g = ∂L/∂y:
        ∂L/∂a = Σ_broadcast g
        ∂L/∂b = Σ_broadcast −α·g       (conj(α) for a complex α)

    Saves: nothing, as :class:`Add`: only the operands' shapes and dtypes.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Operand, other: Operand, alpha: Operand) -> Tensor:
        return torch.sub(input, other, alpha=alpha)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, other, alpha = inputs
        ctx.a = _like(input, ctx.needs_input_grad[0])
        ctx.b = _like(other, ctx.needs_input_grad[1])
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx, g: Tensor):
        grad_b = None
        if ctx.b is not None:
            grad_b = _shaped(-g if ctx.alpha == 1 else -g * _conj(ctx.alpha), ctx.b)
        return _shaped(g, ctx.a), grad_b, None


class Mul(Function):
    r"""y = a·b        (a: input, b: other; either may be a Python number)

    Backward, with g = ∂L/∂y and b̄ = conj(b) (b itself when real):
        ∂L/∂a = Σ_broadcast g·b̄
        ∂L/∂b = Σ_broadcast g·ā

    Saves: b only when a needs a gradient, a only when b needs one: each gradient needs the
    other operand alone. A Python number is kept as itself.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Operand, other: Operand) -> Tensor:
        return torch.mul(input, other)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b = inputs
        need_a, need_b = ctx.needs_input_grad
        ctx.a, ctx.b = _like(a, need_a), _like(b, need_b)
        ctx.numbers = (_number(a), _number(b))
        ctx.save_for_backward(a if need_b and isinstance(a, Tensor) else None,
                              b if need_a and isinstance(b, Tensor) else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        a, b = ctx.saved_tensors
        a = ctx.numbers[0] if a is None else a
        b = ctx.numbers[1] if b is None else b
        grad_a = _shaped(g * _conj(b), ctx.a) if ctx.a is not None else None
        grad_b = _shaped(g * _conj(a), ctx.b) if ctx.b is not None else None
        return grad_a, grad_b


class Div(Function):
    r"""y = a / b, true division        (a: input, b: other; either may be a Python number)

    Backward, with g = ∂L/∂y and b̄ = conj(b):
        ∂L/∂a = Σ_broadcast g / b̄
        ∂L/∂b = Σ_broadcast −g · conj(a/b/b)         (= −g·ȳ/b̄, computed as torch does)

    Saves: b when either gradient is needed, a only for ∂b (a/b is recomputed rather than y
    kept: y has the broadcast shape, a may be smaller). A Python number is kept as itself.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Operand, other: Operand) -> Tensor:
        return torch.div(input, other)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b = inputs
        need_a, need_b = ctx.needs_input_grad
        ctx.a, ctx.b = _like(a, need_a), _like(b, need_b)
        ctx.numbers = (_number(a), _number(b))
        ctx.save_for_backward(a if need_b and isinstance(a, Tensor) else None,
                              b if (need_a or need_b) and isinstance(b, Tensor) else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        a, b = ctx.saved_tensors
        a = ctx.numbers[0] if a is None else a
        b = ctx.numbers[1] if b is None else b
        grad_a = _shaped(g / _conj(b), ctx.a) if ctx.a is not None else None
        grad_b = None
        if ctx.b is not None:
            grad_b = _shaped(-g * (torch.div(a, b) / b).conj(), ctx.b)
        return grad_a, grad_b


class Neg(Function):
    r"""y = −x

    Backward, with g = ∂L/∂y:
        ∂L/∂x = −g

    Saves: nothing: the derivative is the constant −1.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.neg(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype

    @staticmethod
    def backward(ctx, g: Tensor):
        return to_dtype(-g, ctx.dtype)


class Pow(Function):
    r"""y = bᵉ        (b: input, e: exponent; one of them may be a Python number)

    Backward, with g = ∂L/∂y (each factor conjugated for complex values, as torch):
        ∂L/∂b = Σ_broadcast g · e·b^(e−1)     0 where e = 0: 0⁰ = 1 has ∂b = 0, not NaN
        ∂L/∂e = Σ_broadcast g · y·ln b        0 where b = 0 and e ≥ 0 (the limit from b > 0);
                                              NaN for b < 0 (ln b is), as torch's
    A number base s has the constant ln s (−∞ at s = 0, NaN for s < 0, as torch's Scalar log);
    ln b of an integer tensor b is taken in y's dtype. A number exponent e = 0 gives ∂b = 0.

    Saves: ∂b needs b (and e, a tensor); ∂e needs y and ln b, so y, b and e (for the mask at
    b = 0). A number base keeps y alone for ∂e (and e when s = 0, for the mask); each only
    when its gradient is needed, as native pow keeps.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Operand, exponent: Operand) -> Tensor:
        return torch.pow(input, exponent)

    @staticmethod
    def setup_context(ctx, inputs, output):
        b, e = inputs
        need_b, need_e = ctx.needs_input_grad
        ctx.b, ctx.e = _like(b, need_b), _like(e, need_e)
        ctx.numbers = (_number(b), _number(e))
        base_is_tensor = isinstance(b, Tensor)
        keep_b = base_is_tensor and (need_b or need_e)
        keep_e = isinstance(e, Tensor) and (need_b or (need_e and (base_is_tensor or b == 0)))
        ctx.save_for_backward(b if keep_b else None, e if keep_e else None,
                              output if need_e else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        b, e, y = ctx.saved_tensors
        b = ctx.numbers[0] if b is None else b
        e = ctx.numbers[1] if e is None else e
        grad_b = grad_e = None
        if ctx.b is not None:
            if isinstance(e, Tensor):
                grad_b = torch.where(e == 0, 0.0, g * (e * b.pow(e - 1)).conj())
            elif e == 0:
                grad_b = torch.zeros_like(b)
            else:
                grad_b = g * _conj(e * b.pow(e - 1))
            grad_b = _shaped(grad_b, ctx.b)
        if ctx.e is not None:
            if isinstance(b, Tensor):
                log_b = b.to(y.dtype).log()  # torch takes ln b in the result's dtype
                at_zero = (b == 0) & _nonnegative(e)
                grad_e = g * torch.where(at_zero, 0.0, (y * log_b).conj())
            elif b == 0:
                grad_e = g * torch.where(_nonnegative(e), 0.0, (y * _log_number(b)).conj())
            else:
                grad_e = g * (y * _log_number(b)).conj()
            grad_e = _shaped(grad_e, ctx.e)
        return grad_b, grad_e


# -- unary math -------------------------------------------------------------------------------

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

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

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

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

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

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype
        ctx.save_for_backward(inputs[0] if ctx.needs_input_grad[0] else None)

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

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

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

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

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

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype
        ctx.save_for_backward(inputs[0] if ctx.needs_input_grad[0] else None)

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

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dtype = inputs[0].dtype
        ctx.save_for_backward(inputs[0] if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        return to_dtype(g * -x.sin().conj(), ctx.dtype)


# -- selection --------------------------------------------------------------------------------

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


# -- the ops ----------------------------------------------------------------------------------

def add(input: Operand, other: Operand, *, alpha: Operand = 1) -> Tensor:
    """Explicit twin of :func:`torch.add`: ``input + alpha * other``."""
    _check_broadcast("add", _BINARY, input, other)
    return Add.apply(input, other, alpha)


def sub(input: Operand, other: Operand, *, alpha: Operand = 1) -> Tensor:
    """Explicit twin of :func:`torch.sub`: ``input - alpha * other``."""
    _check_broadcast("sub", _BINARY, input, other)
    return Sub.apply(input, other, alpha)


def mul(input: Operand, other: Operand) -> Tensor:
    """Explicit twin of :func:`torch.mul`."""
    _check_broadcast("mul", _BINARY, input, other)
    return Mul.apply(input, other)


def div(input: Operand, other: Operand) -> Tensor:
    """Explicit twin of :func:`torch.div`, true division (``rounding_mode=None``) only."""
    _check_broadcast("div", _BINARY, input, other)
    return Div.apply(input, other)


def neg(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.neg`."""
    return Neg.apply(input)


def pow(input: Operand, exponent: Operand) -> Tensor:  # noqa: A001 - torch's name
    """Explicit twin of :func:`torch.pow`: tensor–number, number–tensor or tensor–tensor."""
    _check_broadcast("pow", ("input", "exponent"), input, exponent)
    return Pow.apply(input, exponent)


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
