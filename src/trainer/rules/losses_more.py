"""The table of rules, section: binary cross-entropy (on probabilities and on logits), L1,
smooth L1, Huber, KL divergence and cosine embedding losses (see :mod:`trainer.rules`).

The entry points, as a TorchFunctionMode receives them (checked by experiment, torch 2.13):
each ``F.<loss>`` is a Python function and arrives as itself, with its options as keywords;
its ``torch.nn`` module (``BCELoss``, ``BCEWithLogitsLoss``, ``L1Loss``, ``SmoothL1Loss``,
``HuberLoss``, ``KLDivLoss``, ``CosineEmbeddingLoss``) calls it. Beside them torch has the
builtins ``torch.binary_cross_entropy_with_logits``, ``torch.kl_div`` and
``torch.cosine_embedding_loss``, which take the reduction as torch's integer code (0 'none',
1 'mean', 2 'sum'); the adapters below read it. (``F.l1_loss`` drops its ``weight`` when a
mode is active, torch's own handle_torch_function call omitting it: the rule gets the call
without it, as native code under any mode does.)

The Functions live in :mod:`trainer.functional.loss_more` (the losses of probabilities) and
:mod:`trainer.functional.loss_distance` (the distance losses).
"""

from __future__ import annotations

import torch

from trainer import functional as F
from trainer.functional import loss_distance, loss_more
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

_REDUCTION = {0: "none", 1: "mean", 2: "sum"}  # torch's integer codes

# -- adapters: torch's builtins with integer reductions -> the rule ----------------------------


def bce_with_logits_from_torch(input, target, weight=None, pos_weight=None, reduction=1):
    """``torch.binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction)``."""
    return F.binary_cross_entropy_with_logits(input, target, weight, reduction=_REDUCTION[
        reduction], pos_weight=pos_weight)


def kl_div_from_torch(input, target, reduction=1, *, log_target=False):
    """``torch.kl_div(input, target, reduction=1, *, log_target=False)``: no 'batchmean' (the
    builtin has none), and no warning for 'mean' (the builtin gives none)."""
    return loss_more.KLDiv.apply(input, target, _REDUCTION[reduction], bool(log_target))


def cosine_embedding_loss_from_torch(input1, input2, target, margin=0.0, reduction=1):
    """``torch.cosine_embedding_loss(input1, input2, target, margin, reduction)``."""
    return F.cosine_embedding_loss(input1, input2, target, margin,
                                   reduction=_REDUCTION[reduction])


# -- examples -----------------------------------------------------------------------------------


def _probabilities(*shape: int, grad: bool = True):
    return torch.sigmoid(x(*shape, grad=False)).requires_grad_(grad)


def _below_half(*shape: int):
    """Probabilities in (0.05, 0.45): doubled (as the vmap check scales its batch) still ones."""
    return (0.05 + 0.4 * torch.sigmoid(x(*shape, grad=False))).requires_grad_()


def bce_examples() -> list[Example]:
    return [Example((_below_half(3, 4), _probabilities(3, 4))),
            Example((_below_half(3, 4), _probabilities(3, 4, grad=False)),
                    {"weight": _probabilities(4, grad=False), "reduction": "sum"},
                    "a broadcast weight, sum"),
            Example((_below_half(2, 3, 2), _probabilities(2, 3, 2)), {"reduction": "none"})]


def bce_with_logits_examples() -> list[Example]:
    return [Example((x(3, 4), _probabilities(3, 4))),
            Example((x(3, 4), _probabilities(3, 4)),
                    {"pos_weight": x(4, grad=False).abs() + 0.5,
                     "weight": _probabilities(3, 1, grad=False), "reduction": "sum"},
                    "pos_weight per class, a weight per row"),
            Example((x(2, 3, 2), _probabilities(2, 3, 2)),
                    {"pos_weight": x(2, grad=False).abs(), "reduction": "none"}, "none")]


def l1_examples() -> list[Example]:
    return [Example((x(3, 4), x(3, 4))),
            Example((x(2, 3, 2), x(2, 3, 2)), {"reduction": "none"}),
            Example((x(3, 4), x(3, 4)), {"reduction": "sum", "weight": _probabilities(3, 4)},
                    "weight, sum"),
            Example((x(3, 4), x(3, 4)), {"weight": _probabilities(3, 4)}, "weight, mean")]


def smooth_l1_examples() -> list[Example]:
    return [Example((x(3, 4), x(3, 4))),
            Example((x(2, 3, 2), x(2, 3, 2)), {"beta": 0.5, "reduction": "none"}),
            Example((x(3, 4), x(3, 4)), {"beta": 0.0, "reduction": "sum"}, "beta 0: l1")]


def huber_examples() -> list[Example]:
    return [Example((x(3, 4), x(3, 4))),
            Example((x(2, 3, 2), x(2, 3, 2)), {"delta": 0.5, "reduction": "none"}),
            Example((x(3, 4), x(3, 4)), {"delta": 2.0, "reduction": "sum"}),
            Example((x(3, 4), x(3, 4)), {"weight": _probabilities(3, 4)}, "weight, mean")]


