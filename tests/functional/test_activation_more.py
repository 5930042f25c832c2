"""hardtanh, relu6, hardswish, hardsigmoid, elu, selu, celu, softplus, mish, glu and logsigmoid:
what the standard checks (tests/test_rule_checks.py) do not cover. The derivative at each kink
against torch's, in-place forms, the bytes kept for backward, softplus's linear switch, glu's
refusals, the trainer.nn twins through convert, and every torch entry point routed under
trainer.explicit()."""

from __future__ import annotations

import inspect
from functools import partial

import pytest
import torch
import torch.nn.functional as torch_F
from torch._decomp import decompositions

import trainer
import trainer.functional as F
import trainer.nn as nn
from trainer import testing
from trainer.functional.activation_smooth import SELU_ALPHA, SELU_SCALE
from trainer.nn import activation_more as twins

NAN, INF = float("nan"), float("inf")

# name -> (ours, torch's), each a function of the input alone
OPS = {
    "hardtanh": (F.hardtanh, torch_F.hardtanh),
    "hardtanh_bounds": (partial(F.hardtanh, min_val=-0.5, max_val=2.0),
                        partial(torch_F.hardtanh, min_val=-0.5, max_val=2.0)),
    "relu6": (F.relu6, torch_F.relu6),
    "hardswish": (F.hardswish, torch_F.hardswish),
    "hardsigmoid": (F.hardsigmoid, torch_F.hardsigmoid),
    "elu": (F.elu, torch_F.elu),
    "elu_alpha": (partial(F.elu, alpha=0.5), partial(torch_F.elu, alpha=0.5)),
    "elu_negative_alpha": (partial(F.elu, alpha=-0.5), partial(torch_F.elu, alpha=-0.5)),
    "selu": (F.selu, torch_F.selu),
    "celu": (partial(F.celu, alpha=2.0), partial(torch_F.celu, alpha=2.0)),
    "celu_negative_alpha": (partial(F.celu, alpha=-0.5), partial(torch_F.celu, alpha=-0.5)),
    "softplus": (F.softplus, torch_F.softplus),
    "softplus_switch": (partial(F.softplus, beta=2.0, threshold=1.0),
                        partial(torch_F.softplus, beta=2.0, threshold=1.0)),
    "mish": (F.mish, torch_F.mish),
    "glu": (F.glu, torch_F.glu),
    "glu_dim0": (partial(F.glu, dim=0), partial(torch_F.glu, dim=0)),
    "logsigmoid": (F.logsigmoid, torch_F.logsigmoid),
}
NAMES = list(OPS)
SHAPES = [(4, 6), (2, 3, 4), (0, 4), (2, 0), (8, 2)]


def randn(*shape, dtype=torch.float32, grad=True, scale=3.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(dtype).requires_grad_(grad)


def grad_of(op, x, g=None):
    x = x.detach().requires_grad_()
    y = op(x)
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y) if g is None else g)
    return y.detach(), gx


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_matches_torch(name, shape, dtype):
    ours, ref = OPS[name]
    x = randn(*shape, dtype=dtype)
    testing.assert_matches_reference(ours, ref, x)  # non-contiguous grad_output
    testing.assert_matches_reference(ours, ref, testing.non_contiguous(x), contiguous_grad=True)


LOW_PRECISION_TOLERANCE = {torch.bfloat16: {"rtol": 1.6e-2, "atol": 1e-2},
                           torch.float16: {"rtol": 1e-3, "atol": 1e-3}}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_values_are_torchs_and_gradients_are_float64s_rounded(name, dtype):
    # Values are torch's kernel's. The backward computes in float32 and rounds once, as
    # torch's kernels mostly do (its glu rounds between steps, so it is the less accurate):
    # gradients are held to the float64 gradient, rounded.
    ours, ref = OPS[name]
    x = randn(16, 8, dtype=dtype, scale=1.5)
    g = torch.randn(ref(x).shape).to(dtype)
    y, grad = grad_of(ours, x, g)
    assert torch.equal(y, ref(x.detach())) and grad.dtype == dtype
    _, grad64 = grad_of(ref, x.double(), g.double())
    torch.testing.assert_close(grad, grad64.to(dtype), **LOW_PRECISION_TOLERANCE[dtype])


