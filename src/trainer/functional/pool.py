"""Max pooling, with its gradient written out, and the window checks both pools share.

Pools are computed on a 2-D window grid: a 1-D pool is the 2-D pool of a (1, L) plane with a
(1, k) window, so one set of window-arithmetic helpers (:mod:`trainer.functional.window`) serves
max and average pooling (:mod:`trainer.functional.avg_pool`) alike. A window is four
(height, width) pairs: kernel, stride, padding, dilation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from ._fast import pool as fast
from ._util import Function, batched, fail, ntuple, records_graph, shape_str
from .window import (
    Window,
    first_tap_index,
    flat_to_local_argmax,
    pooled_size,
    spatial,
    tap_offsets,
    windows_off_input,
)


def _max_pool_forward(input, window: Window, ceil_mode, return_indices, track, spatial_dims):
    in_hw = spatial(input.shape, spatial_dims)
    if not return_indices and fast.tiled(window, ceil_mode, in_hw, input.device):
        pooled = fast.tiled_max_pool(input, window, track, spatial_dims, in_hw)
        if pooled is not None:
            return pooled
    if spatial_dims == 1:
        k, s, p, d = (v[1] for v in window)
        out, indices = torch_F.max_pool1d(input, k, s, p, d, ceil_mode, return_indices=True)
    else:
        out, indices = torch_F.max_pool2d(input, *window, ceil_mode, return_indices=True)
    if track:
        in_hw, out_hw = spatial(input.shape, spatial_dims), spatial(out.shape, spatial_dims)
        local = flat_to_local_argmax(indices, in_hw, out_hw, window, spatial_dims,
                                     overwrite=not return_indices)
    else:  # no gradient will be asked for: skip the conversion
        local = torch.empty(0, dtype=torch.uint8, device=input.device)
    return (out, local, indices) if return_indices else (out, local)


def _max_pool_setup_context(ctx, inputs, outputs):
    input, window = inputs[0], inputs[1]
    ctx.mark_non_differentiable(*outputs[1:])
    ctx.save_for_backward(outputs[1] if ctx.needs_input_grad[0] else None)
    ctx.input_shape = tuple(input.shape)
    ctx.output_shape = tuple(outputs[0].shape)
    ctx.window = window
    ctx.ceil_mode = inputs[2]


def _max_pool_backward(ctx, g: Tensor, spatial_dims: int) -> Tensor | None:
    (local,) = ctx.saved_tensors
    if local is None:
        return None
    in_hw = spatial(ctx.input_shape, spatial_dims)
    out_hw = spatial(ctx.output_shape, spatial_dims)
    if (not records_graph() and not batched(g) and local.dtype == torch.uint8
            and fast.tiled(ctx.window, ctx.ceil_mode, in_hw, g.device)
            and bool(torch.isfinite(g.sum()))):  # non-finite g (or an overflowing sum)
        return fast.tiled_max_pool_backward(g, local, ctx.input_shape, ctx.window,
                                            spatial_dims, in_hw, out_hw)
    lead, out_numel = ctx.input_shape[:-spatial_dims], out_hw[0] * out_hw[1]
    # flat input position of each output's winner: h0·W + w0 + the offset of its local tap
    first_tap = first_tap_index(in_hw, out_hw, ctx.window, g.device).reshape(out_numel)
    offsets = tap_offsets(ctx.window, in_hw[1])
    if offsets == list(range(len(offsets))):  # consecutive taps: the offset is the local index
        positions = local.reshape(*lead, out_numel).long()
    else:  # index_select is CPU's fast gather, and takes int32 indices
        taps = torch.tensor(offsets, device=g.device)
        positions = taps.index_select(0, local.reshape(-1).int()).reshape(*lead, out_numel)
    positions.add_(first_tap)  # in place: one int64 buffer, not two
    g_rows = g.reshape(*lead, out_numel)
    off_input = windows_off_input(in_hw, out_hw, ctx.window)
    if off_input is not None:  # an all-padding window took no input value: no gradient
        off = torch.tensor(off_input, dtype=torch.bool, device=g.device).reshape(out_numel)
        g_rows = torch.where(off, 0.0, g_rows)
        positions = positions.clamp(0, in_hw[0] * in_hw[1] - 1)
    # in place into a fresh g.new_zeros (batched under vmap, unlike torch.zeros): this skips
    # the clone that out-of-place scatter_add makes
    grad = g.new_zeros(*lead, in_hw[0] * in_hw[1]).scatter_add_(-1, positions, g_rows)
    return grad.reshape(ctx.input_shape)


class MaxPool2d(Function):
    r"""y[n,c,i,j] = max over taps (kh, kw) of x[n,c, i·sH − pH + kh·dH, j·sW − pW + kw·dW]
    (taps in the −∞ padding never win). a[n,c,i,j] = kh·kW + kw of the first maximal tap.

    Backward, with g = ∂L/∂y: each output's gradient flows to its one winning input element,
    and overlapping windows add up:
        ∂L/∂x[n,c,h,w] = Σ_{i,j : pos(i,j,a[n,c,i,j]) = (h,w)} g[n,c,i,j]
        pos(i, j, a) = (i·sH − pH + (a // kW)·dH,  j·sW − pW + (a % kW)·dW)
    computed as a scatter_add of g into zeros at those flat positions (its own gradient with
    respect to g is a gather, so double backward works).

    Saves: only the window-local argmax a, as uint8 (int16/int32 for windows over 256 taps),
    because the position of the winner is all ∂L/∂x needs; neither x nor native's int64 flat
    indices are kept. With return_indices=True the int64 indices are returned, not saved.

    Tiled windows (kernel = stride, no padding) on CPU: y = the elementwise maximum of the
    kH·kW strided tap views, a = Σ_t Π_{s ≤ t} [x_s ≠ y], and backward writes g·[a = t] into
    tap t's view of ∂L/∂x; see :func:`~trainer.functional._fast.pool.tiled_max_pool`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, window: Window, ceil_mode: bool, return_indices: bool,
                track: bool):
        return _max_pool_forward(input, window, ceil_mode, return_indices, track, 2)

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        _max_pool_setup_context(ctx, inputs, outputs)

    @staticmethod
    def backward(ctx, g: Tensor, *_non_differentiable):
        return _max_pool_backward(ctx, g, 2), None, None, None, None


class MaxPool1d(Function):
    r"""y[n,c,j] = max over taps k of x[n,c, j·s − p + k·d] (−∞ padding never wins);
    a[n,c,j] = k of the first maximal tap.

    Backward, with g = ∂L/∂y:
        ∂L/∂x[n,c,l] = Σ_{j : j·s − p + a[n,c,j]·d = l} g[n,c,j]
    a scatter_add of g into zeros (double backward: its gradient with respect to g is a gather).

    Saves: only the window-local argmax a as uint8 (int16/int32 beyond 256 taps); neither x nor
    native's int64 indices.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, window: Window, ceil_mode: bool, return_indices: bool,
                track: bool):
        return _max_pool_forward(input, window, ceil_mode, return_indices, track, 1)

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        _max_pool_setup_context(ctx, inputs, outputs)

    @staticmethod
    def backward(ctx, g: Tensor, *_non_differentiable):
        return _max_pool_backward(ctx, g, 1), None, None, None, None


# --- argument checks, as torch makes them ----------------------------------------------------


def _pool_window(op: str, input: Tensor, spatial_dims: int, kernel_size, stride, padding,
                 dilation, ceil_mode: bool) -> Window:
    """Validate the input and options as torch does and return the window as (H, W) pairs."""
    if input.dim() not in (spatial_dims + 1, spatial_dims + 2):
        names = "(C, L) or (N, C, L)" if spatial_dims == 1 else "(C, H, W) or (N, C, H, W)"
        raise fail(op, f"input of shape {names}", f"input {shape_str(input)}")
    if input.dtype == torch.bool or input.is_complex():
        raise fail(op, "input of a real numeric dtype", f"input of dtype {input.dtype}")
    if op.startswith("avg") and not (input.is_floating_point() or input.dtype == torch.int64):
        # torch's averaging kernels take floats and int64 only
        raise fail(op, "input of a floating dtype (or int64)", f"input of dtype {input.dtype}")
    non_batch = input.shape[-(spatial_dims + 1):]
    if 0 in non_batch:
        raise fail(op, "non-zero channel and spatial sizes (only the batch may be 0)",
                   f"input {shape_str(input)}")
    kernel = ntuple(op, "kernel_size", kernel_size, spatial_dims)
    if stride is None or (not isinstance(stride, int) and len(stride) == 0):
        strides = kernel
    else:
        strides = ntuple(op, "stride", stride, spatial_dims)
    pads = ntuple(op, "padding", padding, spatial_dims)
    dilations = ntuple(op, "dilation", dilation, spatial_dims)
    for name, values in (("kernel_size", kernel), ("stride", strides), ("dilation", dilations)):
        if min(values) <= 0:
            raise fail(op, f"{name} > 0", f"{name}={values}")
    if min(pads) < 0 or any(p > k // 2 for p, k in zip(pads, kernel)):
        raise fail(op, f"0 <= padding <= kernel_size // 2 = {tuple(k // 2 for k in kernel)}",
                   f"padding={pads}")
    spatial = tuple(input.shape[-spatial_dims:])
    out = tuple(pooled_size(*args, ceil_mode) for args in zip(spatial, kernel, strides, pads,
                                                                dilations))
    if min(out) < 1:
        raise fail(op, f"kernel_size={kernel} (dilation={dilations}) to fit the input "
                       f"{shape_str(input)} padded by {pads}",
                   f"an output of spatial size {out}")
    if spatial_dims == 1:
        return Window((1, *kernel), (1, *strides), (0, *pads), (1, *dilations))
    return Window(kernel, strides, pads, dilations)


def _tracks_grad(input: Tensor) -> bool:
    return torch.is_grad_enabled() and input.requires_grad


# --- public ops ------------------------------------------------------------------------------


def max_pool1d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Explicit twin of :func:`torch.nn.functional.max_pool1d`."""
    window = _pool_window("max_pool1d", input, 1, kernel_size, stride, padding, dilation,
                          ceil_mode)
    outputs = MaxPool1d.apply(input, window, bool(ceil_mode), bool(return_indices),
                              _tracks_grad(input))
    return (outputs[0], outputs[2]) if return_indices else outputs[0]


def max_pool2d(
    input: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Explicit twin of :func:`torch.nn.functional.max_pool2d`."""
    window = _pool_window("max_pool2d", input, 2, kernel_size, stride, padding, dilation,
                          ceil_mode)
    outputs = MaxPool2d.apply(input, window, bool(ceil_mode), bool(return_indices),
                              _tracks_grad(input))
    return (outputs[0], outputs[2]) if return_indices else outputs[0]
