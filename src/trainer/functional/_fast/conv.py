"""Faster first-order formulations of a convolution's weight gradient on CPU.

Each computes the rule's ∂L/∂W[o, c, k] = Σ_n Σ_t g[n, o, t] · x_pad[n, c, t·s + k·d] (see
:class:`~trainer.functional.conv.Conv2d`), arranged for the kernels that run it fastest:

- unfolded: cols = the input's windows, a row per (in-channel, tap) and a column per
  position, and ∂L/∂W = cols · gᵀ, a matmul; it pays for few rows (a first layer, a 1x1
  kernel), where the swapped convolution's kernel is the whole output map;
- width-folded: the swapped convolution with the in-channels folded into the width.

Which route is faster where is measured by ``python -m benchmarks.conv_weight_grad`` and
recorded in benchmarks/README.md; the thresholds below encode it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as torch_F
from torch import Tensor

_CONV = {1: torch_F.conv1d, 2: torch_F.conv2d}

#: With at most this many rows per group (in-channels/groups × taps) the unfolded matmul
#: beats the swapped convolution; past it, unfolding copies taps × the input.
UNFOLD_MAX_ROWS = 64
#: Unfolded: with at least this much work per sample (positions × out-channels per group) a
#: matmul per sample beats copying g into one big matrix; below it, per-call overhead wins.
PER_SAMPLE_MIN_WORK = 4096


def weight_grad(x: Tensor, g: Tensor, weight_shape, p, need_bias: bool,
                reached_by_taps: Callable[..., Tensor]
                ) -> tuple[Tensor, Tensor | None] | None:
    """(∂L/∂W, ∂L/∂b or None) by the faster route for this shape, or None where the rule's
    own swapped convolution is the route. ``reached_by_taps(x, g, weight_shape, p)`` is the
    rule's x_pad cut where the taps stop."""
    unfolded = math.prod(weight_shape[1:]) <= UNFOLD_MAX_ROWS
    folded = not unfolded and x.device.type == "cpu" and p.dilation[-1] == 1
    if folded and p.pad_lo == p.pad_hi:  # the convolution pads: no padded copy of x
        return weight_grad_width_folded(x, g, weight_shape, p, p.pad_lo), None
    if unfolded:
        return weight_grad_unfolded(reached_by_taps(x, g, weight_shape, p), g, weight_shape,
                                    p, need_bias)
    if folded:
        return weight_grad_width_folded(reached_by_taps(x, g, weight_shape, p), g,
                                        weight_shape, p, (0,) * len(p.pad_lo)), None
    return None


def weight_grad_unfolded(x_pad: Tensor, g: Tensor, weight_shape, p,
                          need_bias: bool) -> tuple[Tensor, Tensor | None]:
    """cols = the input's windows, a row per (in-channel, tap) and a column per position;
    ∂L/∂W = cols · gᵀ per group, summed over samples. A row of ones appended to cols makes the
    same product give ∂L/∂b = 1 · gᵀ, saving a second pass over g."""
    rank, groups, n = len(weight_shape) - 2, p.groups, x_pad.shape[0]
    out_channels, per_group = weight_shape[:2]
    out_per_group = out_channels // groups
    kernel = weight_shape[2:]
    windows = x_pad
    for d in range(rank):  # views: (N, C, *out, *span)
        windows = windows.unfold(2 + d, p.dilation[d] * (kernel[d] - 1) + 1, p.stride[d])
    if any(dil > 1 for dil in p.dilation):  # keep every dil-th element of each span: the taps
        windows = windows[(..., *(slice(None, None, dil) for dil in p.dilation))]
    windows = windows.reshape(n, groups, per_group, *windows.shape[2:])  # (N, G, C/G, *out, *k)
    positions, rows = math.prod(g.shape[2:]), per_group * math.prod(kernel)
    out_dims, tap_dims = range(3, 3 + rank), range(3 + rank, 3 + 2 * rank)
    g_rows = g.reshape(n, groups, out_per_group, positions)
    if positions * out_per_group >= PER_SAMPLE_MIN_WORK:
        # a matmul per (sample, group) on views of g, then a sum over samples: g is not copied
        cols = windows.permute(0, 1, 2, *tap_dims, *out_dims).reshape(n, groups, rows, positions)
        ones_shape = (n, groups, 1, positions)
    else:
        # small maps: one matmul per group over (sample, position): per-call overhead rules
        cols = windows.permute(1, 2, *tap_dims, 0, *out_dims).reshape(groups, rows, -1)
        g_rows = g_rows.permute(1, 2, 0, 3).reshape(groups, out_per_group, -1)
        ones_shape = (groups, 1, n * positions)
    if need_bias:
        cols = torch.cat([cols, cols.new_ones(ones_shape)], -2)
    grads = cols.matmul(g_rows.transpose(-1, -2))  # ([N,] G, rows [+ 1], out/G)
    if grads.dim() == 4:
        grads = grads.sum(0)
    grad_weight = grads[:, :rows].transpose(1, 2).reshape(weight_shape)
    grad_bias = grads[:, rows].reshape(out_channels) if need_bias else None
    return grad_weight, grad_bias


