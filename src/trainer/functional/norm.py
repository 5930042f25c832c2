"""Batch and layer normalization, with their gradients written out.

Each ``backward`` reads as the formula in its docstring, out of place, with μ and rstd
recomputed from the saved x so that double backward differentiates through them too. A
first-order backward takes the same formula with the forward kernel's μ, rstd and one buffer
of x's size, one named call into :mod:`trainer.functional._fast.norm`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._fast import norm as fast
from .shape import Reshape
from ._util import (
    LOW_PRECISION,
    Function,
    check_float,
    check_same_dtype,
    fail,
    records_graph,
    shape_str,
    to_dtype,
)



def _opmath(dtype: torch.dtype) -> torch.dtype:
    """The dtype backward computes in: float32 for half types, as native kernels accumulate."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _centered_stats(x: Tensor, dims: list[int], eps: float) -> tuple[Tensor, Tensor]:
    """μ and rstd = 1/√(biased var + ε) over ``dims`` (kept as size-1 dims), from x itself.

    Backward uses this when it builds a graph (double backward, torch.func.grad): there μ and
    rstd must be functions of x, not the constants that the forward kernel returned.
    """
    mean = x.mean(dims, keepdim=True)
    var = (x - mean).square().mean(dims, keepdim=True)
    return mean, (var + eps).rsqrt()


