"""Pointwise arithmetic and math: what is special to these ops. The standard checks
(tests/test_rule_checks.py) cover values, gradients, gradcheck, vmap, compile, autocast and
saves on each rule's examples; here: broadcasting, number and 0-d operands, type promotion,
pow's and clamp's conventions, ties, where and masked_fill, error messages, complex values,
what is saved, and each torch operator form under trainer.explicit()."""

from __future__ import annotations

import math
import re

import pytest
import torch

import trainer
import trainer.functional as F
from trainer import testing


def randn(*shape, dtype=torch.float64, grad=True):
    return torch.randn(shape, dtype=dtype).requires_grad_(grad)


def positive(*shape, dtype=torch.float64, grad=True):
    return (torch.rand(shape, dtype=dtype) * 2 + 0.5).requires_grad_(grad)


def leaf(values, dtype=torch.float64, grad=True):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


def grads_of(out, inputs):
    """Gradients of Σ out·w (a fixed w) for each input; None where it gets none."""
    w = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)
    return torch.autograd.grad(out, inputs, w, allow_unused=True)


# -- broadcasting ------------------------------------------------------------------------------

# name -> (ours, torch's, how to make the second operand)
BINARY = {
    "add": (lambda a, b: F.add(a, b, alpha=-1.5), lambda a, b: torch.add(a, b, alpha=-1.5),
            randn),
    "sub": (lambda a, b: F.sub(a, b, alpha=2), lambda a, b: torch.sub(a, b, alpha=2), randn),
    "mul": (F.mul, torch.mul, randn),
    "div": (F.div, torch.div, positive),
    "pow": (lambda a, b: F.pow(a.abs() + 0.5, b), lambda a, b: torch.pow(a.abs() + 0.5, b),
            randn),
    "maximum": (F.maximum, torch.maximum, randn),
    "minimum": (F.minimum, torch.minimum, randn),
}
SHAPE_PAIRS = [((3, 1), (1, 4)), ((4,), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)),
               ((), (3, 4)), ((3, 4), ()), ((0, 4), (4,))]


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_broadcasting_both_ways_sums_each_gradient_back_to_its_operand(name, shapes):
    ours, native, make_other = BINARY[name]
    a, b = randn(*shapes[0]), make_other(*shapes[1])
    testing.assert_matches_reference(ours, native, a, b)
    grad_a, grad_b = torch.autograd.grad(ours(a, b).sum(), (a, b))
    assert grad_a.shape == a.shape and grad_b.shape == b.shape


@pytest.mark.parametrize("shapes", [((3, 1), (4,), (2, 1, 1)), ((), (3, 4), ()),
                                    ((3, 4), (3, 4), (4,))], ids=str)
def test_where_broadcasts_all_three(shapes):
    condition = torch.randn(shapes[0]) > 0
    a, b = randn(*shapes[1]), randn(*shapes[2])
    testing.assert_matches_reference(F.where, torch.where, condition, a, b)


# -- numbers and 0-d operands ------------------------------------------------------------------

# name -> (ours, torch's operator form) of (number, tensor) or (tensor, number)
WITH_NUMBERS = {
    "number + x": (lambda x: F.add(2.5, x), lambda x: 2.5 + x),
    "x + number": (lambda x: F.add(x, 2.5, alpha=3), lambda x: torch.add(x, 2.5, alpha=3)),
    "number - x": (lambda x: F.sub(2.5, x), lambda x: 2.5 - x),
    "x - number": (lambda x: F.sub(x, 2.5), lambda x: x - 2.5),
    "number * x": (lambda x: F.mul(-3, x), lambda x: -3 * x),
    "number / x": (lambda x: F.div(2.5, x), lambda x: 2.5 / x),
    "x / number": (lambda x: F.div(x, 4), lambda x: x / 4),
    "number ** x": (lambda x: F.pow(1.5, x), lambda x: 1.5**x),
    "x ** number": (lambda x: F.pow(x, 3), lambda x: x**3),
    "x ** fraction": (lambda x: F.pow(x, -0.5), lambda x: x**-0.5),
    "where number": (lambda x: F.where(x > 1, x, 0.5), lambda x: torch.where(x > 1, x, 0.5)),
    "where numbers": (lambda x: F.where(x > 1, -1.0, x), lambda x: torch.where(x > 1, -1.0, x)),
    "clamp numbers": (lambda x: F.clamp(x, 0.8, 2.0), lambda x: torch.clamp(x, 0.8, 2.0)),
    "masked_fill number": (lambda x: F.masked_fill(x, x > 1, 7), lambda x: x.masked_fill(x > 1, 7)),
}