def test_hardtanh_compares_low_precision_with_the_bounds_in_float32_as_torch():
    # 0.7 is no bfloat16: x = bf16(0.7) = 0.69921875 lies inside (−0.7, 0.7), so g passes
    x = torch.tensor([0.69921875, -0.69921875, 0.703125, 0.5], dtype=torch.bfloat16)
    y, grad = grad_of(partial(F.hardtanh, min_val=-0.7, max_val=0.7), x)
    y_ref, grad_ref = grad_of(partial(torch_F.hardtanh, min_val=-0.7, max_val=0.7), x)
    assert torch.equal(y, y_ref) and torch.equal(grad, grad_ref)
    assert grad.tolist() == [1.0, 1.0, 0.0, 1.0]


# -- the kinks: torch's conventions ----------------------------------------------------------

KINKS = {  # name -> values at and around its kinks, and specials (NaN apart: see below)
    "hardtanh": [-1.0, 1.0, -1.0001, 0.9999, 0.0, -0.0, INF, -INF],
    "hardtanh_bounds": [-0.5, 2.0, -0.4999, 2.0001],
    "relu6": [0.0, -0.0, 6.0, 1e-30, -1e-30, 5.9999, 6.0001, INF],
    "hardswish": [-3.0, 3.0, -1.5, -3.0001, -2.9999, 2.9999, 3.0001, 0.0, INF],
    "hardsigmoid": [-3.0, 3.0, -3.0001, -2.9999, 2.9999, 3.0001, 0.0, INF, -INF],
    "elu": [0.0, -0.0, 1e-30, -1e-30, -40.0, 40.0, -800.0, INF, -INF],
    "elu_alpha": [0.0, -0.0, 1e-30, -1e-30, -40.0, 40.0],
    "elu_negative_alpha": [0.0, -0.0, 1e-30, -1e-30, -40.0, 40.0, INF, -INF],
    "selu": [0.0, -0.0, 1e-30, -1e-30, -40.0, 40.0, -INF],
    "celu": [0.0, -0.0, 1e-30, -1e-30, -40.0, 40.0, -INF],
    "celu_negative_alpha": [0.0, -0.0, 1e-30, -1e-30, -40.0, 20.0],
    "softplus": [0.0, 20.0, 20.000001, 19.999999, -40.0, -800.0, 800.0, INF, -INF],
    "softplus_switch": [0.5, 0.5000001, 0.4999999, -0.5, -40.0, INF, -INF],
    "mish": [0.0, -0.0, 20.0, 21.0, -40.0, -800.0, 800.0],
    "logsigmoid": [0.0, -0.0, 40.0, -40.0, 800.0, -800.0, INF, -INF],
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(KINKS))
def test_derivative_at_the_kinks_and_special_values_is_torchs(name, dtype):
    ours, ref = OPS[name]
    x = torch.tensor(KINKS[name] * 3, dtype=dtype)  # thrice: torch's vectorised loop too
    y, grad = grad_of(ours, x)
    y_ref, grad_ref = grad_of(ref, x)
    torch.testing.assert_close(y, y_ref, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(grad, grad_ref, equal_nan=True)


def test_the_kink_conventions_spelled_out():
    def slopes(op, *values):
        return grad_of(op, torch.tensor(values, dtype=torch.float64))[1].tolist()

    assert slopes(F.hardtanh, -1.0, 1.0, 0.0) == [0.0, 0.0, 1.0]  # 0 at both bounds
    assert slopes(F.relu6, 0.0, 6.0, 3.0) == [0.0, 0.0, 1.0]
    assert slopes(F.hardswish, -3.0, 3.0, 0.0) == [0.0, 1.0, 0.5]  # the open middle
    assert slopes(F.hardsigmoid, -3.0, 3.0, 0.0) == [0.0, 0.0, 1 / 6]
    assert slopes(partial(F.elu, alpha=0.5), 0.0) == [0.5]  # x = 0 takes the e^x branch
    assert slopes(F.selu, 0.0) == pytest.approx([SELU_ALPHA * SELU_SCALE])
    assert slopes(partial(F.celu, alpha=-2.0), 0.0) == [1.0]
    # softplus: exactly 1 above its switch (where y = x), σ(βx) at and below it
    assert slopes(partial(F.softplus, beta=2.0, threshold=1.0), 0.5, 0.51) == [
        pytest.approx(torch.sigmoid(torch.tensor(1.0, dtype=torch.float64)).item()), 1.0]


DECOMPOSED = {  # name -> torch's decomposition of its backward, as a function of (g, x)
    "hardtanh": lambda g, x: decompositions.hardtanh_backward(g, x, -1.0, 1.0),
    "hardtanh_bounds": lambda g, x: decompositions.hardtanh_backward(g, x, -0.5, 2.0),
    "relu6": lambda g, x: decompositions.hardtanh_backward(g, x, 0.0, 6.0),
    "hardswish": decompositions.hardswish_backward,
    "hardsigmoid": decompositions.hardsigmoid_backward,
    "elu": lambda g, x: decompositions.elu_backward(g, 1.0, 1.0, 1.0, False, x),
    "elu_negative_alpha": lambda g, x: decompositions.elu_backward(g, -0.5, 1.0, 1.0, False, x),
    "selu": lambda g, x: decompositions.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1.0, False, x),
    "celu": lambda g, x: decompositions.elu_backward(g, 2.0, 1.0, 0.5, False, x),
    "softplus": lambda g, x: decompositions.softplus_backward(g, x, 1.0, 20.0),
    "softplus_switch": lambda g, x: decompositions.softplus_backward(g, x, 2.0, 1.0),
    "mish": decompositions.mish_backward,
    "logsigmoid": lambda g, x: decompositions.log_sigmoid_backward(g, x, x.new_empty(0)),
}


