"""Arithmetic (add, sub, mul, div, neg, pow), each with its derivative written out; what
the pointwise rules share is in :mod:`._operands`."""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import Function, to_dtype

from ._operands import (
    Operand,
    _BINARY,
    _check_broadcast,
    _conj,
    _like,
    _log_number,
    _nonnegative,
    _number,
    _shaped,
)

__all__ = ["add", "div", "mul", "neg", "pow", "sub"]



def _keep_shapes_and_alpha(ctx, inputs, output) -> None:
    """Add's and Sub's: only the operands' shapes and dtypes (their gradients are g, scaled),
    and α."""
    input, other, ctx.alpha = inputs
    ctx.a = _like(input, ctx.needs_input_grad[0])
    ctx.b = _like(other, ctx.needs_input_grad[1])


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

    setup_context = staticmethod(_keep_shapes_and_alpha)

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

    setup_context = staticmethod(_keep_shapes_and_alpha)

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