class BatchNorm(Function):
    r"""y = γ·x̂ + β,  x̂ = (x − μ)·rstd,  rstd = 1/√(σ² + ε),  x: (N, C, *),  γ, β: (C,)

    Training: μ, σ² are the biased mean and variance of each channel over its m = N·∏* values,
    and the forward kernel updates the running stats (when given) in place:
        running_mean ← (1 − momentum)·running_mean + momentum·μ
        running_var  ← (1 − momentum)·running_var  + momentum·σ²·m/(m − 1)
    Eval: μ, σ² are running_mean, running_var, constants.

    Backward, with g = ∂L/∂y and Σ = sum over a channel's m values (dims N and *):
        ∂L/∂β = Σ g
        ∂L/∂γ = Σ g·x̂
        ∂L/∂x = γ·rstd/m · (m·g − Σg − x̂·Σ(g·x̂))     (training: μ, rstd depend on x)
        ∂L/∂x = γ·rstd·g                              (eval: a per-channel scale)
    The μ and rstd that the forward kernel returns are constants to autograd, so a second
    derivative through them would miss their dependence on x: the formula recomputes them from
    the saved x (training; eval's are truly constant). A first-order backward uses the kernel's
    and one buffer of x's size (``fast.batch_norm_backward``).

    Saves: μ and rstd per channel (fp32 for half inputs; forward outputs, so free); x only
    for ∂L/∂γ and training's ∂L/∂x (eval's ∂L/∂x = γ·rstd·g needs no x, nor μ); γ only for
    ∂L/∂x. Native saves x, γ, both running stats and both batch stats.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                weight: Tensor | None, bias: Tensor | None, training: bool, momentum: float,
                eps: float) -> tuple[Tensor, Tensor, Tensor]:
        if input.numel() == 0:  # native's kernel refuses empty input; torch returns it empty
            stats = input.new_zeros(input.shape[1], dtype=_opmath(input.dtype))
            return input.clone(), stats, stats.clone()
        output, mean, rstd = torch.native_batch_norm(
            input, weight, bias, running_mean, running_var, training, momentum, eps
        )
        if not training:  # the kernel returns no stats in eval; these are the ones it used
            mean = running_mean.clone()
            rstd = (running_var + eps).rsqrt()
        return output, mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, _, _, weight, _, training, _, eps = inputs
        _, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.set_materialize_grads(False)  # no zero grads for the stats outputs
        need_x, _, _, need_w, _ = ctx.needs_input_grad[:5]
        need_w = need_w and weight is not None
        save_x = need_w or (training and need_x)
        ctx.save_for_backward(
            input if save_x else None,
            mean if save_x else None,
            rstd if (need_x or need_w) else None,
            weight if need_x else None,
        )
        ctx.training, ctx.eps = training, eps
        ctx.has_weight = weight is not None
        ctx.input_shape = shape = input.shape
        ctx.per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)  # a (C,) vector's view

    @staticmethod
    def backward(ctx, g: Tensor | None, _grad_mean, _grad_rstd):
        if g is None:  # grads are not materialized: y got no gradient
            return (None,) * 8
        x, mean, rstd, weight = ctx.saved_tensors
        need_x, _, _, need_w, need_b = ctx.needs_input_grad[:5]
        need_w = need_w and ctx.has_weight
        shape = ctx.input_shape
        channels = shape[1]
        if g.numel() == 0:  # empty batch: every sum is over nothing
            return (g.new_zeros(shape) if need_x else None, None, None,
                    g.new_zeros(channels) if need_w else None,
                    g.new_zeros(channels) if need_b else None, None, None, None)
        dtype = _opmath(g.dtype)
        g, x = to_dtype(g, dtype), to_dtype(x, dtype)
        rstd = None if rstd is None else to_dtype(rstd, dtype)
        gamma = None if weight is None else to_dtype(weight, dtype)
        if not records_graph():
            grads = fast.batch_norm_backward(g, x, to_dtype(mean, dtype), rstd, gamma,
                                             ctx.training, need_x, need_w, need_b)
            return grads[0], None, None, grads[1], grads[2], None, None, None

        per_channel = ctx.per_channel  # a (C,) vector as (1, C, 1, ...)
        dims = [0, *range(2, len(shape))]  # Σ: over a channel's m values
        m = g.numel() // channels
        if ctx.training and x is not None:  # μ, rstd as functions of x, for double backward
            mean, rstd = _centered_stats(x, dims, ctx.eps)
        elif rstd is not None:
            mean = None if mean is None else to_dtype(mean, dtype).view(per_channel)
            rstd = rstd.view(per_channel)
        x_hat = None if x is None else (x - mean) * rstd
        grad_input = grad_weight = None
        if need_w:
            grad_weight = (g * x_hat).sum(dims)  # ∂L/∂γ = Σ g·x̂
        if need_x:
            scale = rstd if gamma is None else rstd * gamma.view(per_channel)  # γ·rstd
            if ctx.training:  # ∂L/∂x = γ·rstd/m · (m·g − Σg − x̂·Σ(g·x̂))
                grad_input = scale / m * (m * g - g.sum(dims, keepdim=True)
                                          - x_hat * (g * x_hat).sum(dims, keepdim=True))
            else:  # ∂L/∂x = γ·rstd·g
                grad_input = scale * g
        grad_bias = g.sum(dims) if need_b else None  # ∂L/∂β = Σ g
        return grad_input, None, None, grad_weight, grad_bias, None, None, None


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-05,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.batch_norm`."""
    op = "batch_norm"
    if input.dim() == 1 and input.numel() == 0:  # torch takes it: no channels to normalize
        output = batch_norm(Reshape.apply(input, (1, 0)), running_mean, running_var, weight,
                            bias, training, momentum, eps)
        return Reshape.apply(output, (0,))
    if input.dim() < 2:
        raise fail(op, "input of shape (N, C, *)", f"input {shape_str(input)}")
    channels = input.shape[1]
    if (running_mean is None) != (running_var is None):
        raise fail(op, "running_mean and running_var both None or both tensors",
                   f"running_mean {_maybe_shape(running_mean)}, "
                   f"running_var {_maybe_shape(running_var)}")
    if not training and running_mean is None:
        raise fail(op, "running_mean and running_var in evaluation mode (training=False)",
                   "None")
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != channels:
            raise fail(op, f"{name} of shape ({channels}) for input {shape_str(input)}",
                       f"{name} {shape_str(t)}")
    if training:
        values_per_channel = input.shape[0]
        for size in input.shape[2:]:
            values_per_channel *= size
        if values_per_channel == 1 and channels:  # (with no channel there is nothing to do)
            raise fail(op, "more than 1 value per channel when training",
                       f"input size {shape_str(input)}")
        if eps <= 0.0:
            raise fail(op, "eps > 0 during training", f"eps={eps}")
    elif eps < 0.0:
        raise fail(op, "eps >= 0", f"eps={eps}")
    if isinstance(momentum, bool) or not isinstance(momentum, (float, int)):
        # F.batch_norm refuses None as well; nn.BatchNorm turns momentum=None into a float.
        raise TypeError(f"{op}: expected momentum as a float, got {momentum!r}")
    check_float(op, "input", input)
    check_same_dtype(op, input, mixed_ok=True, running_mean=running_mean,
                     running_var=running_var, weight=weight, bias=bias)
    return BatchNorm.apply(input, running_mean, running_var, weight, bias, bool(training),
                           float(momentum), float(eps))[0]


def _maybe_shape(t: Tensor | None) -> str:
    return "None" if t is None else shape_str(t)