@pytest.mark.parametrize("name", list(DECOMPOSED))
def test_nan_follows_torchs_decompositions(name):
    # torch's CPU kernels disagree with themselves on a NaN x: the vectorised loops of
    # hardtanh, hardswish and elu give 0 or NaN, their scalar loops (and CUDA, and the
    # decompositions that torch.compile uses) pass g. The rules take the decompositions'.
    x = torch.tensor([NAN, 1.0, -1.0, NAN, 2.5, -4.0], dtype=torch.float64)
    g = torch.arange(2.0, 8.0, dtype=torch.float64)
    y, grad = grad_of(OPS[name][0], x, g)
    assert torch.isnan(y[0]) and torch.isnan(y[3])
    torch.testing.assert_close(grad, DECOMPOSED[name](g, x), equal_nan=True)


# -- second derivatives -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_second_derivative_matches_torchs(name):
    ours, ref = OPS[name]

    def first_grad(op, x):
        (gx,) = torch.autograd.grad(op(x).pow(2).sum(), x, create_graph=True)
        return gx

    x = randn(4, 6, dtype=torch.float64)
    if name == "hardsigmoid":  # torch has no derivative of hardsigmoid_backward; it is g/6
        x = x.detach().requires_grad_()
        (gg,) = torch.autograd.grad(first_grad(ours, x).sum(), x)
        inside = (x.abs() < 3).double()
        torch.testing.assert_close(gg, 2 * inside / 36)  # d/dx of 2y·y′ = 2y′² (y″ = 0)
        return
    testing.assert_matches_reference(partial(first_grad, ours), partial(first_grad, ref), x)


# -- in place ---------------------------------------------------------------------------------

# exact in place (mark_dirty): the backward needs only what y and the saved bits hold
IN_PLACE = {
    "hardtanh": (F.hardtanh, torch_F.hardtanh),
    "relu6": (F.relu6, torch_F.relu6),
    "hardsigmoid": (F.hardsigmoid, torch_F.hardsigmoid),
    "elu": (F.elu, torch_F.elu),
    "elu_zero_alpha": (partial(F.elu, alpha=0.0), partial(torch_F.elu, alpha=0.0)),
    "selu": (F.selu, torch_F.selu),
    "celu": (partial(F.celu, alpha=2.0), partial(torch_F.celu, alpha=2.0)),
}
# in place only where autograd does not record (the backward needs the original x)
OUT_OF_PLACE_WHEN_RECORDING = {
    "hardswish": (F.hardswish, torch_F.hardswish),
    "mish": (F.mish, torch_F.mish),
}


@pytest.mark.parametrize("name", list(IN_PLACE))
def test_inplace_mutates_like_torch_and_gradients_match(name):
    op, ref = IN_PLACE[name]
    base = randn(4, 5, dtype=torch.float64)
    g = torch.randn(4, 5, dtype=torch.float64)

    def run(fn):
        x = base * 1  # a non-leaf, as in-place needs under autograd
        y = fn(x, inplace=True)
        assert y is x  # the very tensor, modified
        (grad,) = torch.autograd.grad(y, base, g)
        return y, grad

    (y, grad), (y_ref, grad_ref) = run(op), run(ref)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, grad_ref)
    x = base * 1
    multiply_node = x.grad_fn
    y = op(x, inplace=True)
    assert type(y.grad_fn).__name__ in ("HardtanhBackward", "HardsigmoidBackward", "ELUBackward")
    assert y.grad_fn.next_functions[0][0] is multiply_node  # nothing built-in in between


