"""First-order pieces of the fused transformer rules (:mod:`trainer.functional.fused_norm`,
:mod:`trainer.functional.fused_attention`): the same formulas, in fewer passes and buffers.

Each is the formula named in its docstring; ``tests/test_rule_checks.py`` holds every rule's
first-order gradients equal to its formula path (``create_graph=True``), and
``tests/functional/test_fused_blocks.py`` holds each function here equal to the plain formula.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._util import LOG2_E
from .activation import GELU_TANH_CUBIC, LOG2_INV_SQRT_2PI, SQRT_2_OVER_PI
from .norm import column_sum, row_sum


def gelu_and_derivative(h: Tensor, approximate: str) -> tuple[Tensor, Tensor]:
    """``(gelu(h), gelu′(h))`` from one call of torch's gelu kernel.

    'none': gelu(h) = h·Φ(h), so Φ(h) = gelu(h)/h (½ at h = 0, where 0/0 is NaN), and
    gelu′(h) = Φ(h) + h·φ(h) with φ(h) = 2^(−h²·log₂e/2 − log₂√(2π)): no erf of its own.
    'tanh': gelu(h) = h·s with s = ½(1 + tanh u), u = k(h + c·h³), so s = gelu(h)/h again and
    gelu′(h) = s + h·2s(1 − s)·u′,  u′ = k(1 + 3c·h²).
    """
    a = torch.nn.functional.gelu(h, approximate=approximate)
    s = torch.div(a, h).nan_to_num_(0.5)  # Φ(h), or ½(1 + tanh u); ½ at h = 0
    if approximate == "tanh":
        k, c = SQRT_2_OVER_PI, GELU_TANH_CUBIC
        du = torch.mul(h, h).mul_(3.0 * k * c).add_(k)  # u′
        slope = torch.addcmul(s, s, s, value=-1.0).mul_(du).mul_(h).mul_(2.0)  # h·2s(1−s)·u′
        return a, slope.add_(s)
    pdf = torch.addcmul(h.new_full((), LOG2_INV_SQRT_2PI), h, h, value=-0.5 * LOG2_E).exp2_()
    return a, s.addcmul_(h, pdf)


def probs_from_lse(q: Tensor, k: Tensor, lse: Tensor, scale: float, causal: Tensor) -> Tensor:
    """P = exp(scale·Q Kᵀ + causal − lse), the softmax from its saved row log-sum-exp, as
    2^(S·log₂e − lse·log₂e) in the buffer of S (one matmul, two passes)."""
    scores = torch.baddbmm(causal, q, k.transpose(-2, -1), alpha=scale * LOG2_E)
    return scores.sub_(lse * LOG2_E).exp2_()


def attention_input_grads(probs: Tensor, grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor,
                          scale: float) -> Tensor:
    """[∂Q | ∂K | ∂V] as one (3, B·H, T, D) buffer, each product written in its place:
    ∂V = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)) in dP's buffer,
    ∂Q = scale·dS K, ∂K = scale·dSᵀ Q (the scale inside the products)."""
    grads = q.new_empty((3, *q.shape))
    torch.bmm(probs.transpose(-2, -1), grad_out, out=grads[2])
    prod = torch.bmm(grad_out, v.transpose(-2, -1)).mul_(probs)  # P ⊙ dP
    grad_scores = prod.addcmul_(probs, prod.sum(-1, keepdim=True), value=-1.0)
    grads[0].baddbmm_(grad_scores, k, beta=0.0, alpha=scale)
    grads[1].baddbmm_(grad_scores.transpose(-2, -1), q, beta=0.0, alpha=scale)
    return grads


def normalized(x: Tensor, mean: Tensor, rstd: Tensor) -> Tensor:
    """x̂ = (x − μ)·rstd in one buffer."""
    return torch.sub(x, mean).mul_(rstd)


def normed_weight_grad(g: Tensor, x_hat: Tensor, gamma: Tensor | None,
                       beta: Tensor | None) -> Tensor:
    """∂W = gᵀ n for n = γx̂ + β (2-D rows), as (gᵀ x̂)·γ + (Σ_r g) ⊗ β: no n of x's size."""
    grad = g.t().mm(x_hat)
    if gamma is not None:
        grad.mul_(gamma)
    if beta is not None:
        grad.addr_(g.sum(0), beta)
    return grad


def layer_norm_grads(g_normed: Tensor, x_hat: Tensor, rstd: Tensor, gamma: Tensor | None,
                     need_x: bool, need_gamma: bool, need_beta: bool):
    """LayerNorm's (∂x, ∂γ, ∂β) on 2-D rows from gn = ∂L/∂(γx̂ + β), a fresh buffer this
    overwrites: ∂x = rstd·(gnγ − mean_d gnγ − x̂·mean_d(gnγ·x̂)), ∂γ = Σ_r gn·x̂, ∂β = Σ_r gn,
    with the sums as matrix-vector products and ∂x built in gn's buffer."""
    use_matmul = not torch.is_autocast_enabled(g_normed.device.type)
    width = g_normed.shape[1]
    grad_beta = column_sum(g_normed, None, use_matmul) if need_beta else None
    grad_gamma = grad_x = None
    if not (need_x or need_gamma):
        return grad_x, grad_gamma, grad_beta
    g_xhat = g_normed * x_hat
    if need_gamma:
        grad_gamma = column_sum(g_xhat, None, use_matmul)
    if need_x:
        weights = None if gamma is None else gamma / width
        mean_g = row_sum(g_normed, weights, use_matmul)  # mean_d gnγ
        mean_gx = row_sum(g_xhat, weights, use_matmul)  # mean_d gnγ·x̂
        if weights is None:
            mean_g, mean_gx = mean_g / width, mean_gx / width
        g_gamma = g_normed if gamma is None else g_normed.mul_(gamma)
        grad_x = g_gamma.sub_(torch.mul(x_hat, mean_gx, out=g_xhat)).sub_(mean_g).mul_(rstd)
    return grad_x, grad_gamma, grad_beta
