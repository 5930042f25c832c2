"""LayerNorm fused with what follows it in a pre-norm transformer block, so that the normed
activations (and the MLP's GELU output) are recomputed in backward instead of kept:

- ``layer_norm_linear``: ``linear(layer_norm(x), W, b)`` (a block's ``ln_1`` -> ``c_attn``);
- ``layer_norm_mlp``: ``c_proj(gelu(c_fc(layer_norm(x))))`` (``ln_2`` -> the MLP).

Each ``backward`` reads as the formula in its docstring, out of place. With a graph recorded
(double backward) it recomputes μ, rstd (and the MLP's pre-activation h) from the saved x, so
that autograd sees their dependence on the inputs; a first-order backward uses the forward's,
the MLP's GELU pair from one call, and buffers reused in place (``_fast.fused``).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from ._fast import fused as fast
from ._util import (
    Function,
    batched,
    autocast_lower,
    check_float,
    check_same_dtype,
    fail,
    records_graph,
    shape_str,
    to_dtype,
)
from .norm import _centered_stats, _opmath

__all__ = ["layer_norm_linear", "layer_norm_mlp"]

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_K, _GELU_TANH_C = math.sqrt(2.0 / math.pi), 0.044715


def _autocast_off(device_type: str):
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _rows(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def _row_sum(t: Tensor) -> Tensor:
    """Σ over every row (all leading dims) of a (*, D) tensor -> (D,)."""
    return _rows(t).sum(0)


def _layer_norm_grads(g_normed: Tensor, x_hat: Tensor, rstd: Tensor, gamma: Tensor | None,
                      need_x: bool, need_gamma: bool, need_beta: bool):
    """LayerNorm's (∂x, ∂γ, ∂β) from gn = ∂L/∂(γx̂ + β), over the last dim (D values):
    ∂x = rstd·(gnγ − mean_d gnγ − x̂·mean_d(gnγ·x̂)),  ∂γ = Σ_rows gn·x̂,  ∂β = Σ_rows gn."""
    grad_x = grad_gamma = grad_beta = None
    if need_beta:
        grad_beta = _row_sum(g_normed)
    if need_gamma:
        grad_gamma = _row_sum(g_normed * x_hat)
    if need_x:
        g_gamma = g_normed if gamma is None else g_normed * gamma
        grad_x = rstd * (g_gamma - g_gamma.mean(-1, keepdim=True)
                         - x_hat * (g_gamma * x_hat).mean(-1, keepdim=True))
    return grad_x, grad_gamma, grad_beta


def _normed(x: Tensor, mean: Tensor, rstd: Tensor, gamma: Tensor | None, beta: Tensor | None,
            eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(x̂, rstd, γx̂ + β); with a graph recorded, μ and rstd are recomputed from x first."""
    if records_graph():
        mean, rstd = _centered_stats(x, [-1], eps)
    x_hat = (x - mean) * rstd
    normed = x_hat if gamma is None else x_hat * gamma
    return x_hat, rstd, (normed if beta is None else normed + beta)