class LayerNorm(Function):
    r"""y = γ·x̂ + β,  x̂ = (x − μ)·rstd,  rstd = 1/√(σ² + ε),  x: (*, *S),  γ, β: S

    μ, σ² are the biased mean and variance of each row's D = ∏S trailing values.

    Backward, with g = ∂L/∂y, Σ_d = sum over a row's D values, Σ_r = sum over rows:
        ∂L/∂β = Σ_r g
        ∂L/∂γ = Σ_r g·x̂
        ∂L/∂x = rstd/D · (D·gγ − Σ_d gγ − x̂·Σ_d(gγ·x̂))
    Everything works on (rows, D) views. As in BatchNorm, the formula recomputes μ, rstd from
    the saved x, so that double backward sees their dependence on x; a first-order backward
    uses the kernel's and one buffer of x's size (``fast.layer_norm_backward``).

    Saves: x (for x̂) and the per-row μ, rstd (forward outputs of the kernel) when ∂L/∂x or
    ∂L/∂γ is needed; γ only for ∂L/∂x. Native saves x, μ, rstd, γ and β.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None,
                bias: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        output, mean, rstd = torch.native_layer_norm(input, normalized_shape, weight, bias, eps)
        rows = mean.numel()  # the stats as (rows, 1) columns, ready for backward's 2-D views
        return output, mean.view(rows, 1), rstd.view(rows, 1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, normalized_shape, weight, _, eps = inputs
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
        ctx.eps = eps
        ctx.has_weight = weight is not None
        ctx.input_shape = input.shape
        ctx.normalized_shape = normalized_shape
        ctx.rows = mean.shape[0]

    @staticmethod
    def backward(ctx, g: Tensor | None, _grad_mean, _grad_rstd):
        if g is None:  # grads are not materialized: y got no gradient
            return (None,) * 5
        x, mean, rstd, weight = ctx.saved_tensors
        need_x, _, need_w, need_b, _ = ctx.needs_input_grad
        need_w = need_w and ctx.has_weight
        shape, normalized_shape, rows = ctx.input_shape, ctx.normalized_shape, ctx.rows
        if g.numel() == 0:  # nothing to normalize: every gradient is empty or zero
            return (g.new_zeros(shape) if need_x else None, None,
                    g.new_zeros(normalized_shape) if need_w else None,
                    g.new_zeros(normalized_shape) if need_b else None, None)
        row_size = g.numel() // rows  # D
        dtype = _opmath(g.dtype)
        g = to_dtype(g.reshape(rows, row_size), dtype)
        x = None if x is None else to_dtype(x.reshape(rows, row_size), dtype)
        gamma = None if weight is None else to_dtype(weight.reshape(row_size), dtype)
        if not records_graph():
            grad_input, grad_weight, grad_bias = fast.layer_norm_backward(
                g, x, to_dtype(mean, dtype), to_dtype(rstd, dtype), gamma, need_x, need_w,
                need_b)
        else:
            grad_input = grad_weight = None
            grad_bias = g.sum(0) if need_b else None  # ∂L/∂β = Σ_r g
            if need_x or need_w:  # μ, rstd as functions of x, for double backward
                mean, rstd = _centered_stats(x, [1], ctx.eps)
                x_hat = (x - mean) * rstd
            if need_w:
                grad_weight = (g * x_hat).sum(0)  # ∂L/∂γ = Σ_r g·x̂
            if need_x:  # ∂L/∂x = rstd/D · (D·gγ − Σ_d gγ − x̂·Σ_d(gγ·x̂))
                g_gamma = g if gamma is None else g * gamma
                grad_input = rstd / row_size * (
                    row_size * g_gamma - g_gamma.sum(1, keepdim=True)
                    - x_hat * (g_gamma * x_hat).sum(1, keepdim=True))
        if grad_input is not None:
            grad_input = grad_input.view(shape)
        if grad_weight is not None:
            grad_weight = grad_weight.view(normalized_shape)
        if grad_bias is not None:
            grad_bias = grad_bias.view(normalized_shape)
        return grad_input, None, grad_weight, grad_bias, None


def checked_normalized_shape(op: str, input: Tensor, normalized_shape,
                             **params: Tensor | None) -> tuple[int, ...]:
    """``normalized_shape`` as a tuple of ints, refused (naming ``op`` and the shapes) unless
    it is a non-empty sequence matching input's trailing dims and the shape of each of
    ``params`` (weight, bias) that is given: the checks layer_norm and rms_norm share."""
    if not isinstance(normalized_shape, Sequence) or isinstance(normalized_shape, str):
        # F.layer_norm and F.rms_norm take a sequence only (their nn modules accept an int)
        raise TypeError(f"{op}: expected normalized_shape as a sequence of ints, "
                        f"got {normalized_shape!r}")
    normalized_shape = tuple(int(s) for s in normalized_shape)
    norm_str = "(" + ", ".join(str(s) for s in normalized_shape) + ")"
    if not normalized_shape:
        raise fail(op, "normalized_shape with at least one dim", "normalized_shape ()")
    trailing = tuple(input.shape[max(input.dim() - len(normalized_shape), 0):])
    if trailing != normalized_shape:
        raise fail(op, f"input of shape (*, {norm_str[1:]} for normalized_shape={norm_str}",
                   f"input {shape_str(input)}")
    for name, t in params.items():
        if t is not None and tuple(t.shape) != normalized_shape:
            raise fail(op, f"{name} of shape {norm_str} (normalized_shape)",
                       f"{name} {shape_str(t)}")
    return normalized_shape


def layer_norm(
    input: Tensor,
    normalized_shape: list[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-05,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.layer_norm`."""
    op = "layer_norm"
    normalized_shape = checked_normalized_shape(op, input, normalized_shape, weight=weight,
                                                bias=bias)
    check_float(op, "input", input)
    check_same_dtype(op, input, mixed_ok=True, weight=weight, bias=bias)
    return LayerNorm.apply(input, normalized_shape, weight, bias, float(eps))[0]