@pytest.mark.parametrize("name", list(OUT_OF_PLACE_WHEN_RECORDING))
def test_inplace_mutates_only_when_autograd_does_not_record(name):
    op, ref = OUT_OF_PLACE_WHEN_RECORDING[name]
    x = randn(4, 5, grad=False)
    expected = ref(x)
    y = op(x, inplace=True)
    assert y is x and torch.equal(x, expected)
    leaf = randn(4, 5)
    before = leaf.detach().clone()
    with torch.no_grad():  # not recording either: mutates
        op(leaf, inplace=True)
    assert torch.equal(leaf.detach(), ref(before))

    base = randn(4, 5, dtype=torch.float64)
    x = base * 1
    before = x.detach().clone()
    y = op(x, inplace=True)
    assert y is not x and torch.equal(x, before)  # x is still needed by backward: left alone
    torch.testing.assert_close(y, ref(before))
    testing.assert_matches_reference(lambda b: op(b * 1, inplace=True),
                                     lambda b: ref(b * 1, inplace=True), base)


def test_inplace_on_a_leaf_that_needs_grad_raises_like_torch():
    for op in (F.hardtanh, F.relu6, F.hardsigmoid, F.elu, F.selu, F.celu):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            op(randn(3), inplace=True)


@pytest.mark.parametrize("op,ref", [(F.elu, torch_F.elu), (F.celu, torch_F.celu)])
def test_inplace_with_negative_alpha_fails_in_backward_like_torch(op, ref):
    base = randn(5)
    y = op(base * 1, alpha=-0.5, inplace=True)
    torch.testing.assert_close(y, ref(base.detach(), alpha=-0.5))
    with pytest.raises(RuntimeError, match="negative alpha"):
        y.sum().backward()
    with pytest.raises(RuntimeError, match="negative slope"):  # torch's own
        ref(base * 1, alpha=-0.5, inplace=True).sum().backward()


def test_inplace_hardsigmoid_reads_its_mask_off_y():
    # in place, [−3 < x < 3] is read as [0 < y < 1]: exact for every x whose x + 3 does not
    # round to 6, which in float32 is all but x = 3 − ulp(3) (there y = 1 and torch says 1/6)
    three = torch.tensor(3.0)
    below = torch.nextafter(three, torch.tensor(0.0)).item()
    base = torch.tensor([-3.0, -2.9999998, 0.0, 2.9999, 3.0, below], requires_grad=True)
    (grad,) = torch.autograd.grad(F.hardsigmoid(base * 1, inplace=True).sum(), base)
    (grad_ref,) = torch.autograd.grad(torch_F.hardsigmoid(base * 1).sum(), base)
    torch.testing.assert_close(grad[:5], grad_ref[:5])
    assert grad[5] == 0 and grad_ref[5] == pytest.approx(1 / 6)


@pytest.mark.parametrize("name", [*IN_PLACE, *OUT_OF_PLACE_WHEN_RECORDING])
def test_inplace_under_vmap_of_grad(name):
    from torch.func import grad, vmap

    op, ref = {**IN_PLACE, **OUT_OF_PLACE_WHEN_RECORDING}[name]

    def loss(op, inplace, x):
        return op(x * 1, inplace=inplace).pow(2).sum()

    xs = randn(4, 5, grad=False)
    native = vmap(grad(partial(loss, ref, True)))(xs)
    for inplace in (True, False):
        torch.testing.assert_close(vmap(grad(partial(loss, op, inplace)))(xs), native)
    mutated = xs.clone()
    vmap(lambda x: op(x, inplace=True))(mutated)  # no autograd: mutates, as torch does
    torch.testing.assert_close(mutated, ref(xs.clone(), inplace=True))


# -- what is kept for backward ----------------------------------------------------------------


def saved_storages(fn):
    """(bytes kept for backward, the data pointers of the storages kept, fn's output)."""
    kept = {}

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(kept.values()), set(kept), out


