"""Adaptive average and max pooling, with their gradients written out.

Along a dim of size L pooled to ``out`` entries, window i spans [floor(i·L/out),
ceil((i+1)·L/out)): the windows cover L, and overlap by one entry where out does not divide
L. The average pool is linear, y = A x along that dim with A the (out, L) matrix of window
shares (1/len(window i) over window i, 0 elsewhere), so its gradient is Aᵀ g: one matmul per
dim. The max pool hands each g to its window's winner, which it keeps as a window-local code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from ._util import LOW_PRECISION, Function, fail, shape_str
from .window import local_index_dtype

__all__ = ["adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d",
           "adaptive_max_pool2d"]


def window_bounds(out: int, size: int, device) -> tuple[Tensor, Tensor]:
    """(starts, ends), each (out,): window i spans [⌊i·size/out⌋, ⌈(i+1)·size/out⌉)."""
    i = torch.arange(out, device=device)
    starts = (i * size).div(out, rounding_mode="floor")
    ends = ((i + 1) * size + out - 1).div(out, rounding_mode="floor")  # ceil
    return starts, ends


def widest_window(out: int, size: int) -> int:
    """The longest window along a dim: ⌈size/out⌉, or one more where windows overlap."""
    widest = 1
    for i in range(out):
        widest = max(widest, ((i + 1) * size + out - 1) // out - (i * size) // out)
    return widest


def window_shares(out: int, size: int, dtype: torch.dtype, device) -> Tensor:
    """A, (out, size): A[i, l] = 1 / len(window i) where window i covers l, else 0."""
    starts, ends = window_bounds(out, size, device)
    position = torch.arange(size, device=device)
    covers = (position >= starts[:, None]) & (position < ends[:, None])
    return covers.to(dtype) / (ends - starts).to(dtype)[:, None]


def _spread(g: Tensor, input_shape: tuple[int, ...], spatial_dims: int) -> Tensor:
    """Aᵀ g along each pooled dim: (…, out) -> (…, L), or (…, OH, OW) -> (…, H, W)."""
    dtype = torch.float32 if g.dtype in LOW_PRECISION else g.dtype  # as native accumulates
    grad = g.to(dtype)
    width_shares = window_shares(g.shape[-1], input_shape[-1], dtype, g.device)
    grad = torch.matmul(grad, width_shares)  # (…, OH, W)
    if spatial_dims == 2:
        height_shares = window_shares(g.shape[-2], input_shape[-2], dtype, g.device)
        grad = torch.matmul(height_shares.mT, grad)  # (H, OH) @ (…, OH, W)
    return grad.to(g.dtype)


def _setup_context(ctx, inputs, output):
    ctx.input_shape = tuple(inputs[0].shape)


class AdaptiveAvgPool2d(Function):
    r"""y[n,c,i,j] = mean of x[n,c, h, w] over h ∈ [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉) and
    w ∈ [⌊j·W/OW⌋, ⌈(j+1)·W/OW⌉). With A_H (OH, H) and A_W (OW, W) the window shares
    (A[i, l] = 1/len(window i) where window i covers l, else 0): y = A_H x A_Wᵀ per plane.

    Backward, with g = ∂L/∂y: every entry of window (i, j) gets g[i,j] / (its area), and
    overlapping windows add up:
        ∂L/∂x[n,c] = A_Hᵀ g[n,c] A_W
    two matmuls, one along W and one along H (so double backward is two more).

    Saves: nothing; A_H and A_W come back from the input's shape and g's.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, output_size: tuple[int, int]) -> Tensor:
        return torch_F.adaptive_avg_pool2d(input, output_size)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        return _spread(g, ctx.input_shape, 2), None


class AdaptiveAvgPool1d(Function):
    r"""y[n,c,i] = mean of x[n,c,l] over l ∈ [⌊i·L/O⌋, ⌈(i+1)·L/O⌉); that is y = A x per row,
    A (O, L) the window shares (A[i, l] = 1/len(window i) where window i covers l, else 0).

    Backward, with g = ∂L/∂y: every entry of window i gets g[i] / len(window i), and
    overlapping windows add up:
        ∂L/∂x[n,c] = Aᵀ g[n,c]
    one matmul (g A, row by row).

    Saves: nothing; A comes back from the input's shape and g's.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, output_size: tuple[int]) -> Tensor:
        return torch.adaptive_avg_pool1d(input, output_size)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        return _spread(g, ctx.input_shape, 1), None


# --- adaptive max pool -----------------------------------------------------------------------


def _first_taps(in_hw, out_hw, device) -> tuple[Tensor, Tensor]:
    """Each window's first row and column, (OH, 1) and (1, OW)."""
    rows, _ = window_bounds(out_hw[0], in_hw[0], device)
    cols, _ = window_bounds(out_hw[1], in_hw[1], device)
    return rows[:, None], cols[None, :]


