"""PyTorch's own OpInfo samples, run inside trainer.explicit() for every op of the table that
OpInfo has: the values and the gradients equal native's, the call reached its rule, and the
graph holds project Functions only, besides shape ops (which move gradient entries, no
arithmetic).

Samples come from ``torch.testing._internal.common_methods_invocations.op_db`` in float64 with
requires_grad, empty ones included; an op with very many samples (the pools: ~1000) is
thinned to an even spread of at most ``MAX_SAMPLES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
import torch
from torch.utils._pytree import tree_flatten

import trainer
from trainer import rules, testing

common_methods_invocations = pytest.importorskip(
    "torch.testing._internal.common_methods_invocations",
    reason="OpInfo needs expecttest (pip install -e '.[dev]')")

MAX_SAMPLES = 40
def _norm_order(sample) -> object:
    return sample.kwargs.get("p", sample.args[0] if sample.args else 2)


def _einsum_diagonal(sample) -> bool:
    einsum = importlib.import_module("trainer.functional.einsum")
    return einsum.diagonal_subscripts(sample.input if isinstance(sample.input, str)
                                      else sample.args[0])


#: OpInfo variants and samples that no rule takes, by design: each runs natively under
#: trainer.explicit() (a counted fallback), and the reason is the rule's docstring's.
DECLINED: dict[str, tuple[Callable[[object], bool], str]] = {
    "max.reduction_no_dim": (lambda sample: True, "the full max: no rule yet"),
    "min.reduction_no_dim": (lambda sample: True, "the full min: no rule yet"),
    "norm.nuc": (lambda sample: True, "the nuclear norm, an SVD: no rule"),
    "norm.inf": (lambda sample: True, "the max-norm: only the 2-norm has a rule"),
    "norm": (lambda sample: _norm_order(sample) not in (2, 2.0, "fro", None),
             "only the 2-norm has a rule"),
    "einsum": (_einsum_diagonal, "a subscript repeated within one operand (a diagonal)"),
    "div.trunc_rounding": (lambda sample: True, "rounding division: no rule"),
    "div.floor_rounding": (lambda sample: True, "rounding division: no rule"),
    "nn.functional.interpolate.bicubic": (lambda sample: True, "bicubic: no rule yet"),
    "nn.functional.interpolate.area": (lambda sample: sample.input.dim() == 5,
                                       "3-D area (adaptive_avg_pool3d): no rule yet"),
}


def opinfo_cases():
    names = {rule.name for rule in rules.RULES if rule.stands_for}  # standing in for torch's
    for info in common_methods_invocations.op_db:
        name = info.name.removeprefix("nn.functional.")
        if name in names and torch.float64 in info.supported_dtypes("cpu"):
            label = info.name + (f".{info.variant_test_name}" if info.variant_test_name else "")
            yield pytest.param(info, name, label, id=label)


def samples(info):
    found = list(info.sample_inputs("cpu", torch.float64, requires_grad=True))
    if len(found) > MAX_SAMPLES:
        step = len(found) / MAX_SAMPLES
        found = [found[int(i * step)] for i in range(MAX_SAMPLES)]
    return found


def draws_random_numbers(name: str, sample) -> bool:
    """Whether the sample draws a dropout mask (the defaults: dropout's p = 0.5 in training,
    attention's dropout_p = 0)."""
    if name == "dropout":
        p = sample.kwargs.get("p", sample.args[0] if sample.args else 0.5)
        return bool(p) and sample.kwargs.get("training", True)
    if name == "scaled_dot_product_attention":
        return bool(sample.kwargs.get("dropout_p", 0.0))
    return False


def leaves(sample) -> list[torch.Tensor]:
    found, _ = tree_flatten((sample.input, sample.args, sample.kwargs))
    return [t for t in found if isinstance(t, torch.Tensor) and t.requires_grad]


def run(info, sample):
    """The op's output tensors, and the gradients of a fixed weighted sum of them."""
    out = info.op(sample.input, *sample.args, **sample.kwargs)
    outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    wanted = leaves(sample)
    diff = [t for t in outs if t.requires_grad and t.is_floating_point()]
    if not diff or not wanted:
        return outs, []
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(t.shape, dtype=t.dtype, generator=generator) for t in diff]
    total = sum((t * w).sum() for t, w in zip(diff, weights))
    return outs, torch.autograd.grad(total, wanted, allow_unused=True)


@pytest.mark.parametrize("info, name, label", list(opinfo_cases()))
def test_opinfo_samples_run_their_rule_and_match_native(info, name, label):
    declined, why = DECLINED.get(label, (lambda sample: False, ""))
    checked = 0
    for sample in samples(info):
        if draws_random_numbers(name, sample):  # torch's draws cannot be matched
            continue
        if declined(sample):
            continue
        native_outs, native_grads = run(info, sample)
        with trainer.explicit() as report:
            outs, grads = run(info, sample)
        where = f"{info.name} on {sample}"
        assert len(outs) == len(native_outs), where
        for ours, theirs in zip(outs, native_outs):
            torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-7, equal_nan=True,
                                       msg=lambda m: f"{where}: {m}")
        for ours, theirs in zip(grads, native_grads):
            if theirs is None:
                assert ours is None or not ours.any(), where
                continue
            torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-7, equal_nan=True,
                                       msg=lambda m: f"{where} (grad): {m}")
        # the op's own rule, or the one its adapter hands the call to (torch.max(x, y): maximum)
        assert report.explicit, f"{where}: the call reached no rule"
        builtin = testing.graph_node_counts(outs)["builtin"]
        assert not builtin, f"{where}: built-in nodes {builtin}"
        checked += 1
    if not checked and why:
        pytest.skip(f"{label}: {why}")
    assert checked, f"{label}: no sample was checked"
