"""RMS and group normalization, with their gradients written out.

As in :mod:`trainer.functional.norm`: each ``backward`` reads as the formula in its docstring,
out of place, with the statistics recomputed from the saved x so that double backward
differentiates through them too. A first-order backward takes the same formula with the
forward's statistics and one buffer of x's size (``_rms_norm_backward_fast``,
``_group_norm_backward_fast`` below, each one named call away from its formula).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._fast.norm import column_sum, row_sum
from ._util import (
    Function,
    autocast_fp32,
    batched,
    check_same_dtype,
    fail,
    records_graph,
    shape_str,
    to_dtype,
)
from .norm import _centered_stats, _opmath, checked_normalized_shape

__all__ = ["group_norm", "rms_norm"]


def _upcast_under_autocast(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Inside a forward: autocast lists rms_norm and group_norm as float32 ops off the CPU
    (CUDA and the other devices of its generic list), so half inputs are upcast there, as
    native's are; CPU autocast leaves both norms in the input's dtype."""
    device = tensors[0].device.type
    return tensors if device == "cpu" else autocast_fp32(device, *tensors)


def _check_real_float(op: str, name: str, t: Tensor) -> None:
    if not t.is_floating_point():
        raise fail(op, f"{name} of a real floating dtype", f"{name} of dtype {t.dtype}")


# ------------------------------------------------------------------------------------ rms_norm

