"""Padding (constant, reflect, replicate, circular), with its gradient written out.

The modes are separable: padding two dims is padding one, then the other (a corner of a 2-D
reflect pad is the reflection of a reflection). So the gradient folds g back one padded dim at
a time, each fold the adjoint of that dim's 1-D pad, made of slices, flips, sums and cat.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from ._util import Function, fail, shape_str

__all__ = ["pad"]

MODES = ("constant", "reflect", "replicate", "circular")


# --- the adjoint of one dim's pad ------------------------------------------------------------


def _zero_extend(t: Tensor, dim: int, before: int, after: int) -> Tensor:
    """``t`` with ``before`` zeros ahead of it and ``after`` zeros behind it along ``dim``."""
    if before == 0 and after == 0:
        return t

    def zeros(n: int) -> Tensor:  # g.new_zeros: batched under vmap, as g is
        shape = list(t.shape)
        shape[dim] = n
        return t.new_zeros(shape)

    parts = ([zeros(before)] if before else []) + [t] + ([zeros(after)] if after else [])
    return torch.cat(parts, dim)


def _add_at(t: Tensor, dim: int, start: int, piece: Tensor) -> Tensor:
    """``t`` with ``piece`` added onto its entries start, start + 1, ... along ``dim``."""
    count = piece.shape[dim]
    if count == 0:
        return t
    head = t.narrow(dim, 0, start)
    middle = t.narrow(dim, start, count)
    tail = t.narrow(dim, start + count, t.shape[dim] - start - count)
    return torch.cat([head, middle + piece, tail], dim)


def _fold(g: Tensor, dim: int, size: int, left: int, right: int, mode: str) -> Tensor:
    """∂L/∂x along one ``dim`` of x's ``size``, padded by (left, right) in ``mode``, from g."""
    if mode == "circular":  # crop first (negative pads), then wrap the cropped c around
        crop_left, crop_right = max(-left, 0), max(-right, 0)
        kept = size - crop_left - crop_right
        wrap_left, wrap_right = max(left, 0), max(right, 0)
        grad = g.narrow(dim, wrap_left, kept)
        grad = _add_at(grad, dim, kept - wrap_left, g.narrow(dim, 0, wrap_left))  # c's end
        grad = _add_at(grad, dim, 0, g.narrow(dim, wrap_left + kept, wrap_right))  # c's start
        return _zero_extend(grad, dim, crop_left, crop_right)
    # The output is the span [lo, hi) of x's line extended past both ends, u = j − left.
    lo, hi = -left, size + right
    first = min(max(lo, 0), size)  # x's own entries in the span: [first, first + count)
    count = max(min(hi, size) - first, 0)
    center = g.narrow(dim, first - lo if count else 0, count)
    grad = _zero_extend(center, dim, first, size - first - count)
    if mode == "constant":  # the fill value takes no gradient
        return grad
    before_count = max(min(hi, 0) - lo, 0)  # entries at u < 0
    after_start = max(lo, size)  # entries at u ≥ size
    after_count = max(hi - after_start, 0)
    before = g.narrow(dim, 0, before_count)
    after = g.narrow(dim, after_start - lo if after_count else 0, after_count)
    if mode == "reflect":  # u < 0 mirrors x[−u]; u ≥ size mirrors x[2(size − 1) − u]
        grad = _add_at(grad, dim, -lo - before_count + 1, before.flip(dim))
        return _add_at(grad, dim, 2 * size - 1 - hi, after.flip(dim))
    # replicate: every entry before x is x[0], every entry after it x[size − 1]
    if before_count:
        grad = _add_at(grad, dim, 0, before.sum(dim, keepdim=True))
    if after_count:
        grad = _add_at(grad, dim, size - 1, after.sum(dim, keepdim=True))
    return grad


