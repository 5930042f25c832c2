"""Tiled max-pooling on CPU (kernel = stride, no padding or dilation: 2x2/2, the common case).

Each tap is a strided view of x, one tap per window, so the max is an elementwise maximum of
kH·kW views, and the window-local argmax is
    a = Σ_{t < K−1} Π_{s ≤ t} [x_s ≠ y]      (the number of leading taps that are not the max,
                                             i.e. the first maximal tap, as native picks it)
all vectorized elementwise ops, where native's NCHW kernel is slow on CPU (measured by
``python -m benchmarks.layers --only max_pool``; see benchmarks/README.md). Backward writes
g · [a = t] into each tap's view of a fresh buffer: no scatter, no int64 positions. Native
semantics for NaN (the last NaN wins) and for non-finite g (0 off the argmax, not NaN·0) take
the general path of the rule, as do torch.compile, torch.func transforms and double backward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..pool import Window


def tiled(window: Window, ceil_mode: bool, in_hw, device) -> bool:
    """Whether the windows tile the input (and the fast path applies)."""
    kernel, stride, padding, dilation = window
    if (kernel != stride or any(padding) or any(k > 1 and d != 1 for k, d in zip(kernel, dilation))
            or kernel[0] * kernel[1] > 256 or device.type != "cpu"):
        return False
    if ceil_mode and any(size % k for size, k in zip(in_hw, kernel)):
        return False  # ceil_mode's overhanging last window
    return not (torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active())


def tap_views(t: Tensor, window: Window, out_hw, spatial_dims: int) -> list[Tensor]:
    """View of tap (kh, kw) of every window, (…, OH, OW) (or (…, OW)), in window order."""
    (kernel_h, kernel_w), (out_h, out_w) = window.kernel, out_hw
    views = []
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            cols = slice(kw, out_w * kernel_w, kernel_w)
            views.append(t[..., cols] if spatial_dims == 1
                         else t[..., kh:out_h * kernel_h:kernel_h, cols])
    return views


def tiled_max_pool(input: Tensor, window: Window, track: bool, spatial_dims: int, in_hw):
    """(y, window-local argmax as uint8; empty when untracked), or None when y has a NaN."""
    out_hw = tuple(size // k for size, k in zip(in_hw, window.kernel))
    taps = tap_views(input, window, out_hw, spatial_dims)
    if len(taps) == 1:
        out = taps[0].clone()
    else:
        out = torch.maximum(taps[0], taps[1])
        for tap in taps[2:]:
            torch.maximum(out, tap, out=out)
    if not track:
        return out, torch.empty(0, dtype=torch.uint8, device=input.device)
    if torch.isnan(out.sum()):  # a NaN somewhere (or inf − inf: the general path all the same)
        return None
    # Π_{s ≤ t} [x_s ≠ y] as 0/1 bytes; bool read as uint8 runs the vectorized byte kernels
    leading = torch.ne(taps[0], out).view(torch.uint8)
    local = leading.clone()
    for tap in taps[1:-1]:
        local.add_(leading.mul_(torch.ne(tap, out).view(torch.uint8)))
    return out, local


def tiled_max_pool_backward(g: Tensor, local: Tensor, input_shape, window: Window,
                            spatial_dims: int, in_hw, out_hw) -> Tensor:
    """∂L/∂x = g·[a = t] written into tap t's view of a fresh buffer, for every tap t."""
    covered = all(size == o * k for size, o, k in zip(in_hw, out_hw, window.kernel))
    grad = g.new_empty(input_shape) if covered else g.new_zeros(input_shape)
    hit = torch.empty_like(g)
    for tap, view in enumerate(tap_views(grad, window, out_hw, spatial_dims)):
        torch.mul(g, torch.eq(local, tap, out=hit), out=view)
    return grad
