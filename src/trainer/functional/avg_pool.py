"""Average pooling, with its gradient written out: each g spreads evenly over its window.

A 1-D pool is the 2-D pool of a (1, L) plane with a (1, k) window, as for max pooling; the
window checks are :mod:`trainer.functional.pool`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from ._util import Function, fail, to_dtype
from .pool import _pool_window
from .window import Window, spatial, window_divisors

__all__ = ["avg_pool1d", "avg_pool2d"]

def spread_over_windows(values: Tensor, dim: int, size: int, kernel: int, stride: int,
                        padding: int) -> Tensor:
    """Adjoint of summing windows along ``dim`` (−1 or −2), onto an input dim of ``size``:
    out[t] = Σ_{o : window o covers t} values[o].

    Taps first..first+m−1 (m ≤ stride) of all windows land on disjoint positions
    o·stride − padding + first + r, so each such group is one expand + flatten, shifted into
    place by a (possibly cropping) pad; the ceil(kernel / stride) groups are added up.
    """
    if kernel == 1 and stride == 1 and padding == 0:
        return values  # identity: the height of a 1-D pool
    count = values.shape[dim]
    total = None
    for first in range(0, kernel, stride):
        taps = min(stride, kernel - first)
        ends = (first - padding, size + padding - first - count * stride)
        if dim == -1:  # (…, O) -> (…, O, taps) -> (…, O·stride)
            group = values.unsqueeze(-1).expand(*values.shape, taps)
            gap, shift = (0, stride - taps), ends
        else:  # (…, O, W) -> (…, O, taps, W) -> (…, O·stride, W)
            group = values.unsqueeze(-2).expand(*values.shape[:-1], taps, values.shape[-1])
            gap, shift = (0, 0, 0, stride - taps), (0, 0, *ends)
        if taps < stride:  # stride > kernel: positions between windows get nothing
            group = torch_F.pad(group, gap)
        group = group.flatten(-3, -2) if dim == -2 else group.flatten(-2)
        # Widen, then crop: one pad call cannot crop more than the tensor holds before widening
        # (a window in ceil_mode's overhang can start past the input's end).
        widen, crop = [max(e, 0) for e in shift], [min(e, 0) for e in shift]
        if any(widen):
            group = torch_F.pad(group, widen)
        if any(crop):
            group = torch_F.pad(group, crop)
        total = group if total is None else total + group
    return total


def _avg_pool_setup_context(ctx, inputs, output):
    input, window, _, count_include_pad, divisor_override = inputs
    ctx.input_shape = tuple(input.shape)
    ctx.output_shape = tuple(output.shape)
    ctx.window = window
    ctx.count_include_pad = count_include_pad
    ctx.divisor_override = divisor_override


def _avg_pool_backward(ctx, g: Tensor, spatial_dims: int) -> Tensor:
    in_hw = spatial(ctx.input_shape, spatial_dims)
    out_hw = spatial(ctx.output_shape, spatial_dims)
    lead = ctx.input_shape[:-spatial_dims]
    (kernel_h, kernel_w), (stride_h, stride_w), (pad_h, pad_w), _ = ctx.window
    if ctx.divisor_override is not None:
        divisor: float | Tensor = float(ctx.divisor_override)
    else:
        per_dim = [window_divisors(out_hw[d], in_hw[d], ctx.window.kernel[d], ctx.window.stride[d],
                                   ctx.window.padding[d], ctx.count_include_pad) for d in range(2)]
        if len(set(per_dim[0])) == 1 and len(set(per_dim[1])) == 1:
            divisor = float(per_dim[0][0] * per_dim[1][0])
        else:  # windows cut by padding or by ceil_mode divide by fewer taps
            exact = torch.promote_types(g.dtype, torch.float32)  # bf16 can't hold 17·17 = 289
            rows, cols = (torch.tensor(d, dtype=exact, device=g.device) for d in per_dim)
            divisor = (rows[:, None] * cols[None, :]).reshape(out_hw[-spatial_dims:])
    share = to_dtype(g / divisor, g.dtype).reshape(*lead, *out_hw)
    if (stride_h, stride_w) == (kernel_h, kernel_w):
        # windows tile the plane: each output's share fills its own kH×kW block, in one copy
        blocks = share[..., :, None, :, None].expand(*lead, out_hw[0], kernel_h, out_hw[1],
                                                     kernel_w)
        spread = blocks.reshape(*lead, out_hw[0] * kernel_h, out_hw[1] * kernel_w)
        crop = (-pad_w, in_hw[1] + pad_w - spread.shape[-1],
                -pad_h, in_hw[0] + pad_h - spread.shape[-2])
        if any(crop):  # drop the padding and ceil_mode's overhang; zero-fill unreached rows
            spread = torch_F.pad(spread, crop)
    else:  # the ones kernel is rank one: spread along W, then along H
        spread = spread_over_windows(share, -1, in_hw[1], kernel_w, stride_w, pad_w)
        spread = spread_over_windows(spread, -2, in_hw[0], kernel_h, stride_h, pad_h)
    return spread.reshape(ctx.input_shape)


class AvgPool2d(Function):
    r"""y[n,c,i,j] = (1 / D[i,j]) Σ_{kh,kw} x[n,c, i·sH − pH + kh, j·sW − pW + kw]
    (padding reads as 0). D[i,j] = divisor_override, or the window's taps inside the padded
    input (count_include_pad) or inside the input alone (not count_include_pad).

    Backward, with g = ∂L/∂y: every tap of window (i, j) gets g[i,j] / D[i,j]:
        ∂L/∂x[n,c,h,w] = Σ_{(i,j) whose window covers (h,w)} g[n,c,i,j] / D[i,j]
    i.e. a transposed convolution of g / D with a ones kH×kW kernel, cropped to x. The ones
    kernel is rank one, so it runs as a spread along W then along H, each ceil(k/s) interleaved
    expand-and-pad copies (one block copy when the windows tile).

    Saves: nothing; D is recomputed from the shapes and the options.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, window: Window, ceil_mode: bool, count_include_pad: bool,
                divisor_override: int | None) -> Tensor:
        return torch_F.avg_pool2d(input, window.kernel, window.stride, window.padding, ceil_mode,
                                  count_include_pad, divisor_override)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _avg_pool_setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _avg_pool_backward(ctx, g, 2), None, None, None, None


