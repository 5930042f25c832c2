"""The standard checks, written once and run on every rule of the table over its examples
(``trainer.rules``): values and gradients against torch's own op, gradcheck and
gradgradcheck, a graph of project Functions only, vmap, torch.compile, autocast dtypes, the
bytes kept for backward, and ``ctx.needs_input_grad``.

What is special to one op (its edge cases, its options, its error messages) stays in the
per-family files under ``tests/functional/``.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from trainer import rules, testing
from trainer.rules.examples import Example

CASES = [pytest.param(rule, index, id=f"{rule.name}-{index}")
         for rule in rules.RULES for index in range(len(rule.examples()))]


def example(rule: rules.Rule, index: int, dtype: torch.dtype = torch.float64) -> Example:
    """The rule's index-th example, its floating tensors cast to ``dtype`` (fresh leaves)."""
    chosen = rule.examples()[index]

    def cast(value):
        if isinstance(value, Tensor) and value.is_floating_point():
            return value.detach().to(dtype).requires_grad_(value.requires_grad)
        if isinstance(value, (list, tuple)):  # torch.lstm's hx and params: lists of tensors
            return type(value)(map(cast, value))
        return value

    return Example(tuple(map(cast, chosen.args)),
                   {k: cast(v) for k, v in chosen.kwargs.items()}, chosen.label,
                   chosen.finite_differences)


def calls(rule: rules.Rule, case: Example):
    """``(ours, torch's)``, each a function of the positional args, the options bound."""
    def ours(*args):
        return rule.functional(*args, **case.kwargs)

    def native(*args):
        return rule.torch_op(*args, **case.kwargs)

    return ours, native


def differentiable(args) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]


@pytest.mark.parametrize("rule, index", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_and_gradients_equal_torchs(rule, index, dtype):
    case = example(rule, index, dtype)
    ours, native = calls(rule, case)
    testing.assert_matches_reference(ours, native, *case.args)


@pytest.mark.parametrize("rule, index", CASES)
def test_gradcheck_and_gradgradcheck(rule, index):
    case = example(rule, index)
    if not case.finite_differences:
        pytest.skip(f"{rule.name}, {case}: the gradient is defined to differ there")
    ours, _ = calls(rule, case)
    testing.assert_gradcheck(ours, *case.args, gradgrad=rule.supports("double backward"))


@pytest.mark.parametrize("rule, index", CASES)
def test_graph_holds_project_functions_only(rule, index):
    case = example(rule, index)
    ours, _ = calls(rule, case)
    testing.assert_explicit_graph(ours(*case.args))


@pytest.mark.parametrize("rule, index", CASES)
def test_vmap_over_a_batch_equals_a_loop(rule, index):
    """vmap over a new leading dim of the first differentiable input: the outputs, and the
    gradients of their sum, equal those of each batch element in turn."""
    if not rule.supports("vmap"):
        pytest.skip(f"{rule.name} refuses vmap by design (trainer.rules)")
    case = example(rule, index)
    ours, _ = calls(rule, case)
    first = differentiable(case.args)[0]
    batch = torch.stack([case.args[first].detach() * scale for scale in (1.0, 0.5, 2.0)])

    def on(value):
        args = list(case.args)
        args[first] = value
        return ours(*args)

    def total(value):
        out = on(value)
        return (out[0] if isinstance(out, tuple) else out).sum()

    mapped = torch.func.vmap(on)(batch)
    mapped_grads = torch.func.vmap(torch.func.grad(total))(batch)
    for i, value in enumerate(batch):
        single = on(value)
        got = mapped[i] if not isinstance(mapped, tuple) else mapped[0][i]
        want = single if not isinstance(single, tuple) else single[0]
        torch.testing.assert_close(got, want)
        leaf = value.clone().requires_grad_()
        (grad,) = torch.autograd.grad(total(leaf), leaf)
        torch.testing.assert_close(mapped_grads[i], grad)


@pytest.mark.parametrize("rule, index", CASES)
def test_compile_fullgraph_matches_eager(rule, index):
    case = example(rule, index, torch.float32)
    ours, _ = calls(rule, case)
    testing.assert_compile_matches_eager(ours, *case.args)


@pytest.mark.parametrize("rule, index", CASES)
def test_autocast_bf16_gives_torchs_dtypes(rule, index):
    case = example(rule, index, torch.float32)
    ours, native = calls(rule, case)
    testing.assert_autocast_dtype_matches(ours, native, *case.args)


@pytest.mark.parametrize("rule, index", CASES)
def test_saves_no_more_than_native_autograd(rule, index):
    case = example(rule, index, torch.float32)
    ours, native = calls(rule, case)
    kept = testing.saved_bytes(lambda: ours(*case.args))
    kept_by_native = testing.saved_bytes(lambda: native(*case.args))
    assert kept <= kept_by_native, f"{rule.name} keeps {kept} B, native {kept_by_native} B"


@pytest.mark.parametrize("rule, index", CASES)
def test_needs_input_grad_is_honoured(rule, index):
    """With one input requiring grad, backward gives it the same gradient as with all of
    them, and runs no more aten ops than the backward for all of them."""
    case = example(rule, index)
    ours, _ = calls(rule, case)
    wanted = differentiable(case.args)
    everything = testing.backward_op_counts(ours, *case.args)
    out = ours(*case.args)
    out = out[0] if isinstance(out, tuple) else out
    grads = torch.autograd.grad(out, [case.args[i] for i in wanted], torch.ones_like(out),
                                allow_unused=True)
    for i, full in zip(wanted, grads, strict=True):
        args = [a.detach().requires_grad_(j == i) if isinstance(a, Tensor) and
                a.is_floating_point() else a for j, a in enumerate(case.args)]
        alone = ours(*args)
        alone = alone[0] if isinstance(alone, tuple) else alone
        (grad,) = torch.autograd.grad(alone, args[i], torch.ones_like(alone))
        torch.testing.assert_close(grad, full)
        if len(wanted) > 1:
            counts = testing.backward_op_counts(ours, *args)
            assert sum(counts.values()) <= sum(everything.values()), (i, counts, everything)


@pytest.mark.parametrize("rule, index", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_first_order_backward_equals_the_formula(rule, index, dtype):
    """A first-order backward may take a faster route (trainer.functional._fast); with a graph
    recorded (create_graph=True) every rule runs its formula as written. Both give the same
    gradients."""
    if not rule.supports("double backward"):
        pytest.skip(f"{rule.name} has no formula path: it refuses double backward by design")
    case = example(rule, index, dtype)
    ours, _ = calls(rule, case)
    out = ours(*case.args)
    out = out[0] if isinstance(out, tuple) else out
    wanted = [case.args[i] for i in differentiable(case.args)]
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    fast = torch.autograd.grad(out, wanted, g, retain_graph=True, allow_unused=True)
    formula = torch.autograd.grad(out, wanted, g, create_graph=True, allow_unused=True)
    tolerance = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {}
    for a, b in zip(fast, formula, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b.detach(), **tolerance)
