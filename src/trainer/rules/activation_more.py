"""The table of rules, section: the activations beyond the first eight (see :mod:`trainer.rules`).

The entry points, as a TorchFunctionMode receives them (checked by experiment, torch 2.13):
``F.hardtanh``, ``F.relu6``, ``F.hardswish``, ``F.hardsigmoid``, ``F.elu``, ``F.selu``,
``F.celu``, ``F.mish`` and ``F.glu`` are Python functions and arrive as themselves, with
``inplace`` (or ``dim``) as a keyword; their ``torch.nn`` modules call them (``ReLU6`` calls
``F.hardtanh(x, 0.0, 6.0)``, so it reaches the hardtanh rule). ``F.softplus`` and
``F.logsigmoid`` are the builtins ``torch._C._nn.softplus`` and ``torch._C._nn.log_sigmoid``,
which ``Softplus`` and ``LogSigmoid`` call with positional arguments. ``torch.selu`` and
``torch.celu`` exist beside them. The in-place forms ``F.hardtanh_``, ``F.elu_`` (builtins of
``torch._C._nn``), ``torch.selu_`` and ``torch.celu_`` (= ``F.selu_``, ``F.celu_``) run the rule
with ``inplace=True``. No ``Tensor`` method exists for any of them. ``F.prelu`` is the builtin
``torch.prelu``, which ``nn.PReLU`` calls; ``Tensor.prelu`` arrives as itself.

The Functions live in :mod:`trainer.functional.activation_piecewise` (hardtanh, relu6,
hardswish, hardsigmoid, prelu) and :mod:`trainer.functional.activation_smooth` (the rest).
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F
from trainer.functional import activation_piecewise as piecewise
from trainer.functional import activation_smooth as smooth
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

# -- adapters: torch's in-place entry points -> the rule with inplace=True ---------------------


def hardtanh_in_place(input, min_val=-1.0, max_val=1.0):
    """``F.hardtanh_(input, min_val=-1., max_val=1.)``; with min_val > max_val the builtin
    clamps to max_val where ``F.hardtanh`` refuses: left to torch."""
    if min_val > max_val:
        return NotImplemented
    return F.hardtanh(input, min_val, max_val, inplace=True)


def elu_in_place(input, alpha=1.0, scale=1.0, input_scale=1.0):
    """``F.elu_(input, alpha=1.)``; the builtin's extra scale and input_scale: left to torch."""
    if scale != 1 or input_scale != 1:
        return NotImplemented
    return F.elu(input, alpha, inplace=True)


def selu_in_place(input):
    """``torch.selu_(input)``."""
    return F.selu(input, inplace=True)


def celu_in_place(input, alpha=1.0):
    """``torch.celu_(input, alpha=1.)``."""
    return F.celu(input, alpha, inplace=True)


# -- examples -----------------------------------------------------------------------------------
# The standard checks take finite differences at the examples themselves: every value is kept
# at least MARGIN from each kink (and from softplus's switch) of its op.

MARGIN = 0.1


def _away(scale: float, *kinks: float):
    """Seeded normals times ``scale``, each moved off the kinks by at least MARGIN."""
    def make(*shape: int) -> Tensor:
        t = x(*shape, grad=False) * scale
        for kink in kinks:
            side = torch.where(t >= kink, 1.0, -1.0).to(t.dtype)
            t = torch.where((t - kink).abs() < MARGIN, kink + 2 * MARGIN * side, t)
        return t.requires_grad_()
    return make


def _two_shapes(make, **options):
    return lambda: [Example((make(3, 4),), dict(options)),
                    Example((make(2, 3, 2),), dict(options))]


def hardtanh_examples() -> list[Example]:
    return [Example((_away(1.5, -1.0, 1.0)(3, 4),)),
            Example((_away(2.0, -0.5, 2.0)(2, 3, 2),), {"min_val": -0.5, "max_val": 2.0},
                    "min_val, max_val")]


def elu_examples() -> list[Example]:
    return [Example((_away(1.0, 0.0)(3, 4),)),
            Example((_away(2.0, 0.0)(2, 3, 2),), {"alpha": 0.5}, "alpha")]


def celu_examples() -> list[Example]:
    return [Example((_away(1.0, 0.0)(3, 4),)),
            Example((_away(2.0, 0.0)(2, 3, 2),), {"alpha": 2.0}, "alpha"),
            Example((_away(2.0, 0.0)(3, 4),), {"alpha": -0.5}, "negative alpha")]


def softplus_examples() -> list[Example]:
    return [Example((x(3, 4),)),
            Example((_away(3.0, 1.5)(2, 3, 2),), {"beta": 2.0, "threshold": 3.0},
                    "beta, the linear switch at x = 1.5"),
            Example((_away(3.0, -2.0)(3, 4),), {"beta": -0.5, "threshold": 1.0},
                    "negative beta, the switch at x = -2")]


def prelu_examples() -> list[Example]:
    away = _away(1.5, 0.0)
    return [Example((away(2, 3, 4), x(3)), label="a slope per channel"),
            Example((away(3, 4, 2, 2), x(1)), label="one slope, 4-D"),
            Example((away(5), x(1)), label="1-D input: one channel"),
            Example((away(3, 4), x(4)), label="(N, C) input")]


def glu_examples() -> list[Example]:
    return [Example((x(3, 4),)),
            Example((x(2, 6, 3),), {"dim": 1}, "dim 1"),
            Example((x(4, 2, 3),), {"dim": -3}, "negative dim")]