def _max_forward(input: Tensor, output_size, return_indices: bool, track: bool,
                 spatial_dims: int):
    if spatial_dims == 1:
        out, indices = torch_F.adaptive_max_pool1d(input, output_size, return_indices=True)
    else:
        out, indices = torch_F.adaptive_max_pool2d(input, output_size, return_indices=True)
    if not track:  # no gradient will be asked for: skip the conversion
        local = torch.empty(0, dtype=torch.uint8, device=input.device)
        return (out, local, indices) if return_indices else (out, local)
    in_hw = (1, *input.shape[-1:]) if spatial_dims == 1 else tuple(input.shape[-2:])
    out_hw = (1, *out.shape[-1:]) if spatial_dims == 1 else tuple(out.shape[-2:])
    rows, cols = _first_taps(in_hw, out_hw, input.device)
    width = widest_window(out_hw[1], in_hw[1])
    height = widest_window(out_hw[0], in_hw[0])
    row = indices.div(in_hw[1], rounding_mode="floor")
    code = (row - rows) * width + (indices - row * in_hw[1] - cols)  # (h − h0)·KW + (w − w0)
    if spatial_dims == 1:
        code = code.reshape(out.shape)
    local = code.to(local_index_dtype(height * width))
    return (out, local, indices) if return_indices else (out, local)


def _max_setup_context(ctx, inputs, outputs):
    ctx.mark_non_differentiable(*outputs[1:])
    ctx.save_for_backward(outputs[1] if ctx.needs_input_grad[0] else None)
    ctx.input_shape = tuple(inputs[0].shape)
    ctx.output_shape = tuple(outputs[0].shape)


def _max_backward(ctx, g: Tensor, spatial_dims: int) -> Tensor | None:
    (local,) = ctx.saved_tensors
    if local is None:
        return None
    shape, out_shape = ctx.input_shape, ctx.output_shape
    in_hw = (1, shape[-1]) if spatial_dims == 1 else shape[-2:]
    out_hw = (1, out_shape[-1]) if spatial_dims == 1 else out_shape[-2:]
    rows, cols = _first_taps(in_hw, out_hw, g.device)
    width = widest_window(out_hw[1], in_hw[1])
    code = local.long().reshape(*shape[:-spatial_dims], *out_hw)
    # the winner's flat position: (h0 + code // KW)·W + w0 + code % KW
    positions = (rows + code.div(width, rounding_mode="floor")) * in_hw[1] + cols + code % width
    lead, out_numel = shape[:-spatial_dims], out_hw[0] * out_hw[1]
    grad = g.new_zeros(*lead, in_hw[0] * in_hw[1]).scatter_add(
        -1, positions.reshape(*lead, out_numel), g.reshape(*lead, out_numel))
    return grad.reshape(shape)


class AdaptiveMaxPool2d(Function):
    r"""y[n,c,i,j] = max of x[n,c,h,w] over h ∈ [h0_i, ⌈(i+1)·H/OH⌉), w ∈ [w0_j, ⌈(j+1)·W/OW⌉),
    h0_i = ⌊i·H/OH⌋, w0_j = ⌊j·W/OW⌋; a[n,c,i,j] = (h − h0_i)·KW + (w − w0_j) of the maximal
    (h, w) that native's kernel picks, KW the widest window along W.

    Backward, with g = ∂L/∂y: each output's gradient flows to its one winning input element,
    and overlapping windows add up:
        ∂L/∂x[n,c,h,w] = Σ_{i,j : pos(i,j,a[n,c,i,j]) = (h,w)} g[n,c,i,j]
        pos(i, j, a) = (h0_i + a // KW,  w0_j + a % KW)
    a scatter_add of g into zeros at those flat positions (its gradient with respect to g is a
    gather, so double backward works).

    Saves: only the window-local argmax a, as uint8 (int16/int32 where the widest window holds
    over 256 entries): the winner's position is all ∂L/∂x needs; neither x nor native's int64
    indices (returned with return_indices=True, not saved).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, output_size: tuple[int, int], return_indices: bool,
                track: bool):
        return _max_forward(input, output_size, return_indices, track, 2)

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        _max_setup_context(ctx, inputs, outputs)

    @staticmethod
    def backward(ctx, g: Tensor, *_non_differentiable):
        return _max_backward(ctx, g, 2), None, None, None


class AdaptiveMaxPool1d(Function):
    r"""y[n,c,i] = max of x[n,c,l] over l ∈ [l0_i, ⌈(i+1)·L/O⌉), l0_i = ⌊i·L/O⌋;
    a[n,c,i] = l − l0_i of the maximal l that native's kernel picks.

    Backward, with g = ∂L/∂y:
        ∂L/∂x[n,c,l] = Σ_{i : l0_i + a[n,c,i] = l} g[n,c,i]
    a scatter_add of g into zeros (double backward: its gradient with respect to g is a gather).

    Saves: only the window-local argmax a as uint8 (int16/int32 for windows over 256 entries);
    neither x nor native's int64 indices.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, output_size: tuple[int], return_indices: bool, track: bool):
        return _max_forward(input, output_size, return_indices, track, 1)

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        _max_setup_context(ctx, inputs, outputs)

    @staticmethod
    def backward(ctx, g: Tensor, *_non_differentiable):
        return _max_backward(ctx, g, 1), None, None, None