@pytest.mark.parametrize("name", list(WITH_NUMBERS))
def test_a_number_operand_on_either_side_is_a_constant(name):
    ours, native = WITH_NUMBERS[name]
    testing.assert_matches_reference(ours, native, positive(3, 4))
    testing.assert_gradcheck(ours, positive(2, 3))


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_a_zero_dim_operand_gets_a_zero_dim_gradient(name):
    ours, native, make_other = BINARY[name]
    x, scalar = randn(3, 4), make_other()
    testing.assert_matches_reference(ours, native, x, scalar)
    testing.assert_matches_reference(ours, native, scalar, make_other(3, 4))
    (grad,) = torch.autograd.grad(ours(x, scalar).sum(), scalar)
    assert grad.shape == ()


def test_masked_fill_with_a_zero_dim_value_tensor_gives_it_the_masked_sum():
    x, value = randn(3, 4), randn()
    mask = torch.tensor([True, False, True, False])
    testing.assert_matches_reference(F.masked_fill, torch.masked_fill, x, mask, value)
    g = torch.randn(3, 4, dtype=torch.float64)
    (grad_value,) = torch.autograd.grad(F.masked_fill(x, mask, value), value, g)
    torch.testing.assert_close(grad_value, g[:, mask].sum())


def test_masked_fill_mask_may_broadcast_the_input_up():
    x, mask = randn(4), torch.randn(3, 4) > 0
    out = F.masked_fill(x, mask, -1.0)
    assert out.shape == (3, 4)
    testing.assert_matches_reference(lambda t: F.masked_fill(t, mask, -1.0),
                                     lambda t: torch.masked_fill(t, mask, -1.0), x)


def test_where_and_masked_fill_route_g_by_the_mask():
    condition = torch.tensor([[True, False], [False, True]])
    a, b = randn(2, 2), randn(2, 2)
    g = torch.randn(2, 2, dtype=torch.float64)
    grad_a, grad_b = torch.autograd.grad(F.where(condition, a, b), (a, b), g)
    torch.testing.assert_close(grad_a, torch.where(condition, g, 0.0))
    torch.testing.assert_close(grad_b, torch.where(condition, 0.0, g))
    (grad_x,) = torch.autograd.grad(F.masked_fill(a, condition, 0.0), a, g)
    torch.testing.assert_close(grad_x, torch.where(condition, 0.0, g))


# -- type promotion ----------------------------------------------------------------------------

def test_int_tensor_and_float_number_promote_as_torch_and_carry_no_gradient():
    ints = torch.arange(6).reshape(2, 3)
    for ours, native in [(F.add(ints, 1.5), ints + 1.5), (F.mul(ints, 0.5), ints * 0.5),
                         (F.div(ints, 2), ints / 2), (F.div(3, ints + 1), 3 / (ints + 1)),
                         (F.pow(ints, 0.5), ints**0.5), (F.sub(ints, 1), ints - 1),
                         (F.add(ints, ints), ints + ints), (F.exp(ints), ints.exp())]:
        assert ours.dtype == native.dtype and ours.grad_fn is None
        torch.testing.assert_close(ours, native)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_mixed_dtypes_give_torchs_result_and_each_gradient_its_own_dtype(name):
    ours, native, _ = BINARY[name]
    ints = torch.arange(1, 13).reshape(3, 4)
    cases = [(ints, positive(3, 4, dtype=torch.float32)),  # int tensor: no gradient
             (randn(3, 4, dtype=torch.float32), positive(dtype=torch.float64)),  # 0-d: no say
             (randn(4, dtype=torch.float32), positive(3, 4)),  # float64 wins
             (randn(3, 4, dtype=torch.bfloat16), positive(4, dtype=torch.float32))]
    for a, b in cases:
        testing.assert_matches_reference(ours, native, a, b)
        out = ours(a, b)
        wanted = [t for t in (a, b) if t.requires_grad]
        for t, grad in zip(wanted, torch.autograd.grad(out.sum(), wanted), strict=True):
            assert grad.dtype == t.dtype and grad.shape == t.shape