RULES: tuple[Rule, ...] = (
    Rule(name="hardtanh", function=piecewise.Hardtanh,
         stands_for=("torch.nn.functional.hardtanh", "torch.nn.functional.hardtanh_",
                     "torch._C._nn.hardtanh_"),  # the last two: one builtin
         adapters={"torch.nn.functional.hardtanh_": hardtanh_in_place,
                   "torch._C._nn.hardtanh_": hardtanh_in_place},
         twins=("trainer.nn.activation_more.Hardtanh",),
         grads=("input: g · ¬(x ≤ lo ∨ x ≥ hi)",),
         saves="the mask ¬(x ≤ lo ∨ x ≥ hi), 1 bit per element: the derivative is a 0/1 step",
         examples=hardtanh_examples),
    Rule(name="relu6", function=piecewise.Hardtanh,
         stands_for=("torch.nn.functional.relu6",),
         twins=("trainer.nn.activation_more.ReLU6",),
         grads=("input: g · ¬(x ≤ 0 ∨ x ≥ 6)",),
         saves="the mask ¬(x ≤ 0 ∨ x ≥ 6), 1 bit per element: hardtanh's rule, lo = 0, hi = 6",
         examples=_two_shapes(_away(4.0, 0.0, 6.0))),
    Rule(name="hardswish", function=piecewise.Hardswish,
         stands_for=("torch.nn.functional.hardswish",),
         twins=("trainer.nn.activation_more.Hardswish",),
         grads=("input: g · (x/3 + 1/2) where −3 < x < 3, g where x ≥ 3, 0 where x ≤ −3",),
         saves="x: the middle region's derivative is affine in x, which y cannot give back",
         examples=_two_shapes(_away(3.0, -3.0, 3.0))),
    Rule(name="hardsigmoid", function=piecewise.Hardsigmoid,
         stands_for=("torch.nn.functional.hardsigmoid",),
         twins=("trainer.nn.activation_more.Hardsigmoid",),
         grads=("input: g · [−3 < x < 3] / 6",),
         saves="the mask [−3 < x < 3], 1 bit per element: the derivative is 0 or 1/6",
         examples=_two_shapes(_away(3.0, -3.0, 3.0))),
    Rule(name="prelu", function=piecewise.PReLU,
         stands_for=("torch.nn.functional.prelu", "torch.prelu",  # one builtin
                     "torch.Tensor.prelu"),
         twins=("trainer.nn.activation_more.PReLU",),
         grads=("input: g where x > 0, w_c · g elsewhere",
                "weight: Σ_{every dim but 1} g · x · [x ≤ 0]"),
         saves="w for ∂x; x for ∂w (with ∂x alone, the bool mask [x > 0] instead of x)",
         examples=prelu_examples),
    Rule(name="elu", function=smooth.ELU,
         stands_for=("torch.nn.functional.elu", "torch.nn.functional.elu_",
                     "torch._C._nn.elu_"),  # the last two: one builtin
         adapters={"torch.nn.functional.elu_": elu_in_place, "torch._C._nn.elu_": elu_in_place},
         twins=("trainer.nn.activation_more.ELU",),
         grads=("input: g · (y + α) where y ≤ 0, g where y > 0   (y + α = α·eˣ)",),
         saves="y: y + α = α·eˣ on x ≤ 0 (and for α < 0, the bit [¬(x ≤ 0)])",
         examples=elu_examples),
    Rule(name="selu", function=smooth.ELU,
         stands_for=("torch.nn.functional.selu", "torch.selu", "torch.selu_"),
         adapters={"torch.selu_": selu_in_place},
         twins=("trainer.nn.activation_more.SELU",),
         grads=("input: g · (y + λα) where y ≤ 0, g · λ where y > 0",),
         saves="y: y + λα = λα·eˣ on x ≤ 0",
         examples=_two_shapes(_away(1.5, 0.0))),
    Rule(name="celu", function=smooth.ELU,
         stands_for=("torch.nn.functional.celu", "torch.celu", "torch.celu_"),
         adapters={"torch.celu_": celu_in_place},
         twins=("trainer.nn.activation_more.CELU",),
         grads=("input: g · (y/α + 1) where y ≤ 0, g where y > 0   (y/α + 1 = e^(x/α))",),
         saves="y: y/α + 1 = e^(x/α) on x ≤ 0, and sign(y) = sign(x) for every α",
         examples=celu_examples),
    Rule(name="softplus", function=smooth.Softplus,
         stands_for=("torch.nn.functional.softplus", "torch._C._nn.softplus"),  # one builtin
         twins=("trainer.nn.activation_more.Softplus",),
         grads=("input: g · σ(βx) where βx ≤ threshold, g where βx > threshold",),
         saves="x: σ(βx) is a function of x",
         examples=softplus_examples),
    Rule(name="mish", function=smooth.Mish,
         stands_for=("torch.nn.functional.mish",),
         twins=("trainer.nn.activation_more.Mish",),
         grads=("input: g · (t + x·σ(x)·(1 − t²)),  t = tanh(softplus(x))",),
         saves="x: t and σ(x) are not recoverable from y",
         examples=_two_shapes(x)),
    Rule(name="glu", function=smooth.GLU,
         stands_for=("torch.nn.functional.glu",),
         twins=("trainer.nn.activation_more.GLU",),
         grads=("input: cat(g · σ(b), g · a · σ(b)(1 − σ(b))) along dim,  (a, b) = x's halves",),
         saves="x: both halves enter both gradients",
         examples=glu_examples),
    Rule(name="logsigmoid", function=smooth.LogSigmoid,
         stands_for=("torch.nn.functional.logsigmoid", "torch._C._nn.log_sigmoid"),  # one
         twins=("trainer.nn.activation_more.LogSigmoid",),
         grads=("input: g · σ(−x)",),
         saves="x only, not torch's extra buffer e^(−|x|)",
         examples=_two_shapes(x)),
)