@pytest.mark.parametrize("shape", [(64, 256), (5, 7), (3, 0), ()], ids=str)
def test_hard_activations_keep_one_bit_per_element(shape):
    x = randn(*shape)
    bits = -(-x.numel() // 8)  # one bit per element, the last byte padded
    for op, ref in [OPS["hardtanh"], OPS["relu6"], OPS["hardsigmoid"]]:
        assert testing.saved_bytes(partial(op, x)) == bits
        assert testing.saved_bytes(partial(op, x * 1, inplace=True)) == bits
        assert testing.saved_bytes(partial(ref, x)) == 4 * x.numel()  # torch keeps x


def test_elu_family_keeps_its_output_and_a_bit_only_for_negative_alpha():
    x = randn(64, 256)
    for op in (F.elu, partial(F.elu, alpha=0.0), F.selu, partial(F.celu, alpha=2.0),
               partial(F.celu, alpha=-0.5), partial(F.elu, inplace=True)):
        nbytes, storages, y = saved_storages(lambda: op(x * 1))
        assert nbytes == y.nbytes and storages == {y.untyped_storage().data_ptr()}  # y itself
    nbytes, storages, y = saved_storages(lambda: F.elu(x, alpha=-0.5))
    assert nbytes == y.nbytes + x.numel() // 8 and y.untyped_storage().data_ptr() in storages


def test_smooth_activations_keep_x_alone():
    x = randn(64, 256)
    for name in ["hardswish", "softplus", "softplus_switch", "mish", "glu", "logsigmoid"]:
        ours, ref = OPS[name]
        nbytes, storages, _ = saved_storages(partial(ours, x))
        assert nbytes == x.nbytes and storages == {x.untyped_storage().data_ptr()}
    # torch's logsigmoid keeps a buffer of e^(−|x|) beside x on CPU
    assert testing.saved_bytes(partial(F.logsigmoid, x)) * 2 == testing.saved_bytes(
        partial(torch_F.logsigmoid, x))


@pytest.mark.parametrize("name", NAMES)
def test_nothing_is_saved_without_a_gradient(name):
    ours, _ = OPS[name]
    assert testing.saved_bytes(partial(ours, randn(4, 6, grad=False))) == 0


# -- softplus's linear switch -----------------------------------------------------------------


@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 3.0), (0.5, 1.0), (-1.0, 2.0)])
def test_softplus_switches_to_x_where_beta_x_passes_the_threshold(beta, threshold):
    at = threshold / beta
    x = torch.tensor([at - 1e-6, at, at + 1e-6, at + 1.0, at - 1.0], dtype=torch.float64)
    g = torch.arange(1.0, 6.0, dtype=torch.float64)
    y, grad = grad_of(partial(F.softplus, beta=beta, threshold=threshold), x, g)
    y_ref, grad_ref = grad_of(partial(torch_F.softplus, beta=beta, threshold=threshold), x, g)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(grad, grad_ref)
    above = x * beta > threshold
    assert torch.equal(y[above], x[above]) and torch.equal(grad[above], g[above])
    below = ~above
    torch.testing.assert_close(grad[below], g[below] * torch.sigmoid(beta * x[below]))


# -- glu ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,dim", [((4, 6), -1), ((4, 6), 0), ((2, 4, 3), 1), ((6,), 0),
                                       ((2, 0), 0), ((0, 4), 1), ((2, 2, 2, 2), -4)], ids=str)
def test_glu_along_every_dim_matches_torch(shape, dim):
    testing.assert_matches_reference(partial(F.glu, dim=dim), partial(torch_F.glu, dim=dim),
                                     randn(*shape, dtype=torch.float64))


def test_glu_refuses_what_torch_refuses_naming_the_op_and_shape():
    odd = randn(3, 5)
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        torch_F.glu(odd)
    with pytest.raises(RuntimeError, match=r"glu: expected an even size along dim 1.*\(3, 5\)"):
        F.glu(odd)
    with pytest.raises(F.ShapeError, match=r"glu: expected an even size along dim 0.*\(3, 5\)"):
        F.glu(odd, dim=0)
    with pytest.raises(RuntimeError, match="glu: expected an input of 1 or more dims"):
        F.glu(torch.tensor(1.0))
    for dim in (2, -3):
        with pytest.raises(IndexError, match=rf"glu: expected dim in \[-2, 1\].*got dim={dim}"):
            F.glu(odd, dim=dim)
        with pytest.raises(IndexError):  # torch's, too
            torch_F.glu(odd, dim=dim)


# -- other refusals and signatures ------------------------------------------------------------