class RMSNorm(Function):
    r"""y = x̂·γ,  x̂ = x·rstd,  rstd = 1/√(mean_d(x²) + ε),  x: (*, *S),  γ: S

    mean_d is over each row's D = ∏S trailing values. Half inputs are computed in float32
    (x upcast, rstd float32, y cast back), as native's kernel does.

    Backward, with g = ∂L/∂y, mean_d and Σ_d over a row's D values, Σ_r over rows:
        ∂L/∂γ = Σ_r g·x̂
        ∂L/∂x = rstd · (gγ − x̂·mean_d(gγ·x̂))
    (∂rstd/∂x = −rstd³·x/D, so the rstd term of the product rule is −x·rstd³·Σ_d(gγ·x)/D.)
    Everything works on (rows, D) views. The formula recomputes rstd from the saved x, so
    that double backward sees its dependence on x; a first-order backward uses the forward's
    rstd and one buffer of x's size (``_rms_norm_backward_fast``).

    Saves: x (for x̂) and the per-row rstd (a forward output: free, and one float per row
    against a pass over x to recompute it) when ∂L/∂x or ∂L/∂γ is needed; γ only for ∂L/∂x.
    Native (a composite on the CPU) saves x, rstd, x·rstd and γ; in half precision its x is
    the float32 copy.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None,
                eps: float) -> tuple[Tensor, Tensor]:
        input, weight = _upcast_under_autocast(input, weight)
        x = input.to(_opmath(input.dtype))  # no copy unless half
        dims = [-1 - i for i in range(len(normalized_shape))]  # native's order
        rstd = torch.rsqrt(x.pow(2).mean(dims, keepdim=True).add_(eps))
        output = x * rstd
        if weight is not None:
            output = output * weight  # type promotion as native's: in float32 or wider
        return output.to(input.dtype), rstd.view(rstd.numel(), 1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, normalized_shape, weight, eps = inputs
        _, rstd = output
        ctx.mark_non_differentiable(rstd)
        ctx.set_materialize_grads(False)  # no zero grad for the rstd output
        need_x, _, need_w, _ = ctx.needs_input_grad
        need_stats = need_x or (need_w and weight is not None)
        ctx.save_for_backward(
            input if need_stats else None,
            rstd if need_stats else None,
            weight if need_x else None,
        )
        ctx.eps = eps
        ctx.has_weight = weight is not None
        ctx.input_shape = input.shape
        ctx.normalized_shape = normalized_shape
        ctx.rows = rstd.shape[0]

    @staticmethod
    def backward(ctx, g: Tensor | None, _grad_rstd):
        x, rstd, weight = ctx.saved_tensors
        need_x, _, need_w, _ = ctx.needs_input_grad
        need_w = need_w and ctx.has_weight
        if g is None or not (need_x or need_w):  # y got no gradient, or nothing wants one
            return None, None, None, None
        shape, normalized_shape, rows = ctx.input_shape, ctx.normalized_shape, ctx.rows
        if g.numel() == 0:  # nothing to normalize: every gradient is empty or zero
            return (g.new_zeros(shape) if need_x else None, None,
                    g.new_zeros(normalized_shape) if need_w else None, None)
        row_size = g.numel() // rows  # D
        dtype = _opmath(g.dtype)
        fast = not records_graph() and not batched(g)
        g = to_dtype(g.reshape(rows, row_size), dtype)
        x = to_dtype(x.reshape(rows, row_size), dtype)
        gamma = None if weight is None else to_dtype(weight.reshape(row_size), dtype)
        if fast:
            grad_input, grad_weight = _rms_norm_backward_fast(
                g, x, to_dtype(rstd, dtype), gamma, need_x, need_w)
        else:
            grad_input = grad_weight = None
            rstd = (x.square().mean(1, keepdim=True) + ctx.eps).rsqrt()  # a function of x
            x_hat = x * rstd
            if need_w:
                grad_weight = (g * x_hat).sum(0)  # ∂L/∂γ = Σ_r g·x̂
            if need_x:  # ∂L/∂x = rstd · (gγ − x̂·mean_d(gγ·x̂))
                g_gamma = g if gamma is None else g * gamma
                grad_input = rstd * (g_gamma - x_hat * (g_gamma * x_hat).mean(1, keepdim=True))
        if grad_input is not None:
            grad_input = grad_input.view(shape)
        if grad_weight is not None:
            grad_weight = grad_weight.view(normalized_shape)
        return grad_input, None, grad_weight, None


def _rms_norm_backward_fast(g: Tensor, x: Tensor, rstd: Tensor, gamma: Tensor | None,
                            need_x: bool, need_w: bool) -> tuple[Tensor | None, Tensor | None]:
    """RMSNorm's (∂L/∂x, ∂L/∂γ) on (rows, D) views from the forward's rstd, a (rows, 1) column:
    ∂L/∂γ = Σ_r rstd·(g·x), ∂L/∂x = rstd·(gγ − x·rstd²·Σ_d(gγ·x)/D), in the one buffer that
    first holds g·x for both sums."""
    use_matmul = not torch.is_autocast_enabled(g.device.type)
    buffer = torch.mul(g, x)  # g·x for the sums; then ∂L/∂x
    grad_input = grad_weight = None
    if need_w:
        grad_weight = column_sum(buffer, rstd, use_matmul)
    if need_x:
        coef = row_sum(buffer, gamma, use_matmul).mul_(rstd.square().div_(g.shape[1]))
        grad_input = torch.mul(x, coef, out=buffer).neg_()  # −x·rstd²·Σ_d(gγ·x)/D
        if gamma is None:
            grad_input.add_(g)
        else:
            grad_input.addcmul_(g, gamma)
        grad_input.mul_(rstd)
    return grad_input, grad_weight


def rms_norm(
    input: Tensor,
    normalized_shape: list[int],
    weight: Tensor | None = None,
    eps: float | None = None,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.rms_norm`.

    ``eps=None`` is native's default: the machine epsilon of the dtype it computes in,
    ``torch.finfo(float32).eps`` for half inputs (float32 computation), float64's for float64.
    """
    op = "rms_norm"
    normalized_shape = checked_normalized_shape(op, input, normalized_shape, weight=weight)
    _check_real_float(op, "input", input)
    if weight is not None:  # any floating dtype, as native: y is promoted, then cast to x's
        _check_real_float(op, "weight", weight)
    if eps is None:
        eps = torch.finfo(_opmath(input.dtype)).eps
    return RMSNorm.apply(input, normalized_shape, weight, float(eps))[0]


# ---------------------------------------------------------------------------------- group_norm