class LayerNormLinear(Function):
    r"""z = n Wᵀ + b,   n = γ·x̂ + β,   x̂ = (x − μ)·rstd,   rstd = 1/√(σ² + ε)

    x: (*, C),  γ, β: (C,),  W: (out, C),  b: (out,);  μ, σ² per row of C values (biased).

    Backward, with g = ∂L/∂z, Σ_r over rows, mean_d over a row's C values:
        ∂L/∂b = Σ_r g
        ∂L/∂W = Σ_r gᵀ n                      (n recomputed from x, μ, rstd)
        gn    = g W                           (∂L/∂n)
        ∂L/∂β = Σ_r gn
        ∂L/∂γ = Σ_r gn·x̂
        ∂L/∂x = rstd·(gnγ − mean_d gnγ − x̂·mean_d(gnγ·x̂))

    Saves: x and the per-row μ, rstd (forward outputs of the norm kernel, (*, 1)); γ, β, W
    (parameters). Not n, which the unfused pair keeps for ∂W beside the norm's own x: one
    activation of x's size instead of two. With a graph recorded, μ and rstd are recomputed
    from x, so double backward differentiates through them.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, ln_weight: Tensor | None, ln_bias: Tensor | None, weight: Tensor,
                bias: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        device = input.device.type
        normed, mean, rstd = torch.native_layer_norm(input, (input.shape[-1],), ln_weight,
                                                     ln_bias, eps)
        normed, w, b = autocast_lower(device, normed, weight, bias)
        with _autocast_off(device):
            return torch.nn.functional.linear(normed, w, b), mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ln_weight, ln_bias, weight, _, eps = inputs
        _, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.set_materialize_grads(False)
        need_x, need_gamma, need_beta, need_w, _ = ctx.needs_input_grad[:5]
        need_normed = need_x or need_gamma or need_beta  # anything through gn
        save_x = need_x or need_gamma or need_w
        ctx.save_for_backward(input if save_x else None, mean if save_x else None,
                              rstd if save_x else None, ln_weight if save_x else None,
                              ln_bias if need_w else None, weight if need_normed else None)
        ctx.eps, ctx.input_shape = eps, input.shape

    @staticmethod
    def backward(ctx, g: Tensor | None, _grad_mean, _grad_rstd):
        if g is None:
            return (None,) * 6
        x, mean, rstd, gamma, beta, weight = ctx.saved_tensors
        need_x, need_gamma, need_beta, need_w, need_b = ctx.needs_input_grad[:5]
        dtype = _opmath(g.dtype)
        g, x, mean, rstd, gamma, beta, weight = (
            to_dtype(t, dtype) for t in (g, x, mean, rstd, gamma, beta, weight))
        grad_b = _row_sum(g) if need_b else None  # ∂L/∂b = Σ_r g
        need_normed = need_x or need_gamma or need_beta
        if not records_graph() and not batched(g):  # the same formulas, on 2-D rows
            rows_g, x_hat, rstd = _rows(g), None, None if rstd is None else _rows(rstd)
            if x is not None:
                x_hat = fast.normalized(_rows(x), _rows(mean), rstd)
            grad_w = fast.normed_weight_grad(rows_g, x_hat, gamma, beta) if need_w else None
            grads = (fast.layer_norm_grads(rows_g.mm(weight), x_hat, rstd, gamma, need_x,
                                           need_gamma, need_beta)
                     if need_normed else (None, None, None))
            return (_shaped(grads[0], ctx.input_shape), *grads[1:], grad_w, grad_b, None)
        grad_w = x_hat = None
        if x is not None:
            x_hat, rstd, normed = _normed(x, mean, rstd, gamma, beta, ctx.eps)
            if need_w:
                grad_w = _rows(g).t().mm(_rows(normed))  # ∂L/∂W = Σ_r gᵀ n
        grads = (None, None, None)
        if need_normed:
            g_normed = g.matmul(weight)  # gn = g W
            grads = _layer_norm_grads(g_normed, x_hat, rstd, gamma, need_x, need_gamma,
                                      need_beta)
        return (*grads, grad_w, grad_b, None)


def _shaped(t: Tensor | None, shape) -> Tensor | None:
    return None if t is None else t.view(shape)


def _gelu_pair(h: Tensor, approximate: str) -> tuple[Tensor, Tensor]:
    """(gelu(h), gelu′(h)), out of place:
    'none': gelu = h·Φ(h), gelu′ = Φ(h) + h·φ(h), Φ(h) = ½(1 + erf(h/√2)), φ(h) = e^(−h²/2)/√(2π);
    'tanh': gelu = ½h(1 + t), gelu′ = ½(1 + t) + ½h(1 − t²)·k(1 + 3c·h²), t = tanh(k(h + c·h³))."""
    if approximate == "tanh":
        t = torch.tanh(_GELU_TANH_K * (h + _GELU_TANH_C * h * h * h))
        half = 0.5 * (1.0 + t)
        du = _GELU_TANH_K * (1.0 + 3.0 * _GELU_TANH_C * h * h)
        return h * half, half + 0.5 * h * (1.0 - t * t) * du
    cdf = 0.5 * (1.0 + torch.erf(h * _SQRT1_2))
    return h * cdf, cdf + h * (_INV_SQRT_2PI * torch.exp(-0.5 * h * h))


class LayerNormMLP(Function):
    r"""z = gelu(h) W₂ᵀ + b₂,   h = n W₁ᵀ + b₁,   n = γ·x̂ + β  (x̂, rstd as in LayerNormLinear)

    x: (*, C),  γ, β: (C,),  W₁: (F, C),  b₁: (F,),  W₂: (out, F),  b₂: (out,);  gelu exact
    (erf) or approximate='tanh'.

    Backward, with g = ∂L/∂z, a = gelu(h), Σ_r over rows:
        ∂L/∂b₂ = Σ_r g
        ∂L/∂W₂ = Σ_r gᵀ a                     (a recomputed from h)
        gh     = (g W₂) ⊙ gelu′(h)            gelu′ = Φ(h) + h·φ(h)  ('tanh': see _gelu_pair)
        ∂L/∂b₁ = Σ_r gh
        ∂L/∂W₁ = Σ_r ghᵀ n                    (n recomputed from x, μ, rstd)
        gn     = gh W₁
        ∂L/∂β, ∂L/∂γ, ∂L/∂x: LayerNorm's, from gn (as in LayerNormLinear)

    Saves: x, the per-row μ, rstd and h (*, F), returned by forward as non-differentiable
    outputs so they can be kept; γ, β, W₁, b₁, W₂ (parameters). Not n, nor a = gelu(h): the
    unfused chain keeps x, n, h and a, this keeps x and h. A first-order backward takes
    gelu(h) and gelu′(h) from one call of torch's gelu (``_fast.fused.gelu_and_derivative``);
    with a graph recorded, μ, rstd and h are recomputed from x, so double backward
    differentiates through them.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, ln_weight: Tensor | None, ln_bias: Tensor | None,
                fc_weight: Tensor, fc_bias: Tensor | None, proj_weight: Tensor,
                proj_bias: Tensor | None, eps: float, approximate: str):
        device = input.device.type
        normed, mean, rstd = torch.native_layer_norm(input, (input.shape[-1],), ln_weight,
                                                     ln_bias, eps)
        normed, w1, b1, w2, b2 = autocast_lower(device, normed, fc_weight, fc_bias,
                                                proj_weight, proj_bias)
        with _autocast_off(device):
            hidden = torch.nn.functional.linear(normed, w1, b1)
            del normed
            activation = torch.nn.functional.gelu(hidden, approximate=approximate)
            output = torch.nn.functional.linear(activation, w2, b2)
        return output, hidden, mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ln_weight, ln_bias, fc_weight, fc_bias, proj_weight, _, eps, approximate = inputs
        _, hidden, mean, rstd = output
        ctx.mark_non_differentiable(hidden, mean, rstd)
        ctx.set_materialize_grads(False)
        need_x, need_gamma, need_beta, need_w1, need_b1, need_w2 = ctx.needs_input_grad[:6]
        through_h = need_x or need_gamma or need_beta or need_w1 or need_b1
        # x (and the parameters that make h from it) whenever a gradient flows through h:
        # the formula path recomputes h from them, so double backward sees h's inputs.
        ctx.save_for_backward(*(t if through_h else None for t in (input, mean, rstd)),
                              hidden if (through_h or need_w2) else None,
                              *(t if through_h else None
                                for t in (ln_weight, ln_bias, fc_weight, fc_bias, proj_weight)))
        ctx.eps, ctx.approximate, ctx.input_shape = eps, approximate, input.shape

    @staticmethod
    def backward(ctx, g: Tensor | None, _grad_hidden, _grad_mean, _grad_rstd):
        if g is None:
            return (None,) * 9
        x, mean, rstd, hidden, gamma, beta, w1, b1, w2 = ctx.saved_tensors
        need_x, need_gamma, need_beta, need_w1, need_b1, need_w2, need_b2 = \
            ctx.needs_input_grad[:7]
        dtype = _opmath(g.dtype)
        g, x, mean, rstd, hidden, gamma, beta, w1, b1, w2 = (
            to_dtype(t, dtype) for t in (g, x, mean, rstd, hidden, gamma, beta, w1, b1, w2))
        through_h = x is not None  # saved whenever a gradient flows through h
        need_normed = need_x or need_gamma or need_beta
        grad_b2 = _row_sum(g) if need_b2 else None  # ∂L/∂b₂ = Σ_r g
        grad_x = grad_gamma = grad_beta = grad_w1 = grad_b1 = grad_w2 = None
        if not records_graph() and not batched(g):  # the same formulas, on 2-D rows
            rows_g = _rows(g)
            if through_h:
                activation, slope = fast.gelu_and_derivative(_rows(hidden), ctx.approximate)
            elif need_w2:  # only ∂W₂ (and ∂b₂): a alone
                activation = torch.nn.functional.gelu(_rows(hidden), approximate=ctx.approximate)
            grad_w2 = rows_g.t().mm(activation) if need_w2 else None
            if through_h:
                rstd = _rows(rstd)
                x_hat = fast.normalized(_rows(x), _rows(mean), rstd)
                g_hidden = rows_g.mm(w2).mul_(slope)
                grad_b1 = g_hidden.sum(0) if need_b1 else None
                grad_w1 = fast.normed_weight_grad(g_hidden, x_hat, gamma, beta) \
                    if need_w1 else None
                if need_normed:
                    grad_x, grad_gamma, grad_beta = fast.layer_norm_grads(
                        g_hidden.mm(w1), x_hat, rstd, gamma, need_x, need_gamma, need_beta)
                    grad_x = _shaped(grad_x, ctx.input_shape)
            return (grad_x, grad_gamma, grad_beta, grad_w1, grad_b1, grad_w2, grad_b2, None,
                    None)
        x_hat = normed = activation = slope = None
        if through_h:
            x_hat, rstd, normed = _normed(x, mean, rstd, gamma, beta, ctx.eps)
            hidden = torch.nn.functional.linear(normed, w1, b1)  # h as a function of x, W₁…
        if through_h or need_w2:
            activation, slope = _gelu_pair(hidden, ctx.approximate)
        grad_w2 = _rows(g).t().mm(_rows(activation)) if need_w2 else None  # Σ_r gᵀ a
        if through_h:
            g_hidden = g.matmul(w2) * slope  # gh = (g W₂) ⊙ gelu′(h)
            grad_b1 = _row_sum(g_hidden) if need_b1 else None  # Σ_r gh
            grad_w1 = _rows(g_hidden).t().mm(_rows(normed)) if need_w1 else None  # Σ_r ghᵀ n
            if need_normed:
                grad_x, grad_gamma, grad_beta = _layer_norm_grads(
                    g_hidden.matmul(w1), x_hat, rstd, gamma, need_x, need_gamma, need_beta)
        return (grad_x, grad_gamma, grad_beta, grad_w1, grad_b1, grad_w2, grad_b2, None, None)