def test_bad_options_and_dtypes_name_the_op():
    x = randn(3, 4)
    with pytest.raises(ValueError, match="min_val cannot be greater"):  # torch's
        torch_F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(ValueError, match=r"hardtanh: expected min_val <= max_val.*min_val=1.0"):
        F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="alpha cannot be 0"):  # torch's
        torch_F.celu(x, alpha=0.0)
    with pytest.raises(RuntimeError, match=r"celu: expected alpha != 0.*alpha=0.0"):
        F.celu(x, alpha=0.0)
    ints = torch.arange(-4, 4)
    for op in (F.hardswish, F.hardsigmoid, F.elu, F.selu, F.celu, F.softplus, F.mish, F.glu,
               F.logsigmoid):
        with pytest.raises(RuntimeError, match=rf"{op.__name__}: expected input of a floating"):
            op(ints)
    for op, ref in [(F.hardtanh, torch_F.hardtanh), (F.relu6, torch_F.relu6)]:
        assert torch.equal(op(ints), ref(ints))  # integers clamp, as torch's


@pytest.mark.parametrize("name", ["hardtanh", "relu6", "hardswish", "hardsigmoid", "elu", "selu",
                                  "celu", "mish", "glu"])
def test_signature_is_torchs(name):
    def params(fn):
        return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]

    assert params(getattr(F, name)) == params(getattr(torch_F, name))


def test_builtin_signatures_are_torchs_documented_ones():
    # F.softplus and F.logsigmoid are builtins without a signature: their docstrings say it
    assert torch_F.softplus.__doc__.lstrip().startswith("softplus(input, beta=1, threshold=20)")
    assert [(p.name, p.default) for p in inspect.signature(F.softplus).parameters.values()] == [
        ("input", inspect.Parameter.empty), ("beta", 1.0), ("threshold", 20.0)]
    assert list(inspect.signature(F.logsigmoid).parameters) == ["input"]


# -- transforms, compile, autocast ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_batched_grad_outputs(name):
    ours, _ = OPS[name]
    x = randn(4, 6, dtype=torch.float64)
    y = ours(x)
    gs = torch.randn(5, *y.shape, dtype=torch.float64)
    (batched,) = torch.autograd.grad(y, x, gs, is_grads_batched=True)
    looped = torch.stack([torch.autograd.grad(ours(x), x, g)[0] for g in gs])
    torch.testing.assert_close(batched, looped)


# elu with a negative alpha is no example of the table's: it keeps y and a bit mask, 2 bytes
# more than native's x on the examples' 12 values (activation_smooth.py says why), which the
# standard saves check would refuse; its vmap and autocast checks stay here


def test_vmap_per_sample_grads_of_elu_with_a_negative_alpha():
    ours, _ = OPS["elu_negative_alpha"]
    w = torch.randn(6, requires_grad=True)
    xs = torch.randn(5, 4, 6) * 3
    ts = torch.randn(*torch.func.vmap(ours)(xs).shape)

    def loss(w, x, t):
        return ((ours(x * w) - t) ** 2).sum()

    testing.assert_vmap_matches_loop(loss, [w], [xs, ts])


def test_compile_fullgraph_of_the_in_place_forms_matches_eager():
    # in place (on a leaf it would raise, so no example of the table's) and elu's negative alpha
    def ops(x):
        out = F.hardtanh(x * 1, -0.5, 2.0, inplace=True) + F.hardsigmoid(x * 1, inplace=True)
        return out + F.selu(x * 1, True) + F.elu(x * 1, 0.5, True) + F.elu(x, -0.5)

    testing.assert_compile_matches_eager(ops, randn(4, 4))


def test_autocast_bf16_dtypes_of_elu_with_a_negative_alpha():
    ours, ref = OPS["elu_negative_alpha"]
    testing.assert_autocast_dtype_matches(ours, ref, randn(4, 6))


@pytest.mark.parametrize("name", NAMES)
def test_autocast_keeps_a_bfloat16_inputs_dtype_as_torch(name):
    # the standard checks run autocast on float32 inputs; here the input is bfloat16 already
    ours, ref = OPS[name]
    testing.assert_autocast_dtype_matches(ours, ref, randn(4, 6, dtype=torch.bfloat16))


# -- trainer.nn twins ---------------------------------------------------------------------------

MODULES = [
    (torch.nn.Hardtanh(-0.5, 2.0), twins.Hardtanh), (torch.nn.ReLU6(), twins.ReLU6),
    (torch.nn.Hardswish(), twins.Hardswish), (torch.nn.Hardsigmoid(), twins.Hardsigmoid),
    (torch.nn.ELU(0.5), twins.ELU), (torch.nn.SELU(), twins.SELU),
    (torch.nn.CELU(2.0), twins.CELU), (torch.nn.Softplus(2.0, 1.0), twins.Softplus),
    (torch.nn.Mish(), twins.Mish), (torch.nn.GLU(0), twins.GLU),
    (torch.nn.LogSigmoid(), twins.LogSigmoid),
]


