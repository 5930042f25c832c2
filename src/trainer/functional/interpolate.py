"""Interpolation (upsampling and downsampling): nearest, nearest-exact, linear, bilinear and
trilinear, with their gradients written out.

Every mode is separable: along each spatial dim d, output o reads input positions that depend
on o alone. Nearest reads one, src_d(o); the linear modes mix two, i0(o) and i1(o), with
weights 1 − λ(o) and λ(o). So y = x ×_d A_d over the spatial dims, A_d an (out, in) matrix
(one 1 per row for nearest), and the gradient is g ×_d A_dᵀ: an index_add of g at src_d for
nearest, one matmul per dim for the linear modes. Both come back from the sizes and options
alone: nothing is saved. "area" is adaptive average pooling (:mod:`.adaptive_pool`).

Pixel shuffle and unshuffle, permutations between channels and space, are each other's
gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ._util import Function, check_float, fail, shape_str
from .adaptive_pool import adaptive_avg_pool1d, adaptive_avg_pool2d

__all__ = ["interpolate", "pixel_shuffle", "pixel_unshuffle"]

_LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}  # mode -> its spatial dims
_MODES = ("nearest", "nearest-exact", "area", *_LINEAR_MODES)
_KERNELS = {  # (kind, spatial dims) -> native's forward kernel
    ("nearest", 1): torch._C._nn.upsample_nearest1d,
    ("nearest", 2): torch._C._nn.upsample_nearest2d,
    ("nearest", 3): torch._C._nn.upsample_nearest3d,
    ("nearest-exact", 1): torch._C._nn._upsample_nearest_exact1d,
    ("nearest-exact", 2): torch._C._nn._upsample_nearest_exact2d,
    ("nearest-exact", 3): torch._C._nn._upsample_nearest_exact3d,
    ("linear", 1): torch._C._nn.upsample_linear1d,
    ("linear", 2): torch._C._nn.upsample_bilinear2d,
    ("linear", 3): torch._C._nn.upsample_trilinear3d,
}


class _Plan(NamedTuple):
    """kind: 'nearest', 'nearest-exact' or 'linear' (bi-, tri-); scales: the scale factors
    native's kernel gets (None: it uses in/out); align_corners only for 'linear'."""

    kind: str
    output_size: tuple[int, ...]
    scales: tuple[float, ...] | None
    align_corners: bool


# --- where each output reads, per dim, as native's forward reads it -----------------------------


def _run(input: Tensor, plan: _Plan) -> Tensor:
    """Native's forward kernel for the plan."""
    kernel = _KERNELS[(plan.kind, len(plan.output_size))]
    # it takes one of the two; from the scales it works out the same sizes
    sizes = None if plan.scales is not None else list(plan.output_size)
    scales = None if plan.scales is None else list(plan.scales)
    if plan.kind == "linear":
        return kernel(input, sizes, plan.align_corners, scales)
    return kernel(input, sizes, scales)


def source_positions(plan: _Plan, spatial: tuple[int, ...], d: int, dtype: torch.dtype,
                     device) -> Tensor:
    """(out_d,): the position along dim d that each output reads, src(o) for nearest, the
    fractional real(o) = i0 + λ for the linear modes: native's forward run on one plane whose
    entries are their own coordinate along d (each mode maps a line of positions to the
    positions it reads). ``dtype``: native's opmath, float64 for float64 inputs, else float32
    (exact up to 2²⁴ positions)."""
    line = [1] * len(spatial)
    line[d] = spatial[d]
    positions = torch.arange(spatial[d], dtype=dtype, device=device).reshape(1, 1, *line)
    read = _run(positions.expand(1, 1, *spatial).contiguous(), plan)[0, 0]
    return read[tuple(slice(None) if k == d else 0 for k in range(len(spatial)))]


def linear_matrix(real: Tensor, size: int) -> Tensor:
    """A, (out, size) from the positions real(o) = i0 + λ: 1 − λ at i0 = ⌊real⌋ and λ at
    i1 = min(i0 + 1, in − 1) on row o."""
    i0 = real.floor().clamp(0, size - 1)
    lam = real - i0
    i1 = (i0 + 1).clamp(max=size - 1)
    position = torch.arange(size, device=real.device, dtype=real.dtype)
    return ((position == i0[:, None]) * (1 - lam)[:, None]
            + (position == i1[:, None]) * lam[:, None])


# --- the rule ---------------------------------------------------------------------------------


