"""THE table of rules: one row per explicit op, read by everything else that lists ops.

Each :class:`Rule` names the op (its :mod:`trainer.functional` name), the
``torch.autograd.Function`` that holds its hand-written backward, the torch entry points it
stands for, its :mod:`trainer.nn` module twins, one line of math per gradient in the spirit of
PyTorch's ``derivatives.yaml`` (g is ∂L/∂output throughout), and what it saves for backward.
The whole derivation lives in the Function's docstring, next to its code.

Read by: :func:`trainer.nn.convert` (which ``torch.nn`` class has which twin), the
benchmarks' per-op cases (checked to cover every rule), and the tests (every public op has a
row; every row's Function, twins and entry points exist).

    python -m trainer.rules          one line per op
    python -m trainer.rules gelu     that op's whole derivation, and where its code is
"""

from __future__ import annotations

import importlib
import inspect

import torch

from trainer.rules import adapters
from trainer.rules import examples as ex
from trainer.rules import (activation_more, losses_more, matmul, norm_more, pointwise, recurrent,
                           reductions, resampling, upsampling)
from trainer.rules import fused as fused_section  # (`fused` below is trainer.functional's)
from trainer.rules.rule import Rule, resolve


def _rules_of(family: str):
    # by module path: trainer.functional's attributes of these names are the ops themselves
    return importlib.import_module(f"trainer.functional.{family}")


(activation, attention, avg_pool, conv, cross_entropy, dropout_rules, embedding, fused, linear,
 loss, norm, pool, shape, softmax) = map(_rules_of, (
    "activation", "attention", "avg_pool", "conv", "cross_entropy", "dropout", "embedding",
    "fused", "linear", "loss", "norm", "pool", "shape", "softmax"))


