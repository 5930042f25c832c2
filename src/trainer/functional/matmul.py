"""Matrix products (matmul, mm, bmm, addmm, baddbmm), each with its gradients written out.

Every gradient of a product is a product of g with the other operands (conjugated, for complex
ones), summed back over the dims that broadcasting stretched: the rules below are that one idea
at each rank. Saved operands are cast to g's dtype (under autocast the backward products run in
autocast's dtype, as torch's own backward runs them), and each gradient is cast back to its
input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Number

import torch
from torch import Tensor

from ._util import Function, check_same_dtype, fail, shape_str, sum_to_shape, to_dtype

__all__ = ["addmm", "baddbmm", "bmm", "matmul", "mm"]


def _h(t: Tensor) -> Tensor:
    """The conjugate transpose of the last two dims (the transpose, for real t)."""
    return t.mH


def _conj(t: Tensor) -> Tensor:
    return t.conj() if t.is_complex() else t


def _scaled(t: Tensor, factor: Number) -> Tensor:
    """t · conj(factor), skipping the product for factor 1."""
    if isinstance(factor, complex):
        factor = factor.conjugate()
    return t if factor == 1 else t * factor


def _both(a: Tensor, b: Tensor, a_name: str = "input", b_name: str = "other") -> str:
    return f"{a_name} {shape_str(a)} and {b_name} {shape_str(b)}"


def _check_tensors(op: str, **tensors: object) -> None:
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise fail(op, f"{name} as a Tensor", f"{name} of type {type(t).__name__}")


def _check_scalars(op: str, beta: object, alpha: object) -> None:
    for name, value in (("beta", beta), ("alpha", alpha)):
        if not isinstance(value, Number):
            raise fail(op, f"{name} as a Python number", f"{name} of type {type(value).__name__}")


def _broadcasts(shape: Sequence[int], to: Sequence[int]) -> bool:
    """Whether ``shape`` broadcasts up to exactly ``to``."""
    return len(shape) <= len(to) and all(s in (1, t) for s, t in zip(reversed(shape),
                                                                   reversed(to)))


def _batch_broadcast(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether batch shapes ``a`` and ``b`` broadcast with each other."""
    return all(s == t or 1 in (s, t) for s, t in zip(reversed(a), reversed(b)))


# -- matmul -----------------------------------------------------------------------------------

class Matmul(Function):
    r"""y = a @ b,   every rank torch.matmul takes:

        (k,)    · (k,)         -> ()          the dot product  Σ_k a_k b_k
        (n, k)  · (k,)         -> (n,)        matrix · vector
        (k,)    · (k, m)       -> (m,)        vector · matrix
        (*a, n, k) · (*b, k, m) -> (*, n, m)  batched, * = broadcast(*a, *b); a 1-D operand of
                                              an N-D product is a one-row (left) or one-column
                                              (right) matrix whose unit dim the output drops.

    Backward, with g = ∂L/∂y. A vector operand is first made that one-row or one-column matrix
    and g gets the dropped dim back; then, for A (*a, n, k) and B (*b, k, m):
        ∂L/∂A = Σ_bcast g Bᴴ        (*, n, m) @ (*, m, k) -> (*, n, k) -> summed to (*a, n, k)
        ∂L/∂B = Σ_bcast Aᴴ g        (*, k, n) @ (*, n, m) -> (*, k, m) -> summed to (*b, k, m)
    (ᴴ: the conjugate transpose of the last two dims; the transpose, for real operands), and
    the unit dim is dropped again. So the dot product gives ∂a = g b, ∂b = g a, and
    matrix · vector gives ∂A = g ⊗ b (an outer product), ∂b = Aᴴ g. Where B is one matrix
    shared by a batch of A (x @ W, the linear layer's product), the batch sum of ∂L/∂B is the
    one product (rows, k)ᴴ @ (rows, m) over all rows of the batch, with no (*, k, m) temporary.

    Saves: a (for ∂L/∂b) and b (for ∂L/∂a), each only when the other side needs a gradient.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, other: Tensor) -> Tensor:
        return torch.matmul(input, other)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, other = inputs
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(input if need_b else None, other if need_a else None)
        ctx.shapes = (input.shape, other.shape)
        ctx.dtypes = (input.dtype, other.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        a, b = ctx.saved_tensors
        a_shape, b_shape = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        a_vector, b_vector = len(a_shape) == 1, len(b_shape) == 1
        # a vector as a one-row (left) or one-column (right) matrix; g with its dim back
        a_rows = (1, *a_shape) if a_vector else a_shape
        b_cols = (*b_shape, 1) if b_vector else b_shape
        if b_vector:
            g = g.unsqueeze(-1)
        if a_vector:
            g = g.unsqueeze(-2)
        grad_a = grad_b = None
        if need_a:
            b = to_dtype(b, g.dtype)
            grad_a = sum_to_shape(g.matmul(_h(b.unsqueeze(-1) if b_vector else b)), a_rows)
            grad_a = to_dtype(grad_a.squeeze(-2) if a_vector else grad_a, ctx.dtypes[0])
        if need_b:
            a = to_dtype(a, g.dtype)
            a = a.unsqueeze(-2) if a_vector else a
            if len(b_cols) == 2 and g.dim() > 2:  # one B for the whole batch: fold it into rows
                rows = math.prod(g.shape[:-1])
                grad_b = _h(a.reshape(rows, a_rows[-1])).mm(g.reshape(rows, g.shape[-1]))
            else:
                grad_b = sum_to_shape(_h(a).matmul(g), b_cols)
            grad_b = to_dtype(grad_b.squeeze(-1) if b_vector else grad_b, ctx.dtypes[1])
        return grad_a, grad_b


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.matmul` (and of ``input @ other``)."""
    _check_tensors("matmul", input=input, other=other)
    if input.dim() == 0 or other.dim() == 0:
        raise fail("matmul", "operands of at least 1 dim", _both(input, other))
    inner = other.shape[0] if other.dim() == 1 else other.shape[-2]
    if input.shape[-1] != inner:
        which = "size" if other.dim() == 1 else "second-to-last dim"
        raise fail("matmul", f"input's last dim to equal other's {which}", _both(input, other))
    if not _batch_broadcast(input.shape[:-2], other.shape[:-2]):
        raise fail("matmul", "batch dims that broadcast", _both(input, other))
    check_same_dtype("matmul", input, other=other)
    return Matmul.apply(input, other)