# --- argument checks, as torch makes them ----------------------------------------------------


def _output_size(op: str, input: Tensor, output_size, spatial_dims: int) -> tuple[int, ...]:
    """Validate the input and output_size as torch does; output_size as ints (None: kept)."""
    if input.dim() not in (spatial_dims + 1, spatial_dims + 2):
        names = "(C, L) or (N, C, L)" if spatial_dims == 1 else "(C, H, W) or (N, C, H, W)"
        raise fail(op, f"input of shape {names}", f"input {shape_str(input)}")
    if not input.is_floating_point():
        raise fail(op, "input of a floating dtype", f"input of dtype {input.dtype}")
    if 0 in input.shape[-spatial_dims:]:
        raise fail(op, "non-zero spatial sizes", f"input {shape_str(input)}")
    sizes = [output_size] * spatial_dims if isinstance(output_size, int) else output_size
    try:
        sizes = list(sizes)
    except TypeError:
        sizes = None
    keeps_none = spatial_dims == 2  # torch's 1-D pool takes no None
    if (sizes is None or len(sizes) != spatial_dims
            or not all(isinstance(s, int) or (keeps_none and s is None) for s in sizes)):
        what = "an int or a tuple of 2 ints or None" if keeps_none else "an int or a 1-tuple"
        raise fail(op, f"output_size as {what}", f"output_size={output_size!r}")
    kept = input.shape[-spatial_dims:]
    sizes = tuple(int(kept[d]) if s is None else int(s) for d, s in enumerate(sizes))
    if min(sizes) < 0:
        raise fail(op, "output sizes >= 0", f"output_size={output_size!r}")
    return sizes


# --- public ops ------------------------------------------------------------------------------


def adaptive_avg_pool1d(input: Tensor, output_size: int | tuple[int]) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.adaptive_avg_pool1d`."""
    sizes = _output_size("adaptive_avg_pool1d", input, output_size, 1)
    return AdaptiveAvgPool1d.apply(input, sizes)


def adaptive_avg_pool2d(input: Tensor,
                        output_size: int | None | tuple[int | None, int | None]) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.adaptive_avg_pool2d`; None in output_size
    keeps that dim's size."""
    sizes = _output_size("adaptive_avg_pool2d", input, output_size, 2)
    return AdaptiveAvgPool2d.apply(input, sizes)


def adaptive_max_pool1d(input: Tensor, output_size: int | tuple[int],
                        return_indices: bool = False):
    """Explicit twin of :func:`torch.nn.functional.adaptive_max_pool1d`."""
    sizes = _output_size("adaptive_max_pool1d", input, output_size, 1)
    outputs = AdaptiveMaxPool1d.apply(input, sizes, bool(return_indices), _tracks_grad(input))
    return (outputs[0], outputs[2]) if return_indices else outputs[0]


def adaptive_max_pool2d(input: Tensor,
                        output_size: int | None | tuple[int | None, int | None],
                        return_indices: bool = False):
    """Explicit twin of :func:`torch.nn.functional.adaptive_max_pool2d`; None in output_size
    keeps that dim's size."""
    sizes = _output_size("adaptive_max_pool2d", input, output_size, 2)
    outputs = AdaptiveMaxPool2d.apply(input, sizes, bool(return_indices), _tracks_grad(input))
    return (outputs[0], outputs[2]) if return_indices else outputs[0]


def _tracks_grad(input: Tensor) -> bool:
    return torch.is_grad_enabled() and input.requires_grad
