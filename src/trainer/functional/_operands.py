"""What the pointwise rules (:mod:`.arithmetic`, :mod:`.unary`, :mod:`.selection`) share.

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

from ._util import fail, shape_str, sum_to_shape

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
