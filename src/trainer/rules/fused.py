"""The table of rules, section: fused transformer pieces (see :mod:`trainer.rules`).

Each row fuses a chain of torch ops that a pre-norm GPT block runs (nanoGPT's ``ln_1`` ->
``c_attn``, the causal attention after it -> ``c_proj``, ``ln_2`` -> the GELU MLP), so it
stands for no single torch entry point (``stands_for=()``, as ``linear_cross_entropy``): its
reference is the chain in torch's own ops, below. :class:`trainer.models.gpt.GPT` calls
them; ``trainer.explicit()`` never routes a torch call to them.
"""

from __future__ import annotations

import torch.nn.functional as torch_F
from torch import Tensor

from trainer.functional import fused_attention, fused_norm
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

# -- references: the chains each rule fuses, in torch's own ops -----------------------------


def layer_norm_then_linear(input: Tensor, ln_weight: Tensor | None, ln_bias: Tensor | None,
                           weight: Tensor, bias: Tensor | None = None,
                           eps: float = 1e-5) -> Tensor:
    """What :func:`trainer.functional.layer_norm_linear` fuses."""
    normed = torch_F.layer_norm(input, (input.shape[-1],), ln_weight, ln_bias, eps)
    return torch_F.linear(normed, weight, bias)


def layer_norm_then_mlp(input: Tensor, ln_weight: Tensor | None, ln_bias: Tensor | None,
                        fc_weight: Tensor, fc_bias: Tensor | None, proj_weight: Tensor,
                        proj_bias: Tensor | None = None, eps: float = 1e-5,
                        approximate: str = "none") -> Tensor:
    """What :func:`trainer.functional.layer_norm_mlp` fuses."""
    normed = torch_F.layer_norm(input, (input.shape[-1],), ln_weight, ln_bias, eps)
    activation = torch_F.gelu(torch_F.linear(normed, fc_weight, fc_bias), approximate=approximate)
    return torch_F.linear(activation, proj_weight, proj_bias)


def attention_then_projection(qkv: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                              n_head: int) -> Tensor:
    """What :func:`trainer.functional.causal_attention_proj` fuses: nanoGPT's
    CausalSelfAttention after ``c_attn``."""
    batch, length, width = qkv.shape
    channels = width // 3
    q, k, v = (t.view(batch, length, n_head, channels // n_head).transpose(1, 2)
               for t in qkv.split(channels, dim=2))
    attended = torch_F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return torch_F.linear(attended.transpose(1, 2).reshape(batch, length, channels), weight,
                          bias)


# -- examples: what the standard checks run each rule on -------------------------------------

def layer_norm_linear_examples() -> list[Example]:
    return [Example((x(2, 3, 4), x(4), x(4), x(5, 4), x(5))),
            Example((x(3, 4), None, None, x(2, 4), None), {"eps": 1e-3}, "no affine, no bias")]


def layer_norm_mlp_examples() -> list[Example]:
    return [Example((x(2, 3, 4), x(4), x(4), x(6, 4), x(6), x(4, 6), x(4))),
            Example((x(3, 4), x(4), None, x(5, 4), None, x(3, 5), None),
                    {"approximate": "tanh"}, "tanh, no biases")]


def causal_attention_proj_examples() -> list[Example]:
    return [Example((x(2, 3, 12), x(4, 4), x(4)), {"n_head": 2}),
            Example((x(1, 4, 6), x(3, 2), None), {"n_head": 1}, "one head, no bias")]


_NORM_GRADS = ("input: rstd·(gnγ − mean_d gnγ − x̂·mean_d(gnγ·x̂)),  gn = ∂L/∂(γx̂ + β)",
               "ln_weight: Σ_rows gn·x̂",
               "ln_bias: Σ_rows gn")

RULES: tuple[Rule, ...] = (
    Rule(name="layer_norm_linear", function=fused_norm.LayerNormLinear,
         stands_for=(), twins=(), reference=layer_norm_then_linear,
         grads=(*_NORM_GRADS,
                "weight: gᵀ n  (n = γx̂ + β recomputed),  gn = g W",
                "bias: Σ_rows g"),
         saves="x and the per-row μ, rstd; not the normed n, which backward recomputes",
         examples=layer_norm_linear_examples),
    Rule(name="layer_norm_mlp", function=fused_norm.LayerNormMLP,
         stands_for=(), twins=(), reference=layer_norm_then_mlp,
         grads=(*_NORM_GRADS,
                "fc_weight: ghᵀ n,  gh = (g W₂) ⊙ gelu′(h),  gn = gh W₁",
                "fc_bias: Σ_rows gh",
                "proj_weight: gᵀ gelu(h)  (recomputed from the saved h)",
                "proj_bias: Σ_rows g"),
         saves="x, the per-row μ, rstd and the pre-activation h; not n nor gelu(h)",
         examples=layer_norm_mlp_examples),
    Rule(name="causal_attention_proj", function=fused_attention.CausalAttentionProj,
         stands_for=(), twins=(), reference=attention_then_projection,
         grads=("qkv: [dS K/√D | dSᵀ Q/√D | Pᵀ dO],  dO = g W,  dS = P ⊙ (dP − rowsum(P ⊙ dP)),"
                "  dP = dO Vᵀ",
                "weight: gᵀ O  (O = P V recomputed)",
                "bias: Σ_rows g"),
         saves="qkv (its input) and the rows' log-sum-exp; not P (T×T) nor the output O",
         examples=causal_attention_proj_examples),
)