def _check_norm(op: str, input: Tensor, ln_weight: Tensor | None, ln_bias: Tensor | None,
                eps: float) -> int:
    if not isinstance(input, Tensor) or input.dim() == 0:
        got = f"input {shape_str(input)}" if isinstance(input, Tensor) else type(input).__name__
        raise fail(op, "input of shape (*, C)", got)
    check_float(op, "input", input)
    features = input.shape[-1]
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if t is not None and tuple(t.shape) != (features,):
            raise fail(op, f"{name} of shape ({features},) for input {shape_str(input)}",
                       f"{name} {shape_str(t)}")
    if eps < 0:
        raise fail(op, "eps >= 0", f"eps={eps}")
    return features


def _check_linear(op: str, names: tuple[str, str], in_features: int, weight: Tensor,
                  bias: Tensor | None, after: str) -> None:
    weight_name, bias_name = names
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.shape[1] != in_features:
        got = shape_str(weight) if isinstance(weight, Tensor) else type(weight).__name__
        raise fail(op, f"{weight_name} of shape (out, {in_features}) for {after}",
                   f"{weight_name} {got}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise fail(op, f"{bias_name} of shape ({weight.shape[0]},)",
                   f"{bias_name} {shape_str(bias)}")


def layer_norm_linear(input: Tensor, ln_weight: Tensor | None, ln_bias: Tensor | None,
                      weight: Tensor, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """``linear(layer_norm(input, (C,), ln_weight, ln_bias, eps), weight, bias)``, keeping x
    instead of the normed activations (see :class:`LayerNormLinear`)."""
    op = "layer_norm_linear"
    features = _check_norm(op, input, ln_weight, ln_bias, eps)
    _check_linear(op, ("weight", "bias"), features, weight, bias, f"input {shape_str(input)}")
    check_same_dtype(op, input, ln_weight=ln_weight, ln_bias=ln_bias,
                     weight=weight, bias=bias)
    return LayerNormLinear.apply(input, ln_weight, ln_bias, weight, bias, float(eps))[0]


def layer_norm_mlp(input: Tensor, ln_weight: Tensor | None, ln_bias: Tensor | None,
                   fc_weight: Tensor, fc_bias: Tensor | None, proj_weight: Tensor,
                   proj_bias: Tensor | None = None, eps: float = 1e-5,
                   approximate: str = "none") -> Tensor:
    """``linear(gelu(linear(layer_norm(input, (C,), ln_weight, ln_bias, eps), fc_weight,
    fc_bias), approximate), proj_weight, proj_bias)``: a pre-norm transformer MLP that keeps x
    and the pre-activation h only (see :class:`LayerNormMLP`)."""
    op = "layer_norm_mlp"
    features = _check_norm(op, input, ln_weight, ln_bias, eps)
    _check_linear(op, ("fc_weight", "fc_bias"), features, fc_weight, fc_bias,
                  f"input {shape_str(input)}")
    _check_linear(op, ("proj_weight", "proj_bias"), fc_weight.shape[0], proj_weight, proj_bias,
                  f"fc_weight {shape_str(fc_weight)}")
    if approximate not in ("none", "tanh"):
        raise fail(op, "approximate 'none' or 'tanh'", f"approximate={approximate!r}")
    check_same_dtype(op, input, ln_weight=ln_weight, ln_bias=ln_bias,
                     fc_weight=fc_weight, fc_bias=fc_bias, proj_weight=proj_weight,
                     proj_bias=proj_bias)
    return LayerNormMLP.apply(input, ln_weight, ln_bias, fc_weight, fc_bias, proj_weight,
                              proj_bias, float(eps), approximate)[0]
