"""Batch and layer normalization, with their gradients written out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

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


def _channel_sum_fn(g: Tensor):
    """Σ over every dim but the channel dim 1, the fastest way for g's layout on CPU.

    (N, C): a matrix-vector product with ones reads the rows once, ~2x faster than sum(0).
    Contiguous (N, C, *): a sum over dims 0 and 2 of its (N, C, ∏*) view, ~1.5x faster than
    the same sum over dims (0, 2, 3, …). Under autocast a matmul would run in low precision,
    so there the plain reduction is used.
    """
    if g.dim() == 2 and not torch.is_autocast_enabled(g.device.type):
        ones = g.new_ones(g.shape[0])
        return lambda t: torch.mv(t.t(), ones)
    dims = [0, *range(2, g.dim())]
    return lambda t: (t.view(t.shape[0], t.shape[1], -1).sum([0, 2]) if t.is_contiguous()
                      else t.sum(dims))


def _column_sum(rows: Tensor, weights: Tensor | None, use_matmul: bool) -> Tensor:
    """Σ_r weights[r]·rows[r] of a 2-D (R, D) tensor (plain Σ_r when weights is None).

    A vector-matrix product reads ``rows`` once, about twice as fast on CPU as ``sum(0)``.
    Under autocast a matmul would run in low precision, so there the plain reduction is used.
    """
    if not use_matmul:
        return (rows if weights is None else rows * weights.reshape(-1, 1)).sum(0)
    if weights is None:
        weights = rows.new_ones(rows.shape[0])
    return torch.mv(rows.t(), weights.view(-1))


def _row_sum(rows: Tensor, weights: Tensor | None, use_matmul: bool) -> Tensor:
    """Σ_d rows[:, d]·weights[d] of a 2-D (R, D) tensor, as an (R, 1) column."""
    if weights is None:
        return rows.sum(1, keepdim=True)
    if not use_matmul:
        return (rows * weights).sum(1, keepdim=True)
    return torch.mv(rows, weights).view(-1, 1)


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
    Training's ∂L/∂x is evaluated as a·g + b·(x − μ) + c with per-channel a, b, c, in one
    buffer of x's size that first holds g·(x − μ) for Σ(g·x̂): one allocation, like native.

    Double backward: the μ and rstd that the forward kernel returns are constants to autograd,
    so a second derivative through them would miss their dependence on x. When backward builds
    a graph (torch.is_grad_enabled(): create_graph=True, torch.func.grad), training recomputes
    μ and rstd from the saved x with differentiable ops; eval's μ, rstd are truly constant.

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
        shape, per_channel = ctx.input_shape, ctx.per_channel
        channels = shape[1]
        if g.numel() == 0:  # empty batch: every sum is over nothing
            return (g.new_zeros(shape) if need_x else None, None, None,
                    g.new_zeros(channels) if need_w else None,
                    g.new_zeros(channels) if need_b else None, None, None, None)
        dtype = _opmath(g.dtype)
        g, x = to_dtype(g, dtype), to_dtype(x, dtype)
        if records_graph():  # building a graph: out of place, μ and rstd from x
            grad_input, grad_weight, grad_bias = BatchNorm._graph_backward(
                ctx, g, x, mean, rstd, weight, need_x, need_w, need_b)
            return grad_input, None, None, grad_weight, grad_bias, None, None, None

        training = ctx.training
        channel_sum = _channel_sum_fn(g)
        grad_input = grad_weight = None
        sum_g = channel_sum(g) if need_b or (need_x and training) else None
        if rstd is not None:
            rstd = to_dtype(rstd, dtype)
        sum_g_xhat = buffer = None
        if need_w or (need_x and training):  # the one full-size buffer: g·(x − μ), then ∂L/∂x
            mean = to_dtype(mean, dtype).view(per_channel)
            buffer = torch.sub(x, mean).mul_(g)
            sum_g_xhat = channel_sum(buffer).mul_(rstd)  # Σ g·x̂ = rstd·Σ g·(x − μ)
            grad_weight = sum_g_xhat if need_w else None
        if need_x:
            a = rstd if weight is None else rstd * to_dtype(weight, dtype)  # γ·rstd, (C,)
            if not training:  # μ, rstd are constants: a per-channel scale
                grad_input = g * a.view(per_channel)
            else:  # a·g + b·(x − μ) + c, per-channel a, b, c
                coef = a * (-1.0 / (g.numel() // channels))  # −γ·rstd/m
                b = (coef * rstd).mul_(sum_g_xhat)  # −γ·rstd²·Σ(g·x̂)/m
                c = coef * sum_g  # −γ·rstd·Σg/m
                grad_input = torch.sub(x, mean, out=buffer)
                if len(shape) == 2:  # channels are the contiguous dim: one fused pass
                    torch.addcmul(c, grad_input, b, out=grad_input)
                else:  # (addcmul with two per-channel operands takes a slow, scalar loop)
                    grad_input.mul_(b.view(per_channel)).add_(c.view(per_channel))
                grad_input.addcmul_(g, a.view(per_channel))
        return grad_input, None, None, grad_weight, sum_g if need_b else None, None, None, None

    @staticmethod
    def _graph_backward(ctx, g, x, mean, rstd, weight, need_x, need_w, need_b):
        """The same gradients with out-of-place ops, and in training μ and rstd recomputed
        from x, so that autograd can differentiate them (double backward)."""
        shape, per_channel, training = ctx.input_shape, ctx.per_channel, ctx.training
        dims = [0, *range(2, len(shape))]
        dtype = g.dtype
        if training and x is not None:
            mean, rstd = _centered_stats(x, dims, ctx.eps)
        elif rstd is not None:
            rstd = to_dtype(rstd, dtype).view(per_channel)
            mean = None if mean is None else to_dtype(mean, dtype).view(per_channel)
        grad_input = grad_weight = grad_bias = None
        sum_g = g.sum(dims) if need_b or (need_x and training) else None
        sum_g_xhat = None
        if need_w or (need_x and training):
            sum_g_xhat = (g * (x - mean)).sum(dims) * rstd.view(-1)
        if need_w:
            grad_weight = sum_g_xhat
        if need_b:
            grad_bias = sum_g
        if need_x:
            scale = rstd if weight is None else rstd * to_dtype(weight, dtype).view(per_channel)
            if not training:
                grad_input = g * scale
            else:
                coef = scale * (-1.0 / (g.numel() // shape[1]))
                grad_input = (scale * g + coef * rstd * sum_g_xhat.view(per_channel) * (x - mean)
                              + coef * sum_g.view(per_channel))
        return grad_input, grad_weight, grad_bias


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
        if values_per_channel == 1:
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
    Everything works on (rows, D) views: the sums are vector-matrix products, and ∂L/∂x is
    built in one buffer of x's size that first holds g·(x − μ) for them.

    Double backward: as in BatchNorm, the μ, rstd from the forward kernel are constants to
    autograd, so when backward builds a graph it recomputes them from the saved x.

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
        row_size = g.numel() // rows
        dtype = _opmath(g.dtype)
        g = to_dtype(g.reshape(rows, row_size), dtype)
        use_matmul = not torch.is_autocast_enabled(g.device.type)
        grad_input = grad_weight = grad_bias = None
        if need_b:
            grad_bias = _column_sum(g, None, use_matmul).view(normalized_shape)
        if not (need_x or need_w):
            return grad_input, None, grad_weight, grad_bias, None

        x = to_dtype(x.reshape(rows, row_size), dtype)
        gamma = None if weight is None else to_dtype(weight.reshape(row_size), dtype)
        if records_graph():
            grad_input, grad_weight = LayerNorm._graph_backward(ctx, g, x, gamma,
                                                                need_x, need_w)
        else:
            mean, rstd = to_dtype(mean, dtype), to_dtype(rstd, dtype)
            buffer = torch.sub(x, mean).mul_(g)  # g·(x − μ) for the sums; then ∂L/∂x
            if need_w:
                grad_weight = _column_sum(buffer, rstd, use_matmul)
            if need_x:
                sum_g_gamma = _row_sum(g, gamma, use_matmul)
                # Σ_d(gγ·x̂)·rstd = Σ_d gγ(x − μ)·rstd², the coefficient of (x − μ)
                coef = _row_sum(buffer, gamma, use_matmul).mul_(rstd).mul_(rstd)
                grad_input = torch.sub(mean, x, out=buffer).mul_(coef).sub_(sum_g_gamma)
                if gamma is None:
                    grad_input.add_(g, alpha=row_size)
                else:
                    grad_input.addcmul_(g, gamma * row_size)
                grad_input.mul_(rstd / row_size)
        if grad_input is not None:
            grad_input = grad_input.view(shape)
        if grad_weight is not None:
            grad_weight = grad_weight.view(normalized_shape)
        return grad_input, None, grad_weight, grad_bias, None

    @staticmethod
    def _graph_backward(ctx, g, x, gamma, need_x, need_w):
        """The same gradients with out-of-place ops and μ, rstd recomputed from x, so that
        autograd can differentiate them (double backward)."""
        mean, rstd = _centered_stats(x, [1], ctx.eps)
        x_centered = x - mean
        grad_input = grad_weight = None
        if need_w:
            grad_weight = (g * x_centered * rstd).sum(0)
        if need_x:
            g_gamma = g if gamma is None else g * gamma
            mean_g_gamma = g_gamma.mean(1, keepdim=True)
            mean_g_gamma_xc = (g_gamma * x_centered).mean(1, keepdim=True)
            grad_input = (g_gamma - mean_g_gamma - x_centered * rstd.square() * mean_g_gamma_xc)
            grad_input = grad_input * rstd
        return grad_input, grad_weight


def layer_norm(
    input: Tensor,
    normalized_shape: list[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-05,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.layer_norm`."""
    op = "layer_norm"
    if not isinstance(normalized_shape, Sequence) or isinstance(normalized_shape, str):
        # F.layer_norm takes a sequence only (nn.LayerNorm is the one that accepts an int)
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
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != normalized_shape:
            raise fail(op, f"{name} of shape {norm_str} (normalized_shape)",
                       f"{name} {shape_str(t)}")
    check_float(op, "input", input)
    check_same_dtype(op, input, mixed_ok=True, weight=weight, bias=bias)
    return LayerNorm.apply(input, normalized_shape, weight, bias, float(eps))[0]
