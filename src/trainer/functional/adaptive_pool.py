"""Adaptive average pooling, with its gradient written out.

Along a dim of size L pooled to ``out`` entries, window i spans [floor(i·L/out),
ceil((i+1)·L/out)): the windows cover L, and overlap by one entry where out does not divide
L. The pool is linear, y = A x along that dim with A the (out, L) matrix of window shares
(1/len(window i) over window i, 0 elsewhere), so its gradient is Aᵀ g: one matmul per dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from ._util import LOW_PRECISION, Function, fail, shape_str

__all__ = ["adaptive_avg_pool1d", "adaptive_avg_pool2d"]


def window_shares(out: int, size: int, dtype: torch.dtype, device) -> Tensor:
    """A, (out, size): A[i, l] = 1 / len(window i) where window i covers l, else 0."""
    i = torch.arange(out, device=device)
    starts = (i * size).div(out, rounding_mode="floor")
    ends = ((i + 1) * size + out - 1).div(out, rounding_mode="floor")  # ceil
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