# -- mm, bmm ----------------------------------------------------------------------------------

class Mm(Function):
    r"""y = A B,   A: (n, k),  B: (k, m)  ->  (n, m)

    Backward, with g = ∂L/∂y of shape (n, m) (ᴴ: conjugate transpose; the transpose if real):
        ∂L/∂A = g Bᴴ        (n, m) @ (m, k) -> (n, k)
        ∂L/∂B = Aᴴ g        (k, n) @ (n, m) -> (k, m)

    Saves: A (for ∂L/∂B) and B (for ∂L/∂A), each only when the other side needs a gradient.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, mat2: Tensor) -> Tensor:
        return torch.mm(input, mat2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _save_operands(ctx, *inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _product_grads(ctx, g, *ctx.needs_input_grad)


class Bmm(Function):
    r"""y[b] = A[b] B[b],   A: (b, n, k),  B: (b, k, m)  ->  (b, n, m)   (no broadcasting)

    Backward, with g = ∂L/∂y of shape (b, n, m), batch by batch:
        ∂L/∂A = g Bᴴ        (b, n, m) @ (b, m, k) -> (b, n, k)
        ∂L/∂B = Aᴴ g        (b, k, n) @ (b, n, m) -> (b, k, m)

    Saves: A (for ∂L/∂B) and B (for ∂L/∂A), each only when the other side needs a gradient.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, mat2: Tensor) -> Tensor:
        return torch.bmm(input, mat2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _save_operands(ctx, *inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _product_grads(ctx, g, *ctx.needs_input_grad)


def _save_operands(ctx, a: Tensor, b: Tensor) -> None:
    """mm, bmm: each operand only for the other's gradient."""
    need_a, need_b = ctx.needs_input_grad
    ctx.save_for_backward(a if need_b else None, b if need_a else None)
    ctx.dtypes = (a.dtype, b.dtype)


def _product_grads(ctx, g: Tensor, need_a: bool, need_b: bool, alpha: Number = 1):
    """∂L/∂A = α̅ g Bᴴ and ∂L/∂B = α̅ Aᴴ g for same-rank A and B (mm, bmm and their add-forms):
    .matmul is mm for 2-D operands and bmm for 3-D ones."""
    a, b = ctx.saved_tensors
    grad_a = grad_b = None
    if need_a:
        grad_a = to_dtype(_scaled(g.matmul(_h(to_dtype(b, g.dtype))), alpha), ctx.dtypes[0])
    if need_b:
        grad_b = to_dtype(_scaled(_h(to_dtype(a, g.dtype)).matmul(g), alpha), ctx.dtypes[1])
    return grad_a, grad_b


def _check_product(op: str, a: Tensor, b: Tensor, rank: int, a_name: str, b_name: str) -> None:
    _check_tensors(op, **{a_name: a, b_name: b})
    if a.dim() != rank or b.dim() != rank:
        dims = "(n, k) and (k, m)" if rank == 2 else "(b, n, k) and (b, k, m)"
        raise fail(op, f"{a_name} and {b_name} of shapes {dims}", _both(a, b, a_name, b_name))
    if a.shape[-1] != b.shape[-2]:
        raise fail(op, f"{a_name}'s last dim to equal {b_name}'s second-to-last",
                   _both(a, b, a_name, b_name))
    if rank == 3 and a.shape[0] != b.shape[0]:
        raise fail(op, f"{a_name} and {b_name} of the same batch size",
                   _both(a, b, a_name, b_name))


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.mm`."""
    _check_product("mm", input, mat2, 2, "input", "mat2")
    check_same_dtype("mm", input, mat2=mat2)
    return Mm.apply(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.bmm`."""
    _check_product("bmm", input, mat2, 3, "input", "mat2")
    check_same_dtype("bmm", input, mat2=mat2)
    return Bmm.apply(input, mat2)


# -- addmm, baddbmm ---------------------------------------------------------------------------

class Addmm(Function):
    r"""y = β·C + α·(A B),   C broadcast to (n, m),  A: (n, k),  B: (k, m)  ->  (n, m)

    β = 0 ignores C, NaN and inf included (as torch does: C is not multiplied by 0).

    Backward, with g = ∂L/∂y of shape (n, m) (ᴴ, β̅, α̅: conjugates; plain for real ones):
        ∂L/∂C = Σ_bcast β̅ g        summed over the dims C was broadcast along -> C's shape
        ∂L/∂A = α̅ g Bᴴ             (n, m) @ (m, k) -> (n, k)
        ∂L/∂B = α̅ Aᴴ g             (k, n) @ (n, m) -> (k, m)
    β = 0 gives ∂L/∂C = 0 · g, as torch does (zeros where g is finite), not None.

    Saves: A (for ∂L/∂B) and B (for ∂L/∂A), each only when the other side needs a gradient;
    never C, whose gradient needs only its shape.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, mat1: Tensor, mat2: Tensor, beta: Number, alpha: Number):
        return torch.addmm(input, mat1, mat2, beta=beta, alpha=alpha)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_add_product(ctx, inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _add_product_grads(ctx, g)


class Baddbmm(Function):
    r"""y[b] = β·C[b] + α·(A[b] B[b]),   C broadcast to (b, n, m),  A: (b, n, k),  B: (b, k, m)

    β = 0 ignores C, NaN and inf included (as torch does: C is not multiplied by 0).

    Backward, with g = ∂L/∂y of shape (b, n, m) (ᴴ, β̅, α̅: conjugates; plain for real ones):
        ∂L/∂C = Σ_bcast β̅ g        summed over the dims C was broadcast along -> C's shape
        ∂L/∂A = α̅ g Bᴴ             (b, n, m) @ (b, m, k) -> (b, n, k)
        ∂L/∂B = α̅ Aᴴ g             (b, k, n) @ (b, n, m) -> (b, k, m)
    β = 0 gives ∂L/∂C = 0 · g, as torch does (zeros where g is finite), not None.

    Saves: A (for ∂L/∂B) and B (for ∂L/∂A), each only when the other side needs a gradient;
    never C, whose gradient needs only its shape.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, batch1: Tensor, batch2: Tensor, beta: Number, alpha: Number):
        return torch.baddbmm(input, batch1, batch2, beta=beta, alpha=alpha)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_add_product(ctx, inputs)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _add_product_grads(ctx, g)


def _setup_add_product(ctx, inputs) -> None:
    input, a, b, ctx.beta, ctx.alpha = inputs
    need_a, need_b = ctx.needs_input_grad[1:3]
    ctx.save_for_backward(a if need_b else None, b if need_a else None)
    ctx.input_shape, ctx.input_dtype = input.shape, input.dtype
    ctx.dtypes = (a.dtype, b.dtype)


def _add_product_grads(ctx, g: Tensor):
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = to_dtype(sum_to_shape(_scaled(g, ctx.beta), ctx.input_shape), ctx.input_dtype)
    grad_a, grad_b = _product_grads(ctx, g, *ctx.needs_input_grad[1:3], ctx.alpha)
    return grad_input, grad_a, grad_b, None, None


def _check_add_product(op: str, input: Tensor, a: Tensor, b: Tensor, rank: int,
                       beta: object, alpha: object) -> None:
    names = ("mat1", "mat2") if rank == 2 else ("batch1", "batch2")
    _check_product(op, a, b, rank, *names)
    _check_tensors(op, input=input)
    _check_scalars(op, beta, alpha)
    out = (*a.shape[:-1], b.shape[-1])
    if not _broadcasts(input.shape, out):
        raise fail(op, f"input that broadcasts to ({', '.join(map(str, out))})",
                   f"input {shape_str(input)} for {_both(a, b, *names)}")
    check_same_dtype(op, input, **{names[0]: a, names[1]: b})


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta: Number = 1,
          alpha: Number = 1) -> Tensor:
    """Explicit twin of :func:`torch.addmm`."""
    _check_add_product("addmm", input, mat1, mat2, 2, beta, alpha)
    return Addmm.apply(input, mat1, mat2, beta, alpha)


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta: Number = 1,
            alpha: Number = 1) -> Tensor:
    """Explicit twin of :func:`torch.baddbmm`."""
    _check_add_product("baddbmm", input, batch1, batch2, 3, beta, alpha)
    return Baddbmm.apply(input, batch1, batch2, beta, alpha)
