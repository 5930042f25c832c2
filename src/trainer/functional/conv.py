"""Convolutions, with both gradients written out as convolutions of their own.

∂L/∂x is a transposed convolution of g with W; ∂L/∂W is a convolution of x with g in which
batch and channels swap roles. A first-order ∂L/∂W may take a faster formulation of the same
sum on CPU (a matmul against the unfolded input, or the swapped convolution with the
in-channels folded into the width), one named call into :mod:`trainer.functional._fast.conv`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch.nn.functional as torch_F
from torch import Tensor

from ._fast import conv as fast
from ._util import (
    Function,
    check_float,
    check_same_dtype,
    fail,
    ntuple,
    records_graph,
    shape_str,
    to_dtype,
)

_CONV = {1: torch_F.conv1d, 2: torch_F.conv2d}
_CONV_TRANSPOSE = {1: torch_F.conv_transpose1d, 2: torch_F.conv_transpose2d}

class _Params(NamedTuple):
    """Non-tensor arguments, one entry per spatial dim. lo/hi: zeros padded before/after."""

    stride: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


# Conv1d and Conv2d share forward, setup_context and backward; rank = number of spatial dims.

def _forward(input: Tensor, weight: Tensor, bias: Tensor | None, p: _Params) -> Tensor:
    rank = weight.dim() - 2
    unbatched = input.dim() == rank + 1
    x = input.unsqueeze(0) if unbatched else input
    if p.pad_hi != p.pad_lo:  # 'same' with an even span: torch pads the extra zero after
        x = torch_F.pad(x, _pad_arg([0] * rank, [h - l for l, h in zip(p.pad_lo, p.pad_hi)]))
    y = _CONV[rank](x, weight, bias, p.stride, p.pad_lo, p.dilation, p.groups)
    return y.squeeze(0) if unbatched else y


def _setup_context(ctx, inputs, output) -> None:
    input, weight, bias, params = inputs
    need_x, need_w = ctx.needs_input_grad[:2]
    ctx.save_for_backward(input if need_w else None, weight if need_x else None)
    ctx.params = params
    ctx.input_shape = input.shape
    ctx.weight_shape = weight.shape
    ctx.has_bias = bias is not None


def _backward(ctx, g: Tensor):
    input, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.has_bias
    p, weight_shape = ctx.params, ctx.weight_shape
    rank = len(weight_shape) - 2
    unbatched = len(ctx.input_shape) == rank + 1
    if unbatched:
        g = g.unsqueeze(0)
    grad_input = grad_weight = grad_bias = None
    if need_x:
        input_shape = (1, *ctx.input_shape) if unbatched else ctx.input_shape
        grad_input = _input_grad(g, to_dtype(weight, g.dtype), input_shape, p)
        if unbatched:
            grad_input = grad_input.squeeze(0)
    if need_w:
        x = to_dtype(input, g.dtype)
        x = x.unsqueeze(0) if unbatched else x
        grad_weight, grad_bias = _weight_grad(x, g, weight_shape, p, need_b)
    if need_b and grad_bias is None:
        grad_bias = g.sum([0, *range(2, rank + 2)])
    return grad_input, grad_weight, grad_bias, None


def _input_grad(g: Tensor, weight: Tensor, input_shape, p: _Params) -> Tensor:
    """∂L/∂x = conv_transpose(g, W): each output position hands g back through the taps."""
    rank = weight.dim() - 2
    output_padding, crop = [], False
    for d in range(rank):
        # conv_transpose makes (out - 1)·s + dil·(k - 1) + 1 - 2·lo + output_padding positions;
        # output_padding adds back the stride leftover the forward never read. Negative means
        # 'same' padded one more zero after than before: that position is cropped.
        spanned = (g.shape[2 + d] - 1) * p.stride[d] + p.dilation[d] * (weight.shape[2 + d] - 1) + 1
        extra = input_shape[2 + d] - spanned + 2 * p.pad_lo[d]
        crop = crop or extra < 0
        output_padding.append(max(extra, 0))
    grad = _CONV_TRANSPOSE[rank](g, weight, None, p.stride, p.pad_lo, output_padding, p.groups,
                                 p.dilation)
    if crop:
        grad = grad[(..., *(slice(0, n) for n in input_shape[2:]))]
    return grad


def _weight_grad(x: Tensor, g: Tensor, weight_shape, p: _Params,
                 need_bias: bool) -> tuple[Tensor, Tensor | None]:
    """∂L/∂W[o, c, k] = Σ_n Σ_t g[n, o, t] · x_pad[n, c, t·stride + k·dilation]: the swapped
    convolution of :func:`_weight_grad_swapped`. Also ∂L/∂b when a faster formulation gets it
    for free (else None)."""
    if x.shape[0] == 0:  # empty batch: nothing to sum
        return g.new_zeros(weight_shape), g.new_zeros(weight_shape[0]) if need_bias else None
    if not records_graph():
        faster = fast.weight_grad(x, g, weight_shape, p, need_bias, _reached_by_taps)
        if faster is not None:
            return faster
    return _weight_grad_swapped(_reached_by_taps(x, g, weight_shape, p), g, weight_shape,
                                p), None


def _reached_by_taps(x: Tensor, g: Tensor, weight_shape, p: _Params) -> Tensor:
    """x_pad, cut where the taps stop: the stride leftover at the far end meets no tap."""
    if any(p.pad_lo) or any(p.pad_hi):
        x = torch_F.pad(x, _pad_arg(p.pad_lo, p.pad_hi))
    used = [(n_out - 1) * s + d * (k - 1) + 1
            for n_out, s, d, k in zip(g.shape[2:], p.stride, p.dilation, weight_shape[2:])]
    if list(x.shape[2:]) != used:
        x = x[(..., *(slice(0, n) for n in used))]
    return x


def _weight_grad_swapped(x_pad: Tensor, g: Tensor, weight_shape, p: _Params) -> Tensor:
    """A convolution of x with g where batch and channels swap roles: channels = samples (the
    sum over n), kernel = g's map, stride and dilation trade places; per group. x_pad is cut
    to the extent the taps reach, so the output is exactly the kernel's size."""
    rank, groups = len(weight_shape) - 2, p.groups
    n, _, *size = x_pad.shape
    per_group = weight_shape[1]
    x_swapped = x_pad.reshape(n, groups, per_group, *size).transpose(0, 2)
    x_swapped = x_swapped.reshape(per_group, groups * n, *size)
    # g as the kernel, (O, N, *out): O splits into groups, as groups= reads it
    grad = _CONV[rank](x_swapped, g.transpose(0, 1), None, p.dilation, 0, p.stride, groups)
    return grad.transpose(0, 1)  # (O, C/G, *k)


