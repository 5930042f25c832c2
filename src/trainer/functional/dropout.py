"""Dropout whose mask is never stored: backward regenerates it from a 4-byte seed."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._fast import dropout as fast
from ._util import Function, batched, check_float, fail, records_graph

# lowbias32 (C. Wellons' integer hash): two multiply–xorshift rounds with full avalanche.
_WEYL_STEP = 0x9E3779B1 - (1 << 32)  # ≈ 2³²/φ, as an int32: spreads consecutive indices
_MIX_1 = 0x7FEB352D
_MIX_2 = 0x846CA68B - (1 << 32)
_INT32_COUNTER_LIMIT = 1 << 31  # above this many elements the counter is folded from int64


class Dropout(Function):
    r"""y = x · m / (1 − p),   m_i = [h(seed, i) ≥ t] ~ Bernoulli(1 − p), independent over i

    h is a counter-based hash: a pure function of the seed and the element's flat index, so
    the mask is the same every time it is computed, on any device and under torch.compile.

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · m / (1 − p)           (linear in g, so double backward just repeats it)
    p = 1 gives y = x · 0 and ∂L/∂x = 0, as torch does.

    Saves: only the int32 seed (4 bytes, vs. torch's float mask of x's size): backward
    recomputes m from it, at the cost of hashing again (cheaper than torch's CPU RNG, and
    fused into one kernel by inductor). ``inplace=True`` scales x in place (``mark_dirty``), as
    torch does; nothing that backward needs lives in x.

    m is applied as a 0/1 tensor of x's dtype (``_keep_like``), not as a bool or uint8 view:
    on CPU a float × uint8 product takes torch's slow mixed-dtype path, and inductor's CPU code
    for a bool mask viewed as uint8 misreads the vectorised tail (sizes not a multiple of 16).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, seed: Tensor, p: float, inplace: bool) -> Tensor:
        if p == 1.0:
            out = input.mul_(0.0) if inplace else input * 0.0
        else:
            keep = _keep_like(seed, input, p)
            if inplace:
                out = input.mul_(keep)
            elif batched(input):  # under vmap, x or the mask may be batched and the other not
                out = input * keep
            else:
                out = keep.mul_(input)  # into the mask's fresh buffer
            out = out.mul_(1.0 / (1.0 - p))
        # In place, the input object itself, as mark_dirty (and dynamo) require.
        return input if inplace else out

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, seed, p, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.p = p
        ctx.save_for_backward(seed if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (seed,) = ctx.saved_tensors
        if ctx.p == 1.0:
            grad = g * 0.0
        else:
            keep = _keep_like(seed, g, ctx.p)  # m, recomputed from the seed
            if not records_graph() and not batched(g):
                grad = fast.dropout_backward(g, keep, ctx.p)
            else:
                grad = g * keep / (1.0 - ctx.p)  # ∂L/∂x = g · m / (1 − p)
        return grad, None, None, None


def _keep_like(seed: Tensor, like: Tensor, p: float) -> Tensor:
    """The keep mask m for ``like``'s shape, as a fresh 0/1 tensor of its dtype and device: a
    pure function of the seed, True with probability 1 − p.

    Hashes each flat index with the seed into a uniform int32 h (see :func:`_hash`), then keeps
    h ≥ t with t = −2³¹ + round(p·2³²), so that P(keep) = 1 − p to within 2⁻³².
    """
    out_ok = not batched(like)  # torch.func transforms and batched grads take no out=
    h = _hash(seed, like.shape, out_ok=out_ok)
    threshold = min(round(p * 2.0**32) - (1 << 31), (1 << 31) - 1)
    if not out_ok:
        return (h >= threshold).to(like.dtype)
    # A comparison writing bool (or to another dtype) runs torch's scalar loop on CPU; into
    # int32, its input's dtype, it is vectorised. The copy then casts to like's dtype.
    keep = torch.ge(h, threshold, out=h)
    return torch.empty(like.shape, dtype=like.dtype, device=like.device).copy_(keep)


def _hash(seed: Tensor, shape: torch.Size, out_ok: bool) -> Tensor:
    """lowbias32 of seed + i·φ32 for each flat index i, as a fresh int32 tensor of ``shape``.

    int32 arithmetic wraps mod 2³²; ``>>`` is arithmetic, so each shift is masked to make it
    logical. With ``out_ok`` the shifts share one scratch buffer instead of allocating three.
    """
    h = torch.add(seed, _counter(math.prod(shape), seed.device).view(shape), alpha=_WEYL_STEP)
    scratch = torch.empty_like(h) if out_ok else None
    for shift, low_bits, multiplier in ((16, 0xFFFF, _MIX_1), (15, 0x1FFFF, _MIX_2),
                                        (16, 0xFFFF, None)):
        if out_ok:
            shifted = torch.bitwise_right_shift(h, shift, out=scratch)
        else:
            shifted = h.bitwise_right_shift(shift)
        h.bitwise_xor_(shifted.bitwise_and_(low_bits))
        if multiplier is not None:
            h.mul_(multiplier)
    return h


def _counter(numel: int, device: torch.device) -> Tensor:
    """0, 1, …, numel − 1 as int32; past 2³¹ elements the high word is folded into the low one
    so that no two elements share a counter modulo 2³²."""
    if numel <= _INT32_COUNTER_LIMIT:
        return torch.arange(numel, dtype=torch.int32, device=device)
    index = torch.arange(numel, dtype=torch.int64, device=device)
    folded = torch.add(index, index.bitwise_right_shift(32), alpha=_MIX_1).bitwise_and_(0xFFFFFFFF)
    # [0, 2³²) → the int32 with the same low 32 bits
    return folded.sub_(folded.bitwise_right_shift(31).bitwise_left_shift_(32)).to(torch.int32)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.dropout`.

    Like torch, it returns ``input`` itself (no graph node) when not training, when p = 0 and
    for an empty input. The mask is drawn from torch's global RNG (one int32 seed per call), so
    ``torch.manual_seed`` makes it reproducible; it does not match torch's own mask.
    ``inplace=True`` mutates ``input`` as torch does, except under ``torch.func`` transforms
    (vmap, grad), where the same values are returned out of place.
    """
    if p < 0.0 or p > 1.0:
        raise fail("dropout", "dropout probability p in [0, 1]", f"p={p}")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    check_float("dropout", "input", input)
    seed = torch.randint(-(1 << 31), 1 << 31, (), dtype=torch.int32, device=input.device)
    # functorch's generated vmap rule cannot keep an in-place input's identity (mark_dirty
    # needs it), so under torch.func transforms the result is computed out of place.
    inplace = inplace and not torch._C._are_functorch_transforms_active()
    return Dropout.apply(input, seed, float(p), inplace)
