"""trainer.testing: the checks accept a user's own Function, and fail even under python -O."""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.checkpoint import CheckpointFunction

from trainer import testing


class Swish(torch.autograd.Function):
    """A user's own Function, defined outside trainer: y = x σ(x), so ∂y/∂x = σ (1 + x (1 - σ))."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * s * (1 + x * (1 - s))


def test_a_users_own_function_is_explicit():
    x = torch.randn(3, 4, requires_grad=True)
    assert testing.assert_explicit_graph(Swish.apply(Swish.apply(x))) == 3  # 2 Swish + the leaf
    testing.assert_matches_reference(Swish.apply, torch.nn.functional.silu, x)


def test_a_builtin_node_fails_naming_it_and_how_to_allow():
    x = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(AssertionError, match=r"built-in autograd node MulBackward0 .*allow=") as e:
        testing.assert_explicit_graph(Swish.apply(x) * 2)
    assert "not a torch.autograd.Function of yours or of trainer's" in str(e.value)


def test_stop_at_skips_the_history_of_an_input():
    x = torch.randn(3, 4, requires_grad=True)
    h = x * 2  # MulBackward0: history that is not under test
    assert testing.assert_explicit_graph(Swish.apply(h), stop_at=[h]) == 1


def test_torchs_own_python_function_fails_unless_allowed():
    x = torch.randn(3, 4, requires_grad=True)
    out = CheckpointFunction.apply(Swish.apply, True, x)  # torch.utils.checkpoint's Function
    with pytest.raises(AssertionError, match=r"CheckpointFunction is torch's own Function"):
        testing.assert_explicit_graph(out)
    with pytest.raises(AssertionError, match=r"allow=\(CheckpointFunction,\)"):
        testing.assert_explicit_graph(out)
    assert testing.assert_explicit_graph(out, allow=[CheckpointFunction]) == 2


def test_vmap_needs_a_vmap_rule_on_the_function():
    class SwishWithoutVmapRule(Swish):
        generate_vmap_rule = False

    def loss(fn):
        return lambda w, x: fn(x * w).sum()

    w, xs = torch.randn(4, requires_grad=True), torch.randn(3, 4)
    testing.assert_vmap_matches_loop(loss(Swish.apply), [w], [xs])
    with pytest.raises(RuntimeError, match="does not have vmap support"):
        testing.assert_vmap_matches_loop(loss(SwishWithoutVmapRule.apply), [w], [xs])


def test_gradcheck_failure_raises_even_when_told_not_to():
    class WrongSwish(Swish):
        @staticmethod
        def backward(ctx, g):
            return 2 * Swish.backward(ctx, g)

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    testing.assert_gradcheck(Swish.apply, x, raise_exception=False)
    with pytest.raises(AssertionError, match="gradcheck: analytic first derivatives"):
        testing.assert_gradcheck(WrongSwish.apply, x, raise_exception=False)


def test_a_mismatch_fails_on_shape_dtype_and_count():
    x = torch.randn(3, 4)
    with pytest.raises(AssertionError, match=r"output 0: shape \(3, 4\) != \(4, 3\)"):
        testing.assert_matches_reference(lambda t: t, lambda t: t.t(), x)
    with pytest.raises(AssertionError, match="output 0: dtype torch.float64 != torch.float32"):
        testing.assert_matches_reference(lambda t: t.double(), lambda t: t, x)
    with pytest.raises(AssertionError, match="2 outputs, reference has 1"):
        testing.assert_matches_reference(lambda t: (t, t), lambda t: t, x)


def test_checks_raise_under_python_O():
    script = textwrap.dedent("""
        import torch
        from trainer import testing

        assert False, "python -O should have stripped this assert"
        x, ints = torch.randn(3, dtype=torch.float64, requires_grad=True), torch.arange(3)
        checks = {  # each wrong; all but the first used to fail through an assert statement
            "float values": lambda: testing.assert_matches_reference(lambda t: t + 1,
                                                                     lambda t: t, x),
            "integer values": lambda: testing.assert_matches_reference(lambda t: t + 1,
                                                                       lambda t: t, ints),
            "output count": lambda: testing.assert_matches_reference(
                lambda t: (t, t), lambda t: t, x, check_grads=False),
            "gradcheck": lambda: testing.assert_gradcheck(  # autograd: d(t²)/dt = t, not 2t
                lambda t: t.detach() * t, x, raise_exception=False),
            "built-in graph": lambda: testing.assert_explicit_graph(x * 2),
        }
        for name, check in checks.items():
            try:
                check()
            except AssertionError as e:
                print(f"{name}: {e}".splitlines()[0])
            else:
                print(f"{name}: passed")
    """)
    run = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "float values: output 0: Tensor-likes are not close!",
        "integer values: output 0: integer outputs differ",
        "output count: 2 outputs, reference has 1",
        "gradcheck: gradcheck: analytic first derivatives disagree with finite differences",
        "built-in graph: built-in autograd node MulBackward0 in the graph: it is not a "
        "torch.autograd.Function of yours or of trainer's (pass allow=(...) to accept a "
        "Function class)",
    ]
