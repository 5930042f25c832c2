"""Window arithmetic of the pools: where each window of a (kernel, stride, padding, dilation)
grid starts, which taps fall inside the input, how flat argmax indices map to a window's own
taps, and each window's divisor. Plain index math on shapes, shared by the four pool rules.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Window(NamedTuple):
    """The pooling window as (height, width) pairs; a 1-D pool has height 1."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


# --- window arithmetic, shared by the forward checks and both backward rules -----------------


def pooled_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                ceil_mode: bool) -> int:
    """How many windows fit along one dim (torch's ``pooling_output_shape``).

    floor((size + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1, rounded up instead in
    ceil_mode, where the last window must still start inside the input or the left padding.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    count = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (count - 1) * stride >= size + padding:
        count -= 1
    return count


def window_starts(count: int, stride: int, padding: int, device) -> Tensor:
    """Input coordinate of each window's first tap: o·stride − padding (negative in padding)."""
    return torch.arange(-padding, count * stride - padding, stride, device=device)


def first_tap_index(in_hw, out_hw, window: Window, device) -> Tensor:
    """Flat input index h0·W + w0 of each window's first tap, (OH, OW); it may lie in padding."""
    (_, width), (out_h, out_w) = in_hw, out_hw
    (stride_h, stride_w), (pad_h, pad_w) = window.stride, window.padding
    if out_h == 1 and pad_h == 0:  # a single row of windows (every 1-D pool)
        return window_starts(out_w, stride_w, pad_w, device)[None, :]
    rows = torch.arange(-pad_h * width, (out_h * stride_h - pad_h) * width, stride_h * width,
                        device=device)
    return rows[:, None] + window_starts(out_w, stride_w, pad_w, device)


def tap_offsets(window: Window, row_width: int) -> list[int]:
    """Flat offset of tap (kh, kw) from its window's first tap, in planes ``row_width`` wide:
    kh·dH·row_width + kw·dW, listed in window order (kh·kW + kw)."""
    (kernel_h, kernel_w), _, _, (dilation_h, dilation_w) = window
    return [kh * dilation_h * row_width + kw * dilation_w
            for kh in range(kernel_h) for kw in range(kernel_w)]


def window_hits_input(count: int, size: int, kernel: int, stride: int, padding: int,
                      dilation: int) -> list[bool]:
    """Whether each window along one dim has a tap inside the input (not only in padding)."""
    return [
        any(0 <= o * stride - padding + t * dilation < size for t in range(kernel))
        for o in range(count)
    ]


def windows_off_input(in_hw, out_hw, window: Window) -> list[list[bool]] | None:
    """(OH, OW) flags of windows whose every tap is padding, or None when there are none.

    With padding ≤ kernel/2 that takes a dilation that jumps from the left padding past the
    input; native max_pool returns −inf there with an out-of-range index.
    """
    if all(p == 0 or d == 1 for p, d in zip(window.padding, window.dilation)):
        return None
    hits = [window_hits_input(out_hw[d], in_hw[d], window.kernel[d], window.stride[d],
                              window.padding[d], window.dilation[d]) for d in range(2)]
    if all(hits[0]) and all(hits[1]):
        return None
    return [[not (h and w) for w in hits[1]] for h in hits[0]]


def window_divisors(count: int, size: int, kernel: int, stride: int, padding: int,
                    count_include_pad: bool) -> list[int]:
    """Taps each average-pool window divides by along one dim.

    A window [start, start + kernel) is first cut at the end of the right padding (ceil_mode's
    last window may overhang it); without count_include_pad it is also cut to the input.
    """
    divisors = []
    for o in range(count):
        start = o * stride - padding
        end = min(start + kernel, size + padding)
        if not count_include_pad:
            start, end = max(start, 0), min(end, size)
        divisors.append(end - start)
    return divisors


def local_index_dtype(kernel_numel: int) -> torch.dtype:
    """Smallest integer dtype that holds a window-local index 0..kernel_numel−1."""
    if kernel_numel <= 256:
        return torch.uint8
    return torch.int16 if kernel_numel <= 2**15 else torch.int32


def spatial(shape, spatial_dims: int) -> tuple[int, int]:
    """(H, W) of a (…, H, W) shape, or (1, L) of a (…, L) shape."""
    return (1, shape[-1]) if spatial_dims == 1 else (shape[-2], shape[-1])


# --- max pool --------------------------------------------------------------------------------


def flat_to_local_argmax(indices: Tensor, in_hw, out_hw, window: Window, spatial_dims: int,
                         overwrite: bool = False) -> Tensor:
    """Native flat argmax (ih·W + iw per plane) -> window-local argmax kh·kW + kw, small dtype.

    rel = (ih − h0)·R + (iw − w0) names a tap uniquely when rows are R ≥ (kW−1)·dW + 1 wide.
    R = W gives rel = flat − (h0·W + w0) in one subtraction, and a lookup table maps rel to
    kh·kW + kw. Only a window wider than the input (wide dilation plus padding) needs R ≠ W.
    ``overwrite`` lets the subtraction reuse ``indices``' memory.
    """
    (_, width), (kernel_h, kernel_w), device = in_hw, window.kernel, indices.device
    span_w = (kernel_w - 1) * window.dilation[1] + 1
    if kernel_h == 1 or span_w <= width:
        row_width = width
        first_tap = first_tap_index(in_hw, out_hw, window, device)
        first_tap = first_tap.reshape(out_hw[2 - spatial_dims:])
        rel = indices.sub_(first_tap) if overwrite else indices - first_tap
    else:
        row_width = span_w
        starts_h = window_starts(out_hw[0], window.stride[0], window.padding[0], device)
        starts_w = window_starts(out_hw[1], window.stride[1], window.padding[1], device)
        rows = indices.div(width, rounding_mode="floor")
        rel = (rows - starts_h[:, None]) * row_width + (indices - rows * width - starts_w)
    offsets = tap_offsets(window, row_width)
    if windows_off_input(in_hw, out_hw, window) is not None:
        rel = rel.clamp(0, offsets[-1])  # all-padding windows: native's index is arbitrary
    dtype = local_index_dtype(len(offsets))
    if offsets == list(range(len(offsets))):  # consecutive taps (1-D, no dilation): rel is it
        return rel.to(dtype)
    table = [0] * (offsets[-1] + 1)
    for tap, offset in enumerate(offsets):
        table[offset] = tap
    lookup = torch.tensor(table, dtype=dtype, device=device)
    return lookup.index_select(0, rel.reshape(-1)).reshape(rel.shape)