def kl_div_examples() -> list[Example]:
    def log_probs(*shape: int):
        return torch.log_softmax(x(*shape, grad=False), -1).requires_grad_()

    return [Example((log_probs(3, 4), _probabilities(3, 4)), {"reduction": "batchmean"}),
            Example((log_probs(3, 4), log_probs(3, 4)),
                    {"reduction": "sum", "log_target": True}, "log_target, sum"),
            Example((log_probs(2, 3, 2), _probabilities(2, 3, 2)), {"reduction": "none"}),
            Example((log_probs(3, 4), log_probs(3, 4)),
                    {"reduction": "batchmean", "log_target": True}, "log_target, batchmean")]


def cosine_embedding_examples() -> list[Example]:
    signs = torch.tensor([1, -1, 1, -1, -1])
    return [Example((x(5, 3), x(5, 3), signs)),
            Example((x(5, 3), x(5, 3), signs), {"margin": -0.3, "reduction": "sum"},
                    "negative margin, sum"),
            Example((x(5, 3), x(5, 3), signs), {"reduction": "none"}),
            Example((x(4), x(4), torch.tensor(-1)), {"margin": -0.5}, "unbatched")]


RULES: tuple[Rule, ...] = (
    Rule(name="binary_cross_entropy", function=loss_more.BinaryCrossEntropy,
         stands_for=("torch.nn.functional.binary_cross_entropy",),
         twins=("trainer.nn.loss_more.BCELoss",),
         grads=("input: g·w·(x − y) / max(x(1 − x), 1e-12)",
                "target: −g·w·logit(x)"),
         saves="x and w, and y for ∂x: as torch",
         examples=bce_examples),
    Rule(name="binary_cross_entropy_with_logits",
         function=loss_more.BinaryCrossEntropyWithLogits,
         stands_for=("torch.nn.functional.binary_cross_entropy_with_logits",
                     "torch.binary_cross_entropy_with_logits"),
         adapters={"torch.binary_cross_entropy_with_logits": bce_with_logits_from_torch},
         twins=("trainer.nn.loss_more.BCEWithLogitsLoss",),
         grads=("input: g·w·((1 + (p − 1)y)·σ(x) − p·y)",
                "target: g·w·((p − 1)·softplus(−x) − x)"),
         saves="x, w and p, and y for ∂x: as torch",
         examples=bce_with_logits_examples),
    Rule(name="l1_loss", function=loss_distance.L1Loss,
         stands_for=("torch.nn.functional.l1_loss",),
         twins=("trainer.nn.loss_more.L1Loss",),
         grads=("input: g · sign(x − y)", "target: −g · sign(x − y)"),
         saves="sign(x − y) as int8, 1 byte per element, not the difference",
         examples=l1_examples),
    Rule(name="smooth_l1_loss", function=loss_distance.Huber,
         stands_for=("torch.nn.functional.smooth_l1_loss",),
         twins=("trainer.nn.loss_more.SmoothL1Loss",),
         grads=("input: g · clamp(d/β, −1, 1),  d = x − y", "target: −g · clamp(d/β, −1, 1)"),
         saves="d = x − y only, not x and y",
         examples=smooth_l1_examples),
    Rule(name="huber_loss", function=loss_distance.Huber,
         stands_for=("torch.nn.functional.huber_loss",),
         twins=("trainer.nn.loss_more.HuberLoss",),
         grads=("input: g · clamp(d, −δ, δ),  d = x − y", "target: −g · clamp(d, −δ, δ)"),
         saves="d = x − y only, not x and y",
         examples=huber_examples),
    Rule(name="kl_div", function=loss_more.KLDiv,
         stands_for=("torch.nn.functional.kl_div", "torch.kl_div"),
         adapters={"torch.kl_div": kl_div_from_torch},
         twins=("trainer.nn.loss_more.KLDivLoss",),
         grads=("input: −g·y   (log_target: −g·e^y)",
                "target: g·(log y + 1 − x)   (log_target: g·e^y·(y − x + 1))"),
         saves="y; x only for ∂y",
         examples=kl_div_examples),
    Rule(name="cosine_embedding_loss", function=loss_distance.CosineEmbeddingLoss,
         stands_for=("torch.nn.functional.cosine_embedding_loss",
                     "torch.cosine_embedding_loss"),
         adapters={"torch.cosine_embedding_loss": cosine_embedding_loss_from_torch},
         twins=("trainer.nn.loss_more.CosineEmbeddingLoss",),
         grads=("input1: k·(b/r − c·a/|a|²),  k = −g (t = 1), g (t = −1, c ≥ margin), else 0",
                "input2: k·(a/r − c·b/|b|²)   (c = cos(a, b), r = |a||b|)"),
         saves="a, b and t; c and the norms are recomputed",
         examples=cosine_embedding_examples),
)
