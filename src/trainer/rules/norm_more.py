"""The table of rules, section: RMS and group norms (see :mod:`trainer.rules`).

Entry points, found with a printing ``TorchFunctionMode``: ``nn.RMSNorm`` calls
``F.rms_norm`` and ``nn.GroupNorm`` calls ``F.group_norm`` (the mode sees neither's inner
``torch.rms_norm``/``torch.group_norm`` call); ``torch.rms_norm`` and ``torch.group_norm`` are
separate objects, reached when called directly. No ``Tensor`` method exists for either.
"""

from __future__ import annotations

from torch import Tensor

from trainer import functional as F
from trainer.functional import norm_more
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule


# -- adapters: torch entry points whose arguments differ from the functional's ---------------

def rms_norm_from_torch(input, normalized_shape, weight=None, eps=None):
    """``F.rms_norm`` and ``torch.rms_norm``: a complex input is left to torch (native takes
    it; the rule is for real dtypes)."""
    if isinstance(input, Tensor) and input.is_complex():
        return NotImplemented
    return F.rms_norm(input, normalized_shape, weight, eps)


def group_norm_from_torch(input, num_groups, weight=None, bias=None, eps=1e-05,
                          cudnn_enabled=True):
    """``torch.group_norm``: F.group_norm's arguments and ``cudnn_enabled`` (a kernel choice,
    nothing to the rule); unlike F.group_norm it takes an input with a single value to
    normalize (N·(C/G)·∏* = 1), as native does."""
    return norm_more._group_norm(input, num_groups, weight, bias, eps)


# -- examples: what the standard checks run each rule on -------------------------------------

def rms_norm_examples() -> list[Example]:
    return [Example((x(3, 4), (4,), x(4))),  # eps=None: float64's machine epsilon
            Example((x(2, 3, 4), (3, 4), None), {"eps": 1e-3}, "2 dims, no weight"),
            Example((x(2, 3, 4), [3, 4], x(3, 4)), {"eps": 1e-5}, "2 dims, a list"),
            Example((x(5), (5,), x(5)), label="1-D input"),
            Example((x(3, 2, 4), (2, 4), x(2, 4)), label="2 dims, weight"),
            Example((x(3, 2, 4), (4,), None), {"eps": 1e-3}, "last dim, no weight")]


def group_norm_examples() -> list[Example]:
    return [Example((x(2, 6, 3), 2, x(6), x(6)), label="2 groups of 3 channels"),
            Example((x(2, 4, 3, 2), 1, None, None), label="1 group, no affine"),
            Example((x(3, 4, 3), 4, x(4), None), {"eps": 1e-3}, "a group per channel, weight"),
            Example((x(4, 6), 2, x(6), x(6)), label="(N, C) input"),
            Example((x(2, 6, 3), 3, x(6), x(6)), label="3 groups of 2 channels"),
            Example((x(2, 6, 3), 3, None, None), label="3 groups of 2, no affine"),
            Example((x(2, 4, 2, 2), 1, x(4), x(4)), label="1 group, 4-D, affine")]
    # ((N, C) with a group per channel: one value per group, x̂ = 0 and rstd = eps^-1/2, whose
    # float32 rounding the standard checks' tolerance refuses; test_norm_more.py gradchecks it)
    # (bias without weight: native's backward fails there, "tensor does not have a device";
    # tests/functional/test_norm_more.py checks ours against weight = 1)


RULES: tuple[Rule, ...] = (
    Rule(name="rms_norm", function=norm_more.RMSNorm,
         stands_for=("torch.nn.functional.rms_norm", "torch.rms_norm"),
         adapters={"torch.nn.functional.rms_norm": rms_norm_from_torch,
                   "torch.rms_norm": rms_norm_from_torch},
         twins=("trainer.nn.norm_more.RMSNorm",),
         grads=("input: rstd · (gγ − x̂·mean_d(gγ·x̂)),  x̂ = x·rstd",
                "weight: Σ_rows g·x̂"),
         saves="x and the per-row rstd when ∂x or ∂γ is needed; γ only for ∂x",
         examples=rms_norm_examples),
    Rule(name="group_norm", function=norm_more.GroupNorm,
         stands_for=("torch.nn.functional.group_norm", "torch.group_norm"),
         adapters={"torch.group_norm": group_norm_from_torch},
         twins=("trainer.nn.norm_more.GroupNorm", "trainer.nn.norm_more.InstanceNorm1d",
                "trainer.nn.norm_more.InstanceNorm2d"),
         grads=("input: rstd/M · (M·gγ − Σ_grp gγ − x̂·Σ_grp(gγ·x̂))  (M: a group's values)",
                "weight: Σ_{n,*} g·x̂  (per channel)",
                "bias: Σ_{n,*} g  (per channel)"),
         saves="x and the per-(sample, group) μ, rstd when ∂x or ∂γ is needed; γ only for ∂x",
         examples=group_norm_examples),
)