class Pad(Function):
    r"""y = x padded along its last len(pad) / 2 dims, dim −(k+1) by (pad[2k], pad[2k+1]) =
    (left, right); a negative side crops that many entries instead. Along one dim of size L,
    with u = j − left the output's position on x's line (u ∈ [−left, L + right)):
        constant:   y[j] = x[u] for 0 ≤ u < L, else value
        reflect:    y[j] = x[|u|] for u < L, x[2(L − 1) − u] for u ≥ L   (left, right < L)
        replicate:  y[j] = x[clamp(u, 0, L − 1)]
        circular:   c = x cropped by the negative sides (C entries), then
                    y = (c[C − a:], c, c[:b]) with a, b the positive sides (a, b ≤ C)

    Backward, with g = ∂L/∂y, one dim at a time (the modes are separable):
        constant:   ∂L/∂x[l] = g[l + left]: the slice of g over x, zeros where x was cropped
        reflect:    ∂L/∂x = that slice, plus flip(g's left border) added onto x[1..a] and
                    flip(g's right border) onto x[L − 1 − b .. L − 2]: the rows each mirrors
        replicate:  ∂L/∂x = that slice, plus Σ g's left border onto x[0] and Σ g's right
                    border onto x[L − 1]
        circular:   ∂L/∂c = g over c, plus g's left wrap added onto c's last a entries and
                    g's right wrap onto its first b; ∂L/∂x = ∂L/∂c, zeros where x was cropped
    each a narrow, flip, sum and cat of g, so double backward differentiates them in turn.

    Saves: nothing: the input's shape, the pads and the mode say where every entry of g goes.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, pads: tuple[int, ...], mode: str, value: float | None):
        return torch_F.pad(input, pads, mode, value)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, pads, mode, _ = inputs
        ctx.input_shape = tuple(input.shape)
        ctx.pads = pads
        ctx.mode = mode

    @staticmethod
    def backward(ctx, g: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        grad = g
        for k in range(len(ctx.pads) // 2):
            dim = -(k + 1)
            left, right = ctx.pads[2 * k], ctx.pads[2 * k + 1]
            grad = _fold(grad, dim, ctx.input_shape[dim], left, right, ctx.mode)
        return grad, None, None, None


# --- argument checks, as torch makes them ----------------------------------------------------


def _pads(input: Tensor, pad: Sequence[int], mode: str, value) -> tuple[int, ...]:
    """Validate the pads and the mode as torch does; the pads as a tuple of ints."""
    try:
        if isinstance(pad, Tensor):
            raise TypeError
        pads = tuple(operator.index(p) for p in pad)
    except TypeError:
        raise fail("pad", "pad as a sequence of ints", f"pad={pad!r}") from None
    if len(pads) % 2:
        raise fail("pad", "pad of even length, a (left, right) pair per dim",
                   f"pad={pads} of length {len(pads)}")
    if len(pads) // 2 > input.dim():
        raise fail("pad", f"at most {2 * input.dim()} pads for input {shape_str(input)}",
                   f"pad={pads}")
    if mode not in MODES:
        raise fail("pad", "mode 'constant', 'reflect', 'replicate' or 'circular'",
                   f"mode={mode!r}")
    dims = len(pads) // 2
    pairs = [(input.shape[-(k + 1)], pads[2 * k], pads[2 * k + 1]) for k in range(dims)]
    if mode == "constant":
        for size, left, right in pairs:  # torch crops first, then pads
            if size - max(-left, 0) - max(-right, 0) < 0:
                raise fail("pad", "negative pads that crop no more than the input holds",
                           f"pad={pads} for input {shape_str(input)}")
        return pads
    if value is not None and value != 0:
        raise fail("pad", f"no fill value with mode={mode!r}", f"value={value!r}")
    if dims not in (1, 2, 3) or input.dim() not in (dims + 1, dims + 2):
        raise fail("pad", f"for mode={mode!r}: 2, 4 or 6 pads, padding the last 1, 2 or 3 "
                          "dims of an input with one or two dims more",
                   f"pad={pads} for input {shape_str(input)}")
    if mode != "circular" and 0 in input.shape[-(dims + 1):]:
        raise fail("pad", f"for mode={mode!r}: non-zero sizes but the batch dim",
                   f"input {shape_str(input)}")
    smallest = 1 if dims == 1 else 0  # torch's 1-D reflect and replicate refuse an empty output
    for size, left, right in pairs:
        if mode == "reflect" and max(left, right) >= size:
            raise fail("pad", "reflect pads smaller than the dim they pad",
                       f"pad={pads} for input {shape_str(input)}")
        if mode != "circular" and size + left + right < smallest:
            raise fail("pad", f"for mode={mode!r}: output sizes >= {smallest} where it pads",
                       f"pad={pads} for input {shape_str(input)}")
        kept = size - max(-left, 0) - max(-right, 0)
        if mode == "circular" and (kept < 0 or max(left, right) > kept):
            raise fail("pad", "circular pads no larger than the dim they pad, after cropping",
                       f"pad={pads} for input {shape_str(input)}")
    return pads


# --- public op -------------------------------------------------------------------------------


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant",
        value: float | None = None) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.pad`."""
    return Pad.apply(input, _pads(input, pad, mode, value), mode, value)