class AvgPool1d(Function):
    r"""y[n,c,j] = (1 / D[j]) Σ_k x[n,c, j·s − p + k]  (padding reads as 0), with D[j] the
    window's taps inside the padded input (count_include_pad) or inside the input alone.

    Backward, with g = ∂L/∂y:
        ∂L/∂x[n,c,l] = Σ_{j whose window covers l} g[n,c,j] / D[j]
    a ones-kernel transposed convolution of g / D, as ceil(k/s) interleaved expand-and-pad
    copies (one block copy when the windows tile).

    Saves: nothing; D is recomputed from the shapes and the options.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, window: Window, ceil_mode: bool, count_include_pad: bool,
                divisor_override: None) -> Tensor:
        k, s, p, _ = (v[1] for v in window)
        return torch_F.avg_pool1d(input, k, s, p, ceil_mode, count_include_pad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _avg_pool_setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _avg_pool_backward(ctx, g, 1), None, None, None, None




# --- public ops ------------------------------------------------------------------------------


def avg_pool1d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.avg_pool1d`."""
    window = _pool_window("avg_pool1d", input, 1, kernel_size, stride, padding, 1, ceil_mode)
    return AvgPool1d.apply(input, window, bool(ceil_mode), bool(count_include_pad), None)


def avg_pool2d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.avg_pool2d`."""
    window = _pool_window("avg_pool2d", input, 2, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise fail("avg_pool2d", "divisor_override != 0", "divisor_override=0")
    return AvgPool2d.apply(input, window, bool(ceil_mode), bool(count_include_pad),
                           divisor_override)