@pytest.mark.parametrize("module,twin", MODULES, ids=lambda m: type(m).__name__)
def test_each_twin_converts_and_gives_torchs_outputs_and_gradients(module, twin):
    explicit, report = nn.convert(module)
    assert type(explicit) is twin and isinstance(explicit, type(module))
    assert report.converted == {"": type(module).__name__} and not report.unconverted
    x = randn(4, 6, dtype=torch.float64)
    testing.assert_matches_reference(explicit, module, x)
    testing.assert_explicit_graph(explicit(x))
    assert type(nn.to_torch(explicit)) is type(module)


@pytest.mark.parametrize("cls", [torch.nn.Hardtanh, torch.nn.ReLU6, torch.nn.Hardswish,
                                 torch.nn.Hardsigmoid, torch.nn.ELU, torch.nn.SELU,
                                 torch.nn.CELU, torch.nn.Mish])
def test_each_twin_keeps_inplace(cls):
    native = torch.nn.Sequential(torch.nn.Linear(6, 6), cls(inplace=True))
    explicit, report = nn.convert(native)
    assert report.complete
    x = randn(4, 6)
    testing.assert_matches_reference(explicit, native, x)


# -- trainer.explicit() routes each entry point -------------------------------------------------

ENTRY_POINTS = [  # (label, a torch call of x, the rule it reaches)
    ("F.hardtanh", lambda x: torch_F.hardtanh(x, -0.5, 2.0), "hardtanh"),
    ("F.hardtanh inplace", lambda x: torch_F.hardtanh(x, inplace=True), "hardtanh"),
    ("F.hardtanh_", lambda x: torch_F.hardtanh_(x, -0.5, max_val=0.5), "hardtanh"),
    ("nn.Hardtanh", lambda x: torch.nn.Hardtanh(-2.0, 0.5)(x), "hardtanh"),
    ("nn.ReLU6", lambda x: torch.nn.ReLU6()(x), "hardtanh"),
    ("F.relu6", lambda x: torch_F.relu6(x), "relu6"),
    ("F.relu6 inplace", lambda x: torch_F.relu6(x, inplace=True), "relu6"),
    ("F.hardswish", lambda x: torch_F.hardswish(x), "hardswish"),
    ("nn.Hardswish", lambda x: torch.nn.Hardswish()(x), "hardswish"),
    ("F.hardsigmoid", lambda x: torch_F.hardsigmoid(x), "hardsigmoid"),
    ("nn.Hardsigmoid inplace", lambda x: torch.nn.Hardsigmoid(True)(x), "hardsigmoid"),
    ("F.elu", lambda x: torch_F.elu(x, 0.5), "elu"),
    ("F.elu_", lambda x: torch_F.elu_(x, alpha=0.5), "elu"),
    ("nn.ELU", lambda x: torch.nn.ELU(-0.5)(x), "elu"),
    ("F.selu", lambda x: torch_F.selu(x), "selu"),
    ("torch.selu", lambda x: torch.selu(x), "selu"),
    ("torch.selu_", lambda x: torch.selu_(x), "selu"),
    ("nn.SELU", lambda x: torch.nn.SELU()(x), "selu"),
    ("F.celu", lambda x: torch_F.celu(x, alpha=2.0), "celu"),
    ("torch.celu", lambda x: torch.celu(x, 2.0), "celu"),
    ("torch.celu_", lambda x: torch.celu_(x, 2.0), "celu"),
    ("nn.CELU", lambda x: torch.nn.CELU(0.5)(x), "celu"),
    ("F.softplus", lambda x: torch_F.softplus(x, beta=2.0, threshold=1.0), "softplus"),
    ("nn.Softplus", lambda x: torch.nn.Softplus(2.0, 1.0)(x), "softplus"),
    ("F.mish", lambda x: torch_F.mish(x), "mish"),
    ("nn.Mish", lambda x: torch.nn.Mish()(x), "mish"),
    ("F.glu", lambda x: torch_F.glu(x, 0), "glu"),
    ("nn.GLU", lambda x: torch.nn.GLU()(x), "glu"),
    ("F.logsigmoid", lambda x: torch_F.logsigmoid(x), "logsigmoid"),
    ("torch._C._nn.log_sigmoid", lambda x: torch._C._nn.log_sigmoid(x), "logsigmoid"),
    ("nn.LogSigmoid", lambda x: torch.nn.LogSigmoid()(x), "logsigmoid"),
]