def test_clamp_and_where_promote_as_torch():
    x = randn(3, 4, dtype=torch.float32)
    high = leaf(0.5, dtype=torch.float64)
    testing.assert_matches_reference(lambda t, h: F.clamp(t, max=h),
                                     lambda t, h: torch.clamp(t, max=h), x, high)
    condition = torch.randn(3, 4) > 0
    testing.assert_matches_reference(F.where, torch.where, condition, x, high)
    ints = torch.arange(3)
    assert F.clamp(ints, min=0.5).dtype == torch.clamp(ints, min=0.5).dtype


# -- pow ---------------------------------------------------------------------------------------

def test_zero_to_the_zero_is_one_with_zero_gradients():
    base, exponent = leaf([0.0, 0.0]), leaf([0.0, 0.0])
    out = F.pow(base, exponent)
    torch.testing.assert_close(out, torch.ones(2, dtype=torch.float64))
    grad_base, grad_exponent = torch.autograd.grad(out.sum(), (base, exponent))
    assert not grad_base.any() and not grad_exponent.any()
    (grad_base,) = torch.autograd.grad(F.pow(base, 0).sum(), base)  # a number exponent
    assert not grad_base.any()
    (grad_exponent,) = torch.autograd.grad(F.pow(0.0, exponent).sum(), exponent)  # number base
    assert not grad_exponent.any()


POW_EDGES = {
    "base 0, exponents of each sign": ([0.0, 0.0, 0.0, 0.0, 2.0], [2.0, 0.5, 0.0, -1.0, -1.0]),
    "negative base, integer exponents": ([-2.0, -0.5, -3.0, -1.0], [3.0, 2.0, -1.0, 0.0]),
    "negative base, fractional exponent": ([-2.0, 4.0], [0.5, 0.5]),
}


@pytest.mark.parametrize("name", list(POW_EDGES))
def test_pow_edge_cases_follow_torchs_conventions(name):
    base, exponent = POW_EDGES[name]
    testing.assert_matches_reference(F.pow, torch.pow, leaf(base), leaf(exponent),
                                     equal_nan=True)
    for number in (0.0, -2.0, 2.0):  # a number base: ln 0 = −∞, ln of a negative is NaN
        testing.assert_matches_reference(lambda e, s=number: F.pow(s, e),
                                         lambda e, s=number: torch.pow(s, e), leaf(exponent),
                                         equal_nan=True)
    for number in (0, 2, -1, 0.5):
        testing.assert_matches_reference(lambda b, e=number: F.pow(b, e),
                                         lambda b, e=number: torch.pow(b, e), leaf(base),
                                         equal_nan=True)


def test_pow_integer_exponent_of_a_negative_base_has_finite_base_gradient():
    base, exponent = leaf([-2.0, -0.5]), leaf([3.0, 2.0])
    grad_base, grad_exponent = torch.autograd.grad(F.pow(base, exponent).sum(),
                                                   (base, exponent))
    torch.testing.assert_close(grad_base, torch.tensor([12.0, -1.0], dtype=torch.float64))
    assert grad_exponent.isnan().all()  # ln of a negative base, as torch


# -- clamp -------------------------------------------------------------------------------------

def test_clamp_passes_g_at_its_bounds_as_torch():
    x = leaf([-1.0, -0.5, 0.0, 0.5, 1.0, math.nan])
    (grad,) = torch.autograd.grad(F.clamp(x, -0.5, 0.5).sum(), x)
    torch.testing.assert_close(grad, torch.tensor([0.0, 1, 1, 1, 0, 0], dtype=torch.float64))
    for low, high in [(-0.5, 0.5), (-0.5, None), (None, 0.5), (0.5, -0.5), (0.0, 0.0)]:
        testing.assert_matches_reference(lambda t: F.clamp(t, low, high),
                                         lambda t: torch.clamp(t, low, high), x, equal_nan=True)