RULES: tuple[Rule, ...] = (
    # -- matrix products ---------------------------------------------------------------------
    Rule(name="linear", function=linear.Linear,
         stands_for=("torch.nn.functional.linear",),
         twins=("trainer.nn.linear.Linear",),
         grads=("input: g W", "weight: gᵀ x  (summed over rows)", "bias: Σ_rows g"),
         saves="x for ∂W and W for ∂x, each only when the other side needs a gradient",
         examples=ex.linear),
    # -- convolution -------------------------------------------------------------------------
    Rule(name="conv1d", function=conv.Conv1d,
         stands_for=("torch.nn.functional.conv1d",),
         twins=("trainer.nn.conv.Conv1d",),
         grads=("input: conv_transpose1d(g, W)",
                "weight: conv1d(xᵀ, gᵀ)  (batch and channels swapped)",
                "bias: Σ_{n,t} g"),
         saves="x for ∂W and W for ∂x, each only when the other side needs a gradient",
         examples=ex.conv1d),
    Rule(name="conv2d", function=conv.Conv2d,
         stands_for=("torch.nn.functional.conv2d",),
         twins=("trainer.nn.conv.Conv2d",),
         grads=("input: conv_transpose2d(g, W)",
                "weight: conv2d(xᵀ, gᵀ)  (batch and channels swapped)",
                "bias: Σ_{n,i,j} g"),
         saves="x for ∂W and W for ∂x, each only when the other side needs a gradient",
         examples=ex.conv2d),
    # -- pooling -----------------------------------------------------------------------------
    Rule(name="max_pool1d", function=pool.MaxPool1d,
         stands_for=("torch.nn.functional.max_pool1d",
                     "torch.nn.functional.max_pool1d_with_indices"),
         twins=("trainer.nn.pool.MaxPool1d",),
         grads=("input: scatter_add of g at each window's winning tap",),
         saves="the window-local argmax as uint8, not x nor int64 indices",
         examples=ex.pool(1, "max")),
    Rule(name="max_pool2d", function=pool.MaxPool2d,
         stands_for=("torch.nn.functional.max_pool2d",
                     "torch.nn.functional.max_pool2d_with_indices"),
         twins=("trainer.nn.pool.MaxPool2d",),
         grads=("input: scatter_add of g at each window's winning tap",),
         saves="the window-local argmax as uint8, not x nor int64 indices",
         examples=ex.pool(2, "max")),
    Rule(name="avg_pool1d", function=avg_pool.AvgPool1d,
         stands_for=("torch.nn.functional.avg_pool1d",),
         twins=("trainer.nn.pool.AvgPool1d",),
         grads=("input: conv_transpose1d(g / D, ones)  (D: the window's divisor)",),
         saves="nothing: D comes back from the shapes and options",
         examples=ex.pool(1, "avg")),
    Rule(name="avg_pool2d", function=avg_pool.AvgPool2d,
         stands_for=("torch.nn.functional.avg_pool2d",),
         # LocalResponseNorm: a composition (mul, pad, avg_pool2d, add, pow, div), no row of
         # its own; listed with the op that takes its channel window, so convert finds it
         twins=("trainer.nn.pool.AvgPool2d", "trainer.nn.norm_more.LocalResponseNorm"),
         grads=("input: conv_transpose2d(g / D, ones)  (D: the window's divisor)",),
         saves="nothing: D comes back from the shapes and options",
         examples=ex.pool(2, "avg")),
    # -- pointwise activations ---------------------------------------------------------------
    Rule(name="relu", function=activation.ReLU,
         stands_for=("torch.nn.functional.relu", "torch.relu", "torch.Tensor.relu"),
         twins=("trainer.nn.activation.ReLU",),
         grads=("input: g · [y ≠ 0]",),
         saves="the mask [y ≠ 0], 1 bit per element: the derivative is a 0/1 step",
         examples=ex.pointwise()),
    Rule(name="leaky_relu", function=activation.LeakyReLU,
         stands_for=("torch.nn.functional.leaky_relu",),
         twins=("trainer.nn.activation.LeakyReLU",),
         grads=("input: g · (m + s·(1 − m)),  m = [x > 0]",),
         saves="the mask m, 1 bit per element: the derivative takes two values",
         examples=ex.leaky_relu),
    Rule(name="gelu", function=activation.GELU,
         stands_for=("torch.nn.functional.gelu",),
         twins=("trainer.nn.activation.GELU",),
         grads=("input: g · (Φ(x) + x·φ(x))   ('tanh': g · (s + 2x·s(1 − s)·u′))",),
         saves="x: y does not determine x where gelu is not invertible",
         examples=ex.gelu),
    Rule(name="silu", function=activation.SiLU,
         stands_for=("torch.nn.functional.silu",),
         twins=("trainer.nn.activation.SiLU",),
         grads=("input: g · σ(x)·(1 + x·(1 − σ(x)))",),
         saves="x: σ(x) is not recoverable from y",
         examples=ex.pointwise()),
    Rule(name="sigmoid", function=activation.Sigmoid,
         stands_for=("torch.sigmoid", "torch.nn.functional.sigmoid", "torch.Tensor.sigmoid"),
         twins=("trainer.nn.activation.Sigmoid",),
         grads=("input: g · y(1 − y)",),
         saves="y: σ′ is a function of y alone",
         examples=ex.pointwise()),
    Rule(name="tanh", function=activation.Tanh,
         stands_for=("torch.tanh", "torch.nn.functional.tanh", "torch.Tensor.tanh"),
         twins=("trainer.nn.activation.Tanh",),
         grads=("input: g · (1 − y²)",),
         saves="y: tanh′ is a function of y alone",
         examples=ex.pointwise()),
    Rule(name="softmax", function=softmax.Softmax,
         stands_for=("torch.nn.functional.softmax", "torch.softmax", "torch.Tensor.softmax"),
         adapters={"torch.softmax": adapters.softmax_from_torch,
                   "torch.Tensor.softmax": adapters.softmax_from_torch},
         twins=("trainer.nn.activation.Softmax",),
         grads=("input: y ⊙ (g − Σ_dim g ⊙ y)",),
         saves="y: the Jacobian diag(y) − y yᵀ is a function of y alone",
         examples=ex.along_dim),
    Rule(name="log_softmax", function=softmax.LogSoftmax,
         stands_for=("torch.nn.functional.log_softmax", "torch.log_softmax",
                    "torch.Tensor.log_softmax"),
         adapters={"torch.log_softmax": adapters.log_softmax_from_torch,
                   "torch.Tensor.log_softmax": adapters.log_softmax_from_torch},
         twins=("trainer.nn.activation.LogSoftmax",),
         grads=("input: g − e^y · Σ_dim g",),
         saves="y: softmax(x) = e^y",
         examples=ex.along_dim),
    Rule(name="dropout", function=dropout_rules.Dropout,
         stands_for=("torch.nn.functional.dropout",),
         twins=("trainer.nn.dropout.Dropout",),
         grads=("input: g · m / (1 − p)",),
         saves="the int32 seed of the mask m, which backward hashes again",
         examples=ex.dropout),
    # -- norms -------------------------------------------------------------------------------
    Rule(name="batch_norm", function=norm.BatchNorm,
         stands_for=("torch.nn.functional.batch_norm",),
         twins=("trainer.nn.norm.BatchNorm1d", "trainer.nn.norm.BatchNorm2d"),
         grads=("input: γ·rstd/m · (m·g − Σg − x̂·Σ(g·x̂))  (eval: γ·rstd·g)",
                "weight: Σ g·x̂",
                "bias: Σ g"),
         saves="μ, rstd per channel; x for ∂γ and training's ∂x; γ only for ∂x",
         examples=ex.batch_norm),
    Rule(name="layer_norm", function=norm.LayerNorm,
         stands_for=("torch.nn.functional.layer_norm",),
         twins=("trainer.nn.norm.LayerNorm",),
         grads=("input: rstd/D · (D·gγ − Σ_d gγ − x̂·Σ_d(gγ·x̂))",
                "weight: Σ_rows g·x̂",
                "bias: Σ_rows g"),
         saves="x and the per-row μ, rstd when ∂x or ∂γ is needed; γ only for ∂x",
         examples=ex.layer_norm),
    # -- embedding ---------------------------------------------------------------------------
    Rule(name="embedding", function=embedding.Embedding,
         stands_for=("torch.nn.functional.embedding",),
         twins=("trainer.nn.embedding.Embedding",),
         grads=("weight: index_add of g's rows at idx  (padding_idx row: 0)",),
         saves="the indices only; never W, which no gradient needs",
         examples=ex.embedding),
    # -- attention ---------------------------------------------------------------------------
    Rule(name="scaled_dot_product_attention", function=attention.ScaledDotProductAttention,
         stands_for=("torch.nn.functional.scaled_dot_product_attention",),
         twins=("trainer.nn.attention.MultiheadAttention",),
         grads=("query: scale · dS K,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dP = g Vᵀ",
                "key: scale · dSᵀ Q",
                "value: Pᵀ g",
                "attn_mask: dS  (a float mask)"),
         saves=("Q, K (and V when dS is needed) and the dropout mask as bool; not P: "
                "backward recomputes it"),
         examples=ex.attention),
    # -- losses ------------------------------------------------------------------------------
    Rule(name="cross_entropy", function=cross_entropy.CrossEntropy,
         stands_for=("torch.nn.functional.cross_entropy",),
         twins=("trainer.nn.loss.CrossEntropyLoss",),
         grads=("input: g · (softmax(z) − onehot(t))  (scaled by weights, smoothing, reduction)",),
         saves="log p = log_softmax(z), the target and the class weights",
         examples=ex.cross_entropy),
    Rule(name="nll_loss", function=loss.NllLoss,
         stands_for=("torch.nn.functional.nll_loss",),
         twins=("trainer.nn.loss.NLLLoss",),
         grads=("input: scatter of −g·w[t] at t",),
         saves="the target and the class weights; not the input, which no gradient needs",
         examples=ex.nll_loss),
    Rule(name="mse_loss", function=loss.MseLoss,
         stands_for=("torch.nn.functional.mse_loss",),
         twins=("trainer.nn.loss.MSELoss",),
         grads=("input: 2 g (x − y)", "target: −2 g (x − y)"),
         saves=("d = x − y only, not x and y (d has the broadcast shape: where x and y "
                "broadcast, it can outweigh them both)"),
         examples=ex.mse_loss),
    Rule(name="linear_cross_entropy", function=fused.LinearCrossEntropy,
         stands_for=(),
         twins=("trainer.nn.fused.LinearCrossEntropy",),
         grads=("input: D W,  D = softmax(x Wᵀ + b) − onehot(t)  (scaled by the reduction)",
                "weight: Dᵀ x",
                "bias: Σ_rows D"),
         saves="the three gradients, computed chunk by chunk in forward: never the N×V logits",
         examples=ex.linear_cross_entropy, reference=ex.linear_then_cross_entropy,
         unsupported=("double backward: the gradients saved in forward have no graph",
                      "vmap: per-sample V×H weight gradients are the memory it avoids")),
    # -- shape -------------------------------------------------------------------------------
    # Not an entry point of trainer.explicit(): torch.flatten there stays a shape op on
    # built-in autograd, since a view made inside a custom Function may not be modified in
    # place afterwards, and models do (Hugging Face's MobileNetV2: Dropout(inplace=True)).
    Rule(name="flatten", function=shape.Reshape,
         stands_for=(), reference=torch.flatten,
         twins=("trainer.nn.flatten.Flatten",),
         grads=("input: reshape(g, x.shape)",),
         saves="nothing: only x's shape",
         examples=ex.flatten),
)