def _along(t: Tensor, dim: int, matrix: Tensor) -> Tensor:
    """t ×_dim matrix: contract t's ``dim`` with the matrix's first index."""
    if dim == t.dim() - 1:
        return t.matmul(matrix)
    return t.movedim(dim, -1).matmul(matrix).movedim(-1, dim)


class Interpolate(Function):
    r"""y = x ×_d A_d over the spatial dims d (1 to 3), A_d (out_d, in_d):

        nearest:        A[o, src(o)] = 1,  src(o) = min(⌊o·r⌋, in − 1)
        nearest-exact:  A[o, src(o)] = 1,  src(o) = min(⌊(o + ½)·r⌋, in − 1)
        linear (bi-, tri-):  A[o, i0] = 1 − λ,  A[o, i1] = λ,   i1 = min(i0 + 1, in − 1),
            real = o·r (align_corners) or max((o + ½)·r − ½, 0),  i0 = ⌊real⌋,  λ = real − i0
        r = (in − 1)/(out − 1) with align_corners, else 1/scale_factor where one is given
            (and not recomputed), else in/out
    src(o) and real(o) are read off native's forward run on the positions themselves (a plane
    holding each entry's own coordinate along d): native rounds them in float opmath, with
    a fused multiply-add on some builds, and some of its kernels read out = in as the
    identity whatever the scale factor. A nearest index has no slack for any of that, so the
    gradient is the transpose of the map the forward really applied.

    Backward, with g = ∂L/∂y: the same contraction with each A_d transposed,
        ∂L/∂x = g ×_d A_dᵀ
    nearest: along each dim an index_add of g into zeros at src (entries read by several
    outputs add up; their gradient with respect to g is an index_select, so double backward
    works); linear: one matmul per dim (in float32 for half inputs, as native accumulates).

    Saves: nothing; src and A come back from the sizes, the scale factors and align_corners
    (one forward of a single plane per dim in backward).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, plan: _Plan) -> Tensor:
        return _run(input, plan)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.input_shape = tuple(inputs[0].shape)
        ctx.plan = inputs[1]

    @staticmethod
    def backward(ctx, g: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        plan, spatial = ctx.plan, ctx.input_shape[2:]
        opmath = torch.float64 if g.dtype == torch.float64 else torch.float32
        grad = g.to(opmath) if plan.kind == "linear" else g  # native accumulates half in float
        for d, size in enumerate(spatial):
            read = source_positions(plan, spatial, d, opmath, g.device)
            if plan.kind == "linear":  # ×_d A_dᵀ: (…, out_d, …) -> (…, in_d, …)
                grad = _along(grad, 2 + d, linear_matrix(read, size))
            else:  # index_add of g at src along d
                zeros = grad.new_zeros(*grad.shape[:2 + d], size, *grad.shape[3 + d:])
                grad = zeros.index_add(2 + d, read.long(), grad)
        return grad.to(g.dtype), None


# --- arguments, checked as torch checks them --------------------------------------------------


def _sizes(op: str, input: Tensor, size, scale_factor, recompute_scale_factor
           ) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """(output sizes, the kernel's scale factors or None), as F.interpolate works them out."""
    rank = input.dim() - 2
    spatial = tuple(input.shape[2:])
    if (size is None) == (scale_factor is None):
        raise fail(op, "exactly one of size and scale_factor",
                   f"size={size!r}, scale_factor={scale_factor!r}")
    if size is not None:
        if recompute_scale_factor:
            raise fail(op, "no recompute_scale_factor with an explicit size",
                       f"size={size!r}, recompute_scale_factor=True")
        sizes = list(size) if isinstance(size, Sequence) else [size] * rank
        if len(sizes) != rank or not all(isinstance(s, int) or
                                         (isinstance(s, Tensor) and s.dim() == 0)
                                         for s in sizes):
            raise fail(op, f"size as an int or {rank} ints for input {shape_str(input)}",
                       f"size={size!r}")
        return tuple(int(s) for s in sizes), None
    factors = list(scale_factor) if isinstance(scale_factor, Sequence) else [scale_factor] * rank
    if len(factors) != rank:
        raise fail(op, f"scale_factor as a number or {rank} numbers for input "
                   f"{shape_str(input)}", f"scale_factor={scale_factor!r}")
    factors = tuple(float(f) for f in factors)
    sizes = tuple(int(math.floor(n * f)) for n, f in zip(spatial, factors))
    return sizes, None if recompute_scale_factor else factors


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.interpolate` for modes nearest,
    nearest-exact, linear, bilinear, trilinear and area (1-D and 2-D: adaptive average
    pooling). bicubic, 3-D area and antialias have no rule here: they raise."""
    op = "interpolate"
    if mode not in _MODES:
        raise fail(op, f"mode one of {', '.join(_MODES)} (bicubic has no explicit rule)",
                   f"mode={mode!r}")
    if antialias:
        raise fail(op, "antialias=False (antialiased resampling has no explicit rule)",
                   "antialias=True")
    if not isinstance(input, Tensor) or input.dim() not in (3, 4, 5):
        got = f"input {shape_str(input)}" if isinstance(input, Tensor) else repr(input)
        raise fail(op, "a 3-D, 4-D or 5-D input (N, C, *spatial)", got)
    rank = input.dim() - 2
    linear = mode in _LINEAR_MODES
    if not linear and align_corners is not None:
        raise fail(op, f"align_corners=None for mode {mode!r} (only the linear modes take it)",
                   f"align_corners={align_corners!r}")
    if linear and _LINEAR_MODES[mode] != rank:
        raise fail(op, f"a {_LINEAR_MODES[mode] + 2}-D input for mode {mode!r}",
                   f"input {shape_str(input)}")
    sizes, scales = _sizes(op, input, size, scale_factor,
                           recompute_scale_factor or (mode == "area" and size is None))
    if min(input.shape[2:]) < 1 or min(sizes) < 1:
        raise fail(op, "input and output sizes > 0",
                   f"input {shape_str(input)} to output size {sizes}")
    if mode == "area":
        if rank == 3:
            raise fail(op, "a 3-D or 4-D input for mode 'area' (3-D area has no explicit "
                       "rule)", f"input {shape_str(input)}")
        return (adaptive_avg_pool1d if rank == 1 else adaptive_avg_pool2d)(input, sizes)
    if linear:
        check_float(op, "input", input)
    kind = "linear" if linear else mode
    return Interpolate.apply(input, _Plan(kind, sizes, scales, bool(align_corners)))


# --- pixel shuffle: a permutation of entries between channels and space ------------------------


class PixelShuffle(Function):
    r"""y[…, c, h·r + i, w·r + j] = x[…, c·r² + i·r + j, h, w]   (x: (…, C·r², H, W))

    A permutation of x's entries, so its adjoint is the inverse permutation:
        ∂L/∂x = pixel_unshuffle(g, r)
    (itself a rule, so double backward is pixel_shuffle again).

    Saves: nothing (the factor r only).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, upscale_factor: int) -> Tensor:
        return torch.pixel_shuffle(input, upscale_factor)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.factor = inputs[1]

    @staticmethod
    def backward(ctx, g: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        return PixelUnshuffle.apply(g, ctx.factor), None


class PixelUnshuffle(Function):
    r"""y[…, c·r² + i·r + j, h, w] = x[…, c, h·r + i, w·r + j]   (x: (…, C, H·r, W·r))

    The inverse permutation of pixel_shuffle; its adjoint is pixel_shuffle:
        ∂L/∂x = pixel_shuffle(g, r)

    Saves: nothing (the factor r only).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, downscale_factor: int) -> Tensor:
        return torch.pixel_unshuffle(input, downscale_factor)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.factor = inputs[1]

    @staticmethod
    def backward(ctx, g: Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        return PixelShuffle.apply(g, ctx.factor), None


def _shuffle_factor(op: str, name: str, input: Tensor, factor) -> int:
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise fail(op, f"{name} a positive int", f"{name}={factor!r}")
    if input.dim() < 3:
        raise fail(op, "an input of at least 3 dims (…, C, H, W)", f"input {shape_str(input)}")
    return factor


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.pixel_shuffle`."""
    r = _shuffle_factor("pixel_shuffle", "upscale_factor", input, upscale_factor)
    if input.shape[-3] % (r * r):
        raise fail("pixel_shuffle", f"channels divisible by upscale_factor² = {r * r}",
                   f"input {shape_str(input)}")
    return PixelShuffle.apply(input, r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.pixel_unshuffle`."""
    r = _shuffle_factor("pixel_unshuffle", "downscale_factor", input, downscale_factor)
    if input.shape[-2] % r or input.shape[-1] % r:
        raise fail("pixel_unshuffle", f"height and width divisible by downscale_factor = {r}",
                   f"input {shape_str(input)}")
    return PixelUnshuffle.apply(input, r)