def test_clamp_tensor_bounds_get_g_where_they_win():
    x = leaf([-1.0, -0.5, 0.0, 0.5, 1.0, 0.2])
    low = leaf([-0.5, -0.5, -0.5, -0.5, -0.5, 0.6])  # the last: low > high, high wins
    high = leaf([0.5, 0.5, 0.5, 0.5, 0.5, 0.3])
    testing.assert_matches_reference(F.clamp, torch.clamp, x, low, high)
    testing.assert_matches_reference(lambda t, lo: F.clamp(t, min=lo),
                                     lambda t, lo: torch.clamp(t, min=lo), x, low)
    testing.assert_matches_reference(lambda t, hi: F.clamp(t, max=hi),
                                     lambda t, hi: torch.clamp(t, max=hi), x, high)
    grad_x, grad_low, grad_high = torch.autograd.grad(F.clamp(x, low, high).sum(),
                                                      (x, low, high))
    torch.testing.assert_close(grad_x, torch.tensor([0.0, 1, 1, 1, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(grad_low, torch.tensor([1.0, 0, 0, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(grad_high, torch.tensor([0.0, 0, 0, 0, 1, 1], dtype=torch.float64))


def test_clamp_broadcast_bounds():
    x, low, high = randn(3, 4), randn(4) - 1, randn(3, 1) + 1
    testing.assert_matches_reference(F.clamp, torch.clamp, x, low, high)
    # x broadcast up: native clamp's own backward fails there (an in-place logical_and_ into
    # x's shape), so the reference clamps x expanded first
    testing.assert_matches_reference(F.clamp, lambda t, lo, hi: torch.clamp(t.expand(3, 4), lo, hi),
                                     randn(4), low, high)


# -- maximum and minimum -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_ties_split_g_half_and_half_and_nan_gives_both_all_of_it(name):
    ours, native, _ = BINARY[name]
    a, b = leaf([1.0, 2.0, 3.0, math.nan, 0.0]), leaf([1.0, 0.0, 3.0, 1.0, math.nan])
    testing.assert_matches_reference(ours, native, a, b, equal_nan=True)
    grad_a, grad_b = torch.autograd.grad(ours(a, b).sum(), (a, b))
    winner = 1.0 if name == "maximum" else 0.0
    torch.testing.assert_close(grad_a, torch.tensor([0.5, winner, 0.5, 1, 1],
                                                    dtype=torch.float64))
    torch.testing.assert_close(grad_b, torch.tensor([0.5, 1 - winner, 0.5, 1, 1],
                                                    dtype=torch.float64))


# -- what is saved -----------------------------------------------------------------------------

def test_add_and_sub_save_nothing_and_mul_only_what_each_side_needs():
    a, b = randn(64, 64, dtype=torch.float32), randn(64, 64, dtype=torch.float32)
    assert testing.saved_bytes(lambda: F.add(a, b, alpha=2)) == 0
    assert testing.saved_bytes(lambda: F.sub(a, b)) == 0
    assert testing.saved_bytes(lambda: F.neg(a)) == 0
    b_only = b.detach()
    assert testing.saved_bytes(lambda: F.mul(a, b_only)) == b.nbytes  # b, for ∂a
    assert testing.saved_bytes(lambda: F.mul(a, 3.0)) == 0


@pytest.mark.parametrize("op", [lambda t: F.abs(t), lambda t: F.clamp(t, -0.5, 0.5),
                                lambda t: F.maximum(t, torch.zeros(()))],
                         ids=["abs", "clamp", "maximum"])
def test_piecewise_ops_save_bytes_not_floats(op):
    x = randn(64, 64, dtype=torch.float32)
    assert testing.saved_bytes(lambda: op(x)) <= 2 * x.numel()  # ≤ 2 bool masks, not x


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_an_outer_broadcast_saves_the_operands_not_larger_masks(name):
    ours, native, _ = BINARY[name]
    a, b = randn(40, 1, dtype=torch.float32), randn(1, 40, dtype=torch.float32)
    b.data[0, :5] = a.data[:5, 0]  # a few ties
    assert testing.saved_bytes(lambda: ours(a, b)) <= testing.saved_bytes(lambda: native(a, b))
    testing.assert_matches_reference(ours, native, a, b)
    testing.assert_gradcheck(ours, randn(6, 1), randn(1, 6))  # masks would take more bytes
    x, low = randn(40, 1), randn(1, 40)
    high = torch.tensor(1.0, dtype=torch.float64)
    testing.assert_matches_reference(lambda t, lo: F.clamp(t, lo, high),
                                     lambda t, lo: torch.clamp(t, lo, high), x, low)


# -- complex values ----------------------------------------------------------------------------

def crandn(*shape):
    return torch.randn(shape, dtype=torch.complex128).requires_grad_()


COMPLEX = {
    "add alpha": (lambda a, b: F.add(a, b, alpha=1 - 2j),
                  lambda a, b: torch.add(a, b, alpha=1 - 2j)),
    "sub": (F.sub, torch.sub),
    "mul": (F.mul, torch.mul),
    "div": (F.div, torch.div),
    "pow": (F.pow, torch.pow),
    "where": (lambda a, b: F.where(a.real > 0, a, b), lambda a, b: torch.where(a.real > 0, a, b)),
    "masked_fill": (lambda a, b: F.masked_fill(a, a.real > 0, b.sum()),
                    lambda a, b: torch.masked_fill(a, a.real > 0, b.sum())),
}
COMPLEX_UNARY = {name: (getattr(F, name), getattr(torch, name)) for name in
                 ["neg", "reciprocal", "exp", "log", "sqrt", "rsqrt", "abs", "sin", "cos"]}


@pytest.mark.parametrize("name", list(COMPLEX))
def test_complex_operands_get_torchs_conjugate_gradients(name):
    ours, native = COMPLEX[name]
    testing.assert_matches_reference(ours, native, crandn(3, 4), crandn(4))
    testing.assert_gradcheck(ours, crandn(2, 3), crandn(3))
    real = randn(3, 4)  # a real operand of a complex result gets a real gradient
    (grad,) = torch.autograd.grad(ours(crandn(3, 4), real).abs().sum(), real)
    assert grad.dtype == torch.float64
    testing.assert_gradcheck(ours, crandn(2, 3), randn(3))
    if name not in ("where", "masked_fill"):  # native's own backward fails there
        testing.assert_matches_reference(ours, native, crandn(3, 4), real)


@pytest.mark.parametrize("name", list(COMPLEX_UNARY))
def test_complex_unary_ops(name):
    ours, native = COMPLEX_UNARY[name]
    testing.assert_matches_reference(ours, native, crandn(3, 4))
    testing.assert_gradcheck(ours, crandn(2, 3))


def test_complex_number_operands():
    for ours, native in [(lambda z: F.mul(z, 2 - 1j), lambda z: z * (2 - 1j)),
                         (lambda z: F.pow(1 + 1j, z), lambda z: (1 + 1j) ** z),
                         (lambda x: F.pow(x, 0.5 + 1j), lambda x: x ** (0.5 + 1j))]:
        testing.assert_matches_reference(ours, native, crandn(3))
        testing.assert_matches_reference(ours, native, positive(3))  # real in, complex out


# -- vmap of the ops on x > 0 (the standard check batches −x) ----------------------------------

@pytest.mark.parametrize("name", ["log", "sqrt", "rsqrt"])
def test_vmap_on_the_domain(name):
    op = getattr(F, name)
    batch = positive(3, 4, 5, grad=False)
    torch.testing.assert_close(torch.func.vmap(op)(batch), getattr(torch, name)(batch))
    per_sample = torch.func.vmap(torch.func.grad(lambda t: op(t).sum()))(batch)
    leaves = batch.clone().requires_grad_()
    (looped,) = torch.autograd.grad(getattr(torch, name)(leaves).sum(), leaves)
    torch.testing.assert_close(per_sample, looped)


def test_vmap_over_a_broadcast_operand():
    a, b = randn(5, 3, 1, grad=False), randn(4, grad=False)

    def loss(a_row, b):
        return F.maximum(F.mul(a_row, b), F.div(b, 2)).sum()

    per_sample = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)), in_dims=(0, None))(a, b)
    for i in range(5):
        row, b_leaf = a[i].clone().requires_grad_(), b.clone().requires_grad_()
        native = torch.maximum(row * b_leaf, b_leaf / 2).sum()
        for got, want in zip(per_sample, torch.autograd.grad(native, (row, b_leaf))):
            torch.testing.assert_close(got[i], want)


# -- bad input ---------------------------------------------------------------------------------

BAD_SHAPES = {
    "add": (lambda: F.add(randn(2, 3), randn(4)), "input (2, 3) and other (4)"),
    "sub": (lambda: F.sub(randn(2, 3), randn(2, 1, 4)), "input (2, 3) and other (2, 1, 4)"),
    "mul": (lambda: F.mul(randn(5), randn(3)), "input (5) and other (3)"),
    "div": (lambda: F.div(randn(2, 3), randn(3, 2)), "input (2, 3) and other (3, 2)"),
    "pow": (lambda: F.pow(randn(2), randn(3)), "input (2) and exponent (3)"),
    "maximum": (lambda: F.maximum(randn(2), randn(3)), "input (2) and other (3)"),
    "minimum": (lambda: F.minimum(randn(2), randn(3)), "input (2) and other (3)"),
    "where": (lambda: F.where(torch.ones(2, dtype=torch.bool), randn(2), randn(3)),
              "condition (2), input (2) and other (3)"),
    "masked_fill": (lambda: F.masked_fill(randn(2, 3), torch.ones(2, dtype=torch.bool), 0.0),
                    "input (2, 3) and mask (2)"),
    "clamp": (lambda: F.clamp(randn(2, 3), randn(4), randn(1)),
              "input (2, 3), min (4) and max (1)"),
}


@pytest.mark.parametrize("name", list(BAD_SHAPES))
def test_shapes_that_do_not_broadcast_name_the_op_and_each_shape(name):
    call, shapes = BAD_SHAPES[name]
    expected = f"{name}: expected shapes that broadcast together, got {shapes}"
    with pytest.raises(F.ShapeError, match=f"^{re.escape(expected)}$"):
        call()
    with pytest.raises(RuntimeError):  # what torch raises, so code catching it still does
        call()


def test_clamp_without_a_bound_is_refused_clearly():
    with pytest.raises(F.ShapeError, match=r"^clamp: expected min or max \(or both\), got neither"):
        F.clamp(randn(3))


# -- trainer.explicit(): each operator form reaches its rule -----------------------------------

# form -> (the call, the rule it reaches); x, y > 0 with no ties, c a bool mask
FORMS = {
    "x + y": (lambda x, y, c: x + y, "add"),
    "1 + x": (lambda x, y, c: 1 + x, "add"),
    "x + 1": (lambda x, y, c: x + 1, "add"),
    "x.add(y, alpha=2)": (lambda x, y, c: x.add(y, alpha=2), "add"),
    "torch.add(x, y)": (lambda x, y, c: torch.add(x, y), "add"),
    "x - y": (lambda x, y, c: x - y, "sub"),
    "2 - x": (lambda x, y, c: 2 - x, "sub"),
    "torch.rsub(x, y, alpha=3)": (lambda x, y, c: torch.rsub(x, y, alpha=3), "sub"),
    "torch.subtract(x, y)": (lambda x, y, c: torch.subtract(x, y), "sub"),
    "x * y": (lambda x, y, c: x * y, "mul"),
    "2 * x": (lambda x, y, c: 2 * x, "mul"),
    "torch.multiply(x, y)": (lambda x, y, c: torch.multiply(x, y), "mul"),
    "x / y": (lambda x, y, c: x / y, "div"),
    "2 / x": (lambda x, y, c: 2 / x, "div"),
    "x.div(y, rounding_mode=None)": (lambda x, y, c: x.div(y, rounding_mode=None), "div"),
    "torch.true_divide(x, y)": (lambda x, y, c: torch.true_divide(x, y), "div"),
    "-x": (lambda x, y, c: -x, "neg"),
    "torch.negative(x)": (lambda x, y, c: torch.negative(x), "neg"),
    "x ** 2": (lambda x, y, c: x**2, "pow"),
    "2 ** x": (lambda x, y, c: 2**x, "pow"),
    "x ** y": (lambda x, y, c: x**y, "pow"),
    "x.pow(0.5)": (lambda x, y, c: x.pow(0.5), "pow"),
    "torch.square(x)": (lambda x, y, c: torch.square(x), "pow"),
    "x.square()": (lambda x, y, c: x.square(), "pow"),
    "x.reciprocal()": (lambda x, y, c: x.reciprocal(), "reciprocal"),
    "x.exp()": (lambda x, y, c: x.exp(), "exp"),
    "torch.exp(x)": (lambda x, y, c: torch.exp(x), "exp"),
    "x.log()": (lambda x, y, c: x.log(), "log"),
    "torch.sqrt(x)": (lambda x, y, c: torch.sqrt(x), "sqrt"),
    "x.rsqrt()": (lambda x, y, c: x.rsqrt(), "rsqrt"),
    "abs(x - y)": (lambda x, y, c: abs(x - y), "abs"),
    "torch.absolute(x)": (lambda x, y, c: torch.absolute(x), "abs"),
    "x.sin()": (lambda x, y, c: x.sin(), "sin"),
    "torch.cos(x)": (lambda x, y, c: torch.cos(x), "cos"),
    "x.clamp(1, 2)": (lambda x, y, c: x.clamp(1, 2), "clamp"),
    "torch.clip(x, max=y)": (lambda x, y, c: torch.clip(x, max=y), "clamp"),
    "x.clamp_min(1.5)": (lambda x, y, c: x.clamp_min(1.5), "clamp"),
    "torch.clamp_max(x, y)": (lambda x, y, c: torch.clamp_max(x, y), "clamp"),
    "torch.maximum(x, y)": (lambda x, y, c: torch.maximum(x, y), "maximum"),
    "x.minimum(y)": (lambda x, y, c: x.minimum(y), "minimum"),
    "torch.where(c, x, y)": (lambda x, y, c: torch.where(c, x, y), "where"),
    "x.where(c, 0.5)": (lambda x, y, c: x.where(c, 0.5), "where"),
    "x.masked_fill(c, 0)": (lambda x, y, c: x.masked_fill(c, 0), "masked_fill"),
    "torch.masked_fill(x, c, 2.5)": (lambda x, y, c: torch.masked_fill(x, c, 2.5),
                                     "masked_fill"),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_each_operator_form_reaches_its_rule_and_matches_native(form):
    call, rule = FORMS[form]
    x, y = positive(3, 4), positive(3, 4)
    c = torch.randn(3, 4) > 0
    native = call(x, y, c)
    native_grads = grads_of(native, (x, y))
    with trainer.explicit() as report:
        out = call(x, y, c)
    torch.testing.assert_close(out, native, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(grads_of(out, (x, y)), native_grads, strict=True):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    expected = {"sub": 1, "abs": 1} if form == "abs(x - y)" else {rule: 1}
    assert report.explicit == expected
    assert not report.fallback and not report.moved
    testing.assert_explicit_graph(out)


def test_rounding_division_and_single_argument_where_are_left_to_torch():
    x, y = positive(3, 4), positive(3, 4)
    with trainer.explicit() as report:
        floored = x.div(y, rounding_mode="floor")
        torch.divide(x, y, rounding_mode="trunc")
        indices = torch.where(x.detach() > 1)
    assert not report.explicit
    assert set(report.fallback) == {"Tensor.div", "torch.divide"}
    torch.testing.assert_close(floored, torch.div(x, y, rounding_mode="floor"))
    assert len(indices) == 2


def test_in_place_forms_run_the_rule_and_copy_back():
    x, y = positive(3, 4), positive(3, 4)
    with trainer.explicit() as report:
        z = x * 1
        alias = z.view(12)
        z += y  # Tensor.add_
        z.mul_(2).clamp_(max=3.0)
    assert report.explicit == {"mul": 2, "add": 1, "clamp": 1} and not report.fallback
    assert testing.graph_node_counts(z)["builtin"] == {}
    torch.testing.assert_close(alias, ((x + y) * 2).clamp(max=3.0).view(12))  # views see it
    expected = torch.autograd.grad(((x * 1 + y) * 2).clamp(max=3.0).sum(), [x, y])
    torch.testing.assert_close(torch.autograd.grad(z.sum(), [x, y]), expected)
    ints = torch.arange(3)
    with trainer.explicit(), pytest.raises(RuntimeError):  # as torch: no float into ints
        ints.add_(x[0, :3])


def test_int_tensor_plus_float_number_under_explicit():
    ints = torch.arange(3)
    with trainer.explicit() as report:
        out = ints + 1.5
    assert out.dtype == torch.float32 and report.explicit == {"add": 1}
    torch.testing.assert_close(out, torch.tensor([1.5, 2.5, 3.5]))