def _pad_arg(lo: Sequence[int], hi: Sequence[int]) -> list[int]:
    """torch_F.pad's order: last dim first, (before, after) per dim."""
    return [pad for d in reversed(range(len(lo))) for pad in (lo[d], hi[d])]


class Conv1d(Function):
    r"""y[n, o, t] = b[o] + Σ_{c ∈ group(o)} Σ_k W[o, c, k] · x_pad[n, c, t·s + k·d]

    x: (N, C, L) or (C, L),  W: (O, C/groups, K),  s = stride, d = dilation, x_pad = x with lo
    zeros before and hi after (lo = hi, except 'same' with an even span d·(K-1)).
    Backward, with g = ∂L/∂y of shape (N, O, L_out):
        ∂L/∂x = conv_transpose1d(g, W, stride=s, padding=lo, dilation=d, groups,
                                 output_padding = the stride leftover)          -> (N, C, L)
        ∂L/∂W = conv1d(x_padᵀ, gᵀ, stride=d, dilation=s) per group, ᵀ swapping batch and
                channels, x_pad cut where the taps stop          (first order on CPU:
                fast.weight_grad, the same sum as a matmul or a folded convolution)
        ∂L/∂b = Σ_{n,t} g
    Saves: x (for ∂L/∂W) and W (for ∂L/∂x), each only when the other side needs a gradient.
    Not the bias, nor the padded copy of x that 'same' with an even span makes.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None, params: _Params) -> Tensor:
        return _forward(input, weight, bias, params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _backward(ctx, g)


class Conv2d(Function):
    r"""y[n, o, i, j] = b[o] + Σ_{c∈group(o)} Σ_{p,q} W[o,c,p,q] · x_pad[n,c, i·s₀+p·d₀, j·s₁+q·d₁]

    x: (N, C, H, W) or (C, H, W),  W: (O, C/groups, KH, KW),  s = stride, d = dilation,
    x_pad = x with lo zeros before and hi after (lo = hi, except 'same' with an even span).
    Backward, with g = ∂L/∂y of shape (N, O, H_out, W_out):
        ∂L/∂x = conv_transpose2d(g, W, stride=s, padding=lo, dilation=d, groups,
                                 output_padding = the stride leftover)          -> (N, C, H, W)
        ∂L/∂W = conv2d(x_padᵀ, gᵀ, stride=d, dilation=s) per group, ᵀ swapping batch and
                channels, x_pad cut where the taps stop          (first order on CPU:
                fast.weight_grad, the same sum as a matmul or a folded convolution)
        ∂L/∂b = Σ_{n,i,j} g
    Saves: x (for ∂L/∂W) and W (for ∂L/∂x), each only when the other side needs a gradient.
    Not the bias, nor the padded copy of x that 'same' with an even span makes.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None, params: _Params) -> Tensor:
        return _forward(input, weight, bias, params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _backward(ctx, g)


def _params(op: str, rank: int, input: Tensor, weight: Tensor, bias: Tensor | None, stride,
            padding, dilation, groups) -> _Params:
    """Validate the arguments where torch would refuse them; expand them to rank-tuples."""
    if input.dim() not in (rank + 1, rank + 2):
        raise fail(op, f"{rank + 1}-D (unbatched) or {rank + 2}-D (batched) input",
                   f"input {shape_str(input)}")
    if weight.dim() != rank + 2:
        raise fail(op, f"{rank + 2}-D weight (out, in/groups, *kernel)",
                   f"weight {shape_str(weight)}")
    if not isinstance(groups, int) or groups < 1:
        raise fail(op, "groups a positive int", f"groups={groups}")
    stride = ntuple(op, "stride", stride, rank)
    dilation = ntuple(op, "dilation", dilation, rank)
    if any(s < 1 for s in stride):
        raise fail(op, "positive stride", f"stride={stride}")
    if any(d < 1 for d in dilation):
        raise fail(op, "positive dilation", f"dilation={dilation}")
    kernel = weight.shape[2:]
    if 0 in kernel:
        raise fail(op, "a kernel of size >= 1 in every spatial dim", f"weight {shape_str(weight)}")
    if isinstance(padding, str):
        if padding == "valid":
            pad_lo = pad_hi = (0,) * rank
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise fail(op, "stride 1 with padding='same' (as torch)", f"stride={stride}")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pad_lo = tuple(t // 2 for t in total)
            pad_hi = tuple(t - t // 2 for t in total)
        else:
            raise fail(op, "padding 'same', 'valid', an int or a tuple", f"padding={padding!r}")
    else:
        pad_lo = pad_hi = ntuple(op, "padding", padding, rank)
        if any(pad < 0 for pad in pad_lo):
            raise fail(op, "non-negative padding", f"padding={pad_lo}")

    out_channels, per_group = weight.shape[:2]
    if out_channels < groups or out_channels % groups:
        raise fail(op, f"weight's out channels divisible by groups={groups} (and at least it)",
                   f"weight {shape_str(weight)}")
    channels = input.shape[-rank - 1]
    if channels != per_group * groups:
        raise fail(op, f"input with {per_group * groups} channels for weight "
                   f"{shape_str(weight)} and groups={groups}",
                   f"input {shape_str(input)} with {channels} channels")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_channels):
        raise fail(op, f"bias of shape ({out_channels},) for weight {shape_str(weight)}",
                   f"bias {shape_str(bias)}")
    spatial = input.shape[-rank:]
    padded = tuple(n + lo + hi for n, lo, hi in zip(spatial, pad_lo, pad_hi))
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if any(size < s for size, s in zip(padded, span)):
        raise fail(op, f"padded input size >= dilated kernel size {span}",
                   f"padded input size {padded} for input {shape_str(input)}")
    if 0 in spatial and 0 not in input.shape[:-rank]:
        raise fail(op, "non-empty spatial dims (only the batch or channels may be empty)",
                   f"input {shape_str(input)}")
    check_float(op, "input", input)  # torch has no integer or bool convolution kernels
    check_same_dtype(op, input, weight=weight, bias=bias)
    return _Params(stride, pad_lo, pad_hi, dilation, groups)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups=1) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.conv1d`."""
    params = _params("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)
    return Conv1d.apply(input, weight, bias, params)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups=1) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.conv2d`."""
    params = _params("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)
    return Conv2d.apply(input, weight, bias, params)