def weight_grad_width_folded(x: Tensor, g: Tensor, weight_shape, p,
                              pad: Sequence[int]) -> Tensor:
    """The swapped convolution (the rule's formula), CPU layout, with the in-channels folded
    into the width: x channels-last with (width, channel) merged, g's taps dilated by C/G along
    it, so that output column kw·C/G + c holds tap kw of channel c. One batch, an output k·C/G
    wide, which oneDNN vectorizes better than the plain swap's k-wide map.

    ``pad`` zeros on each side (symmetric padding) go to the convolution itself, pad·C/G
    columns on the folded width: no padded copy of x. Asymmetric padding comes padded and cut
    by the caller, with pad = 0. Taps past the kernel, which the stride leftover at the far
    end adds, are cropped from the output.
    """
    rank, groups = len(weight_shape) - 2, p.groups
    n, _, *size = x.shape
    out_channels, per_group, *kernel = weight_shape
    if rank == 2:
        # Both operands channels-last (channels = samples innermost), the layout oneDNN's
        # kernel reads without reordering: (N, C, H, W) -> (H, W, C/G, G, N) in memory, seen
        # as (1, G·N, H, W·C/G); and g as (O, *out, N) in memory. ~15% faster than NCHW.
        x_folded = x.reshape(n, groups, per_group, *size).permute(3, 4, 2, 1, 0).contiguous()
        x_folded = x_folded.view(size[0], size[1] * per_group, groups * n).permute(2, 0, 1)
        x_folded = x_folded.unsqueeze(0)
        g_kernel = g.movedim(0, -1).contiguous().movedim(-1, 1)
    else:  # (N, C, L) -> (G, N, L, C/G) -> (1, G·N, L·C/G)
        x_folded = x.reshape(n, groups, per_group, *size).transpose(0, 1).movedim(2, -1)
        x_folded = x_folded.reshape(1, groups * n, size[-1] * per_group)
        g_kernel = g.transpose(0, 1)  # (O, N, *out): O splits into groups as groups= reads it
    padding = (*pad[:-1], pad[-1] * per_group)
    dilation = (*p.stride[:-1], p.stride[-1] * per_group)
    grad = _CONV[rank](x_folded, g_kernel, None, p.dilation, padding, dilation, groups)
    taps = (*kernel[:-1], kernel[-1] * per_group)
    if tuple(grad.shape[2:]) != taps:
        grad = grad[(..., *(slice(0, k) for k in taps))]
    # (1, O, *k[:-1], k[-1]·C/G) -> (O, *k, C/G) -> (O, C/G, *k)
    return grad.reshape(out_channels, *kernel, per_group).movedim(-1, 1)