@pytest.mark.parametrize("label,call,rule", ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_explicit_routes_each_entry_point_to_its_rule(label, call, rule):
    base = randn(4, 6, dtype=torch.float64)
    y_ref = call(base * 1)  # a non-leaf, which the in-place forms need
    g = torch.randn(y_ref.shape, dtype=torch.float64)
    (grad_ref,) = torch.autograd.grad(y_ref, base, g)
    x = base * 1
    with trainer.explicit(strict=True) as report:
        y = call(x)
    assert report.explicit == {rule: 1}, report
    (grad,) = torch.autograd.grad(y, base, g)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, grad_ref)
    testing.assert_explicit_graph(y, stop_at=[x])


def test_explicit_leaves_builtin_options_the_functional_lacks_to_torch():
    x = randn(4, 6)
    with trainer.explicit() as report:  # hardtanh_ with min > max clamps: no rule takes it
        y = torch_F.hardtanh_(x.detach().clone(), 1.0, -1.0)
        z = torch._C._nn.elu_(x.detach().clone(), 1.0, 2.0)  # an elu scale
    assert not report.explicit
    assert torch.equal(y, torch.full_like(y, -1.0))
    torch.testing.assert_close(z, torch._C._nn.elu(x.detach(), 1.0, 2.0))


# -- prelu --------------------------------------------------------------------------------------

PRELU_CASES = [((4, 3, 5), (3,)), ((4, 3, 5), (1,)), ((4, 3), ()), ((2, 3, 2, 2), (3,)),
               ((5,), (1,)), ((), ()), ((0, 3), (3,)), ((2, 1, 4), (1,))]


@pytest.mark.parametrize("x_shape,w_shape", PRELU_CASES, ids=str)
def test_prelu_matches_torch_for_every_slope_layout(x_shape, w_shape):
    x = randn(*x_shape, dtype=torch.float64)
    w = randn(*w_shape, dtype=torch.float64, scale=0.5)
    testing.assert_matches_reference(F.prelu, torch_F.prelu, x, w)
    testing.assert_gradcheck(F.prelu, x, w)  # and gradgradcheck


def test_prelu_kink_and_nan_follow_torch():
    x = torch.tensor([0.0, -0.0, NAN, 1e-30, -1e-30, -2.0], dtype=torch.float64,
                     requires_grad=True)
    w = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(F.prelu, torch_F.prelu, x, w, equal_nan=True)
    (gx,) = torch.autograd.grad(F.prelu(x, w).sum(), x)
    assert gx.tolist()[:2] == [0.3, 0.3]  # slope w at x = 0, as torch


def test_prelu_keeps_x_only_for_the_slopes_gradient():
    x, w = randn(8, 4, 16), randn(4)
    assert testing.saved_bytes(lambda: F.prelu(x, w)) == x.nbytes + w.nbytes  # as torch
    frozen = w.detach()
    assert testing.saved_bytes(lambda: F.prelu(x, frozen)) == x.numel() + w.nbytes  # bool m
    only_w = x.detach()
    assert testing.saved_bytes(lambda: F.prelu(only_w, w)) == x.nbytes


def test_prelu_refuses_a_slope_count_that_is_no_channel_count():
    with pytest.raises(RuntimeError, match="Mismatch of parameter numbers"):  # torch's
        torch_F.prelu(randn(4, 3), randn(2))
    with pytest.raises(RuntimeError, match=r"prelu: expected weight of 1 or 3 entries.*input "
                                           r"\(4, 3\).*got weight \(2\)"):
        F.prelu(randn(4, 3), randn(2))
    with pytest.raises(RuntimeError, match=r"prelu: expected weight of 1 or 3.*weight \(3, 1\)"):
        F.prelu(randn(4, 3), randn(3, 1))


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_prelu_twin_learns_torchs_slopes(num_parameters):
    native = torch.nn.PReLU(num_parameters, init=0.1).double()
    explicit, report = nn.convert(native)
    assert type(explicit) is twins.PReLU and report.complete
    assert explicit.state_dict().keys() == {"weight"}  # torch's parameter and init
    assert torch.equal(explicit.weight, native.weight) and explicit.weight.shape == (num_parameters,)
    x = randn(4, 3, 5, dtype=torch.float64)
    testing.assert_matches_reference(explicit, native, x)
    testing.assert_explicit_graph(explicit(x))
    with trainer.explicit(strict=True) as report:  # torch.prelu and Tensor.prelu, routed
        torch.prelu(x, native.weight).sum() + x.prelu(native.weight).sum()
    assert report.explicit["prelu"] == 2
