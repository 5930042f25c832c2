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
    2^((S − lse)·log₂e) in the buffer of S (one matmul, three passes)."""
    scores = torch.baddbmm(causal, q, k.transpose(-2, -1), alpha=scale)
    return scores.sub_(lse).mul_(LOG2_E).exp2_()


def scores_grad(probs: Tensor, grad_probs: Tensor) -> Tensor:
    """dS = P ⊙ (dP − rowsum(P ⊙ dP)), in the buffer of dP."""
    prod = grad_probs.mul_(probs)
    return prod.addcmul_(probs, prod.sum(-1, keepdim=True), value=-1.0)