# The families added since, each a section of the table in its own file.
RULES = (*RULES, *pointwise.RULES, *reductions.RULES, *matmul.RULES, *resampling.RULES,
         *activation_more.RULES, *norm_more.RULES, *recurrent.RULES, *upsampling.RULES,
         *losses_more.RULES, *fused_section.RULES)

BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}


def twins() -> dict[type[torch.nn.Module], type[torch.nn.Module]]:
    """``torch.nn`` class -> its explicit twin, for every twin in the table that subclasses a
    ``torch.nn`` class (:func:`trainer.nn.convert` swaps by this)."""
    found = {}
    for rule in RULES:
        for twin in map(resolve, rule.twins):
            base = next((b for b in twin.__mro__[1:] if b.__module__.startswith("torch.nn")
                         and issubclass(b, torch.nn.Module) and b is not torch.nn.Module),
                        None)
            if base is not None:
                found[base] = twin
    return found


def summary_line(rule: Rule, width: int) -> str:
    """``gelu   input: g · (Φ(x) + x·φ(x)) ...   | saves x: ...`` on one line."""
    return f"{rule.name.ljust(width)}  {';  '.join(rule.grads)}   | saves {rule.saves}"


def describe(rule: Rule) -> str:
    """Everything about one rule: where it is, what it stands for, its gradients, what it
    saves, and the derivation in its Function's docstring."""
    twins_named = ", ".join(f"trainer.nn.{t.rsplit('.', 1)[-1]}" for t in rule.twins) or "none"
    lines = [f"{rule.name}: {rule.function.__module__}.{rule.function.__qualname__}",
             f"  code:       {rule.where()}",
             f"  stands for: {', '.join(rule.stands_for) or 'no torch op (fused here)'}",
             f"  twins:      {twins_named}",
             "  gradients (g = ∂L/∂output):"]
    lines += [f"    {grad}" for grad in rule.grads]
    lines += [f"  saves:      {rule.saves}"]
    lines += [f"  refuses:    {reason}" for reason in rule.unsupported]
    lines += ["", inspect.getdoc(rule.function) or ""]
    return "\n".join(lines)


__all__ = ["BY_NAME", "RULES", "Rule", "describe", "resolve", "summary_line", "twins"]