class GroupNorm(Function):
    r"""y = γ_c·x̂ + β_c,  x̂ = (x − μ)·rstd,  rstd = 1/√(σ² + ε),  x: (N, C, *),  γ, β: (C,)

    The C channels fall into G groups of K = C/G consecutive channels; μ, σ² are the biased
    mean and variance of each (sample, group): its M = K·∏* values. γ, β are per channel.

    Backward, with g = ∂L/∂y, Σ_grp over a (sample, group)'s M values, Σ_{n,*} over the
    samples and spatial positions of a channel:
        ∂L/∂β = Σ_{n,*} g
        ∂L/∂γ = Σ_{n,*} g·x̂
        ∂L/∂x = rstd/M · (M·gγ − Σ_grp gγ − x̂·Σ_grp(gγ·x̂))
    i.e. layer norm's ∂L/∂x within each group, with γ taken per channel. Everything works on
    (N, G, K, ∏*) views. The formula recomputes μ, rstd from the saved x, so that double
    backward sees their dependence on x; a first-order backward uses the kernel's and one
    buffer of x's size (``_group_norm_backward_fast``).

    Saves: x (for x̂) and the per-(sample, group) μ, rstd (forward outputs of
    ``torch.native_group_norm``, so free) when ∂L/∂x or ∂L/∂γ is needed; γ only for ∂L/∂x;
    nothing for ∂L/∂β. Native saves x, γ, μ and rstd.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None,
                eps: float) -> tuple[Tensor, Tensor, Tensor]:
        input, weight, bias = _upcast_under_autocast(input, weight, bias)
        batch, channels = input.shape[0], input.shape[1]
        return torch.native_group_norm(input, weight, bias, batch, channels,
                                       math.prod(input.shape[2:]), num_groups, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, num_groups, weight, _, eps = inputs
        _, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.set_materialize_grads(False)  # no zero grads for the stats outputs
        need_x, _, need_w, _, _ = ctx.needs_input_grad
        need_stats = need_x or (need_w and weight is not None)
        ctx.save_for_backward(
            input if need_stats else None,
            mean if need_stats else None,
            rstd if need_stats else None,
            weight if need_x else None,
        )
        ctx.eps, ctx.groups = eps, num_groups
        ctx.has_weight = weight is not None
        ctx.input_shape = input.shape

    @staticmethod
    def backward(ctx, g: Tensor | None, _grad_mean, _grad_rstd):
        if g is None:  # grads are not materialized: y got no gradient
            return (None,) * 5
        x, mean, rstd, weight = ctx.saved_tensors
        need_x, _, need_w, need_b, _ = ctx.needs_input_grad
        need_w = need_w and ctx.has_weight
        shape, groups = ctx.input_shape, ctx.groups
        channels = shape[1]
        if g.numel() == 0:  # an empty batch, channel or spatial dim: sums over nothing
            return (g.new_zeros(shape) if need_x else None, None,
                    g.new_zeros(channels) if need_w else None,
                    g.new_zeros(channels) if need_b else None, None)
        batch, per_group = shape[0], channels // groups
        grouped = (batch, groups, per_group, g.numel() // (batch * channels))  # (N, G, K, ∏*)
        dtype = _opmath(g.dtype)
        fast = not records_graph() and not batched(g)
        g = to_dtype(g.reshape(grouped), dtype)
        x = None if x is None else to_dtype(x.reshape(grouped), dtype)
        gamma = None if weight is None else to_dtype(weight, dtype).view(1, groups, per_group, 1)
        if fast:
            stats = (batch, groups, 1, 1)
            grad_input, grad_weight, grad_bias = _group_norm_backward_fast(
                g, x, None if mean is None else to_dtype(mean, dtype).view(stats),
                None if rstd is None else to_dtype(rstd, dtype).view(stats),
                gamma, need_x, need_w, need_b)
        else:
            grad_input = grad_weight = None
            grad_bias = g.sum((0, 3)) if need_b else None  # ∂L/∂β = Σ_{n,*} g
            if need_x or need_w:  # μ, rstd as functions of x, for double backward
                mean, rstd = _centered_stats(x, [2, 3], ctx.eps)
                x_hat = (x - mean) * rstd
            if need_w:
                grad_weight = (g * x_hat).sum((0, 3))  # ∂L/∂γ = Σ_{n,*} g·x̂
            if need_x:  # ∂L/∂x = rstd/M · (M·gγ − Σ_grp gγ − x̂·Σ_grp(gγ·x̂))
                size = grouped[2] * grouped[3]  # M
                g_gamma = g if gamma is None else g * gamma
                grad_input = rstd / size * (
                    size * g_gamma - g_gamma.sum((2, 3), keepdim=True)
                    - x_hat * (g_gamma * x_hat).sum((2, 3), keepdim=True))
        if grad_input is not None:
            grad_input = grad_input.view(shape)
        if grad_weight is not None:
            grad_weight = grad_weight.reshape(channels)
        if grad_bias is not None:
            grad_bias = grad_bias.reshape(channels)
        return grad_input, None, grad_weight, grad_bias, None


def _group_norm_backward_fast(g: Tensor, x: Tensor | None, mean: Tensor | None,
                              rstd: Tensor | None, gamma: Tensor | None, need_x: bool,
                              need_w: bool, need_b: bool
                              ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """GroupNorm's (∂L/∂x, ∂L/∂γ, ∂L/∂β) on (N, G, K, ∏*) views from the kernel's μ, rstd as
    (N, G, 1, 1) and γ as (1, G, K, 1): with per-channel sums Σ_* g and Σ_* g·(x − μ),
    ∂L/∂x = a·g + b·(x − μ) + c, a = γ·rstd, b = −rstd³·Σ_grp gγ(x − μ)/M and
    c = −rstd·Σ_grp gγ/M, in the buffer that first held g·(x − μ) (formed before any product,
    so data far from 0 keeps its precision)."""
    size = g.shape[2] * g.shape[3]  # M
    grad_input = grad_weight = None
    sum_g = g.sum(3, keepdim=True) if need_b or need_x else None  # Σ_* g per (n, c)
    grad_bias = sum_g.sum(0) if need_b else None
    if not (need_x or need_w):
        return grad_input, grad_weight, grad_bias
    buffer = torch.sub(x, mean).mul_(g)  # g·(x − μ) for the sums; then ∂L/∂x
    sum_g_centered = buffer.sum(3, keepdim=True)  # Σ_* g·(x − μ) per (n, c)
    if need_w:
        grad_weight = (sum_g_centered * rstd).sum(0)  # Σ_n rstd·Σ_* g·(x − μ) = Σ g·x̂
    if need_x:
        if gamma is not None:
            sum_g, sum_g_centered = sum_g * gamma, sum_g_centered * gamma
        coef = rstd * (-1.0 / size)  # −rstd/M
        b = (coef * rstd.square()).mul_(sum_g_centered.sum(2, keepdim=True))
        c = coef.mul_(sum_g.sum(2, keepdim=True))
        a = rstd if gamma is None else rstd * gamma
        grad_input = torch.sub(x, mean, out=buffer).mul_(b).add_(c).addcmul_(g, a)
    return grad_input, grad_weight, grad_bias


def _group_norm(input: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None,
                eps: float, op: str = "group_norm") -> Tensor:
    """The checks every group norm needs, and the rule: ``torch.group_norm``'s semantics."""
    if input.dim() < 2:
        raise fail(op, "input of shape (N, C, *)", f"input {shape_str(input)}")
    if isinstance(num_groups, bool) or not isinstance(num_groups, int):
        raise TypeError(f"{op}: expected num_groups as an int, got {num_groups!r}")
    channels = input.shape[1]
    if num_groups <= 0:
        raise fail(op, "num_groups > 0", f"num_groups={num_groups}")
    if channels % num_groups:
        raise fail(op, f"channels divisible by num_groups={num_groups}",
                   f"input {shape_str(input)} with C = {channels}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (channels,):
            raise fail(op, f"{name} of shape ({channels}) for input {shape_str(input)}",
                       f"{name} {shape_str(t)}")
    _check_real_float(op, "input", input)
    check_same_dtype(op, input, mixed_ok=True, weight=weight, bias=bias)
    if weight is not None and bias is not None and weight.dtype != bias.dtype:
        raise fail(op, "weight and bias of one dtype",  # native's mixed kernel takes one
                   f"weight of dtype {weight.dtype}, bias of dtype {bias.dtype}")
    return GroupNorm.apply(input, num_groups, weight, bias, float(eps))[0]


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-05,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.group_norm`.

    As F.group_norm, refuses an input whose N·(C/G)·∏* is 1 (``torch.group_norm`` takes it).
    """
    op = "group_norm"
    if (input.dim() >= 2 and isinstance(num_groups, int) and num_groups > 0
            and input.shape[1] % num_groups == 0  # (else _group_norm names the mismatch)
            and input.shape[0] * (input.shape[1] // num_groups)
            * math.prod(input.shape[2:]) == 1):
        raise fail(op, "more than 1 value to normalize per group and channel, N·(C/G)·∏* > 1 "
                   "(as F.group_norm)", f"input {shape_str(input)} with num_groups={num_groups}")
    return _group_norm(input, num_groups, weight, bias, eps, op)
