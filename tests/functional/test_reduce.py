"""The reductions (sum, mean, var, std, amax, amin, max, min, logsumexp, norm, cumsum): what is
special to them, against torch: every form of dim, keepdim, dtype=, correction and unbiased=,
ties, the gradients at zero spread and at the zero vector, errors, what they keep, and the
entry points that trainer.explicit() routes to them.

The standard checks of every rule (gradcheck, vmap, compile, autocast, ...) run in
tests/test_rule_checks.py on the examples of the table (trainer/rules/reductions.py).
"""

from __future__ import annotations

import pytest
import torch

import trainer
import trainer.functional as F
from trainer import testing


def leaf(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype).requires_grad_()


def distinct(*shape: int) -> torch.Tensor:
    """No ties, and gaps far above gradcheck's eps: a stable argmax."""
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n, dtype=torch.float64) / n).reshape(shape).requires_grad_()


def with_options(op, **options):
    return lambda *args: op(*args, **options)


# --- every form of dim, and keepdim ------------------------------------------------------------

DIMS = [None, 0, 1, -1, (0, 2), [2, -3], (-1, 0, 1), ()]
MULTI_DIM_OPS = {  # ours, torch's
    "sum": (F.sum, torch.sum),
    "mean": (F.mean, torch.mean),
    "var": (F.var, torch.var),
    "std": (F.std, torch.std),
    "amax": (F.amax, torch.amax),
    "amin": (F.amin, torch.amin),
    "logsumexp": (F.logsumexp, torch.logsumexp),
    "norm": (F.norm, torch.linalg.vector_norm),
}


def every_dims(name: str, dims) -> bool:
    """Whether ``dims`` asks for every dim, which torch's logsumexp refuses (the errors test
    that): such cases are not drawn for it."""
    return name == "logsumexp" and (dims is None or dims == ())


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name,dim", [pytest.param(n, d, id=f"{n}-{d!r}") for n in MULTI_DIM_OPS
                                      for d in DIMS if not every_dims(n, d)])
def test_every_dim_form_and_keepdim_match_torch(name, dim, keepdim):
    ours, theirs = MULTI_DIM_OPS[name]
    if name in ("amax", "amin") and dim is None:
        dim = ()  # their "every dim" spelling
    options = {"dim": dim, "keepdim": keepdim}
    native = dict(options)
    if name in ("var", "std") and dim == ():
        # torch reduces every dim, but its backward counts N = 1 (so 2/(N − 1) = ∞): ours is
        # dim=None's gradient
        native["dim"] = None
    x = distinct(2, 3, 4)
    testing.assert_matches_reference(with_options(ours, **options),
                                     with_options(theirs, **native), x)


DOF_WARNING = "ignore:.*degrees of freedom is <= 0:UserWarning"  # var and std's


@pytest.mark.filterwarnings(DOF_WARNING)
@pytest.mark.parametrize("name,dim", [pytest.param(n, d, id=f"{d!r}-{n}") for d in
                                      (None, 0, -1, (0,)) for n in MULTI_DIM_OPS
                                      if not every_dims(n, d)])
def test_zero_dim_input(name, dim):
    ours, theirs = MULTI_DIM_OPS[name]
    if name in ("amax", "amin") and dim is None:
        dim = ()
    x = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(with_options(ours, dim=dim), with_options(theirs, dim=dim),
                                     x, equal_nan=True)  # var of one element: NaN


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "norm"])
def test_empty_input_along_other_dims(name):
    ours, theirs = MULTI_DIM_OPS[name]
    x = torch.randn(0, 3, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(with_options(ours, dim=1), with_options(theirs, dim=1), x)


@pytest.mark.parametrize("op, theirs", [(F.max, torch.max), (F.min, torch.min)])
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_and_min_along_each_dim(op, theirs, dim, keepdim):
    x = distinct(2, 3, 4)
    out = op(x, dim, keepdim)
    assert type(out) is type(theirs(x, dim, keepdim))  # torch.return_types.max / .min
    assert out.indices.dtype == torch.int64 and not out.indices.requires_grad
    testing.assert_matches_reference(with_options(op, dim=dim, keepdim=keepdim),
                                     with_options(theirs, dim=dim, keepdim=keepdim), x)


@pytest.mark.parametrize("op, theirs", [(F.max, torch.max), (F.min, torch.min)])
def test_max_and_min_of_a_zero_dim_input(op, theirs):
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    for dim in (0, -1):
        testing.assert_matches_reference(with_options(op, dim=dim),
                                         with_options(theirs, dim=dim), x)


# --- dtype=, correction, unbiased= -------------------------------------------------------------


@pytest.mark.parametrize("name", ["sum", "mean", "cumsum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dtype_casts_the_output_and_the_gradient_keeps_the_inputs(name, dtype):
    ours, theirs = getattr(F, name), getattr(torch, name)
    x = leaf(3, 4, dtype=torch.float32 if dtype == torch.float64 else torch.float64)
    out = ours(x, 1, dtype=dtype)
    assert out.dtype == dtype
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.dtype == x.dtype
    testing.assert_matches_reference(with_options(ours, dim=1, dtype=dtype),
                                     with_options(theirs, dim=1, dtype=dtype), x)


def test_sum_of_integers_with_dtype():
    x = torch.arange(12).reshape(3, 4)
    assert torch.equal(F.sum(x, 0), torch.sum(x, 0))
    assert F.sum(x.bool()).dtype == torch.int64
    out = F.mean(x, dtype=torch.float64)
    assert out.dtype == torch.float64 and out == x.double().mean()


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("correction", [0, 1, 2, 0.5, None])
@pytest.mark.parametrize("dim", [None, 1, (0, 2)], ids=repr)
def test_correction(name, correction, dim):
    ours, theirs = getattr(F, name), getattr(torch, name)
    options = {"dim": dim, "correction": correction}
    testing.assert_matches_reference(with_options(ours, **options),
                                     with_options(theirs, **options), leaf(2, 3, 4))
    testing.assert_gradcheck(with_options(ours, **options), leaf(2, 3, 2))


@pytest.mark.filterwarnings(DOF_WARNING)
@pytest.mark.parametrize("name", ["var", "std"])
def test_correction_equal_to_the_count_gives_torchs_infinities(name):
    ours, theirs = getattr(F, name), getattr(torch, name)
    options = {"dim": 1, "correction": 3}
    testing.assert_matches_reference(with_options(ours, **options),
                                     with_options(theirs, **options), leaf(2, 3),
                                     equal_nan=True)


UNBIASED_FORMS = [  # (label, call)
    ("torch.var(x, 1, False)", lambda x: torch.var(x, 1, False)),
    ("torch.var(x, 1, True, True)", lambda x: torch.var(x, 1, True, True)),
    ("torch.var(x, False)", lambda x: torch.var(x, False)),
    ("x.var(unbiased=False)", lambda x: x.var(unbiased=False)),
    ("x.var(dim=0, unbiased=True, keepdim=True)",
     lambda x: x.var(dim=0, unbiased=True, keepdim=True)),
    ("torch.std(x, 0, False)", lambda x: torch.std(x, 0, False)),
    ("torch.std(x, True)", lambda x: torch.std(x, True)),
    ("x.std(-1, unbiased=False, keepdim=True)", lambda x: x.std(-1, unbiased=False, keepdim=True)),
    ("x.std(axis=1, keepdims=True)", lambda x: x.std(axis=1, keepdims=True)),
]


@pytest.mark.parametrize("label, call", UNBIASED_FORMS, ids=[f[0] for f in UNBIASED_FORMS])
def test_unbiased_goes_through_the_adapter(label, call):
    x = leaf(3, 4)
    assert_routed(call, x, "var" if "var" in label else "std")


# --- ties, zero spread, the zero vector --------------------------------------------------------


@pytest.mark.parametrize("name", ["amax", "amin"])
@pytest.mark.parametrize("dim", [(), 1, (0, 1)], ids=repr)
def test_amax_and_amin_ties_share_the_gradient_as_torch(name, dim):
    ours, theirs = getattr(F, name), getattr(torch, name)
    x = torch.tensor([[1.0, 3.0, 3.0, -2.0], [-2.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0]],
                     dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(with_options(ours, dim=dim), with_options(theirs, dim=dim),
                                     x)
    (grad,) = torch.autograd.grad(ours(x, dim).sum(), x)
    if dim == 1:
        assert torch.equal(grad[2], torch.full((4,), 0.25, dtype=torch.float64))  # four ways


@pytest.mark.parametrize("op, theirs", [(F.max, torch.max), (F.min, torch.min)])
def test_max_and_min_ties_give_the_gradient_to_torchs_index(op, theirs):
    x = torch.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], dtype=torch.float64,
                     requires_grad=True)
    ours, native = op(x, 1), theirs(x, 1)
    assert torch.equal(ours.indices, native.indices)
    testing.assert_matches_reference(with_options(op, dim=1), with_options(theirs, dim=1), x)
    (grad,) = torch.autograd.grad(ours.values.sum(), x)
    assert grad.sum(1).tolist() == [1.0, 1.0] and (grad != 0).sum() == 2  # one winner a row


@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), (1, True)])
def test_std_at_zero_spread_has_torchs_zero_gradient(dim, keepdim):
    # row 0 has no spread; over every dim (None), nothing has
    rows = [[2.0, 2.0, 2.0], [1.0, -1.0, 0.5] if dim is not None else [2.0, 2.0, 2.0]]
    x = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(with_options(F.std, dim=dim, keepdim=keepdim),
                                     with_options(torch.std, dim=dim, keepdim=keepdim), x)
    (grad,) = torch.autograd.grad(F.std(x, dim, keepdim=keepdim).sum(), x, create_graph=True)
    assert torch.isfinite(grad).all() and not grad[0].any()
    (second,) = torch.autograd.grad(grad.sum(), x)  # double backward stays finite too
    assert torch.isfinite(second).all()


@pytest.mark.parametrize("dim", [None, 1, (0, 1)], ids=repr)
def test_norm_at_the_zero_vector_has_torchs_zero_gradient(dim):
    # row 0 is a zero vector; over more dims than the row, all of x is
    rows = [[0.0, 0.0, 0.0], [3.0, -4.0, 0.0] if dim == 1 else [0.0, 0.0, 0.0]]
    x = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(with_options(F.norm, dim=dim),
                                     with_options(torch.linalg.vector_norm, dim=dim), x)
    (grad,) = torch.autograd.grad(F.norm(x, dim=dim).sum(), x, create_graph=True)
    assert not grad[0].any()
    (second,) = torch.autograd.grad(grad.sum(), x)
    assert torch.isfinite(second).all()


# --- cumsum ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2, -3])
def test_cumsum_along_each_dim(dim):
    x = leaf(2, 3, 4)
    testing.assert_matches_reference(with_options(F.cumsum, dim=dim),
                                     with_options(torch.cumsum, dim=dim), x)
    testing.assert_gradcheck(with_options(F.cumsum, dim=dim), leaf(2, 3, 2))


@pytest.mark.parametrize("shape", [(), (1,), (3, 1), (0, 2)])
def test_cumsum_of_small_shapes(shape):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    for dim in (0, -1):
        testing.assert_matches_reference(with_options(F.cumsum, dim=dim),
                                         with_options(torch.cumsum, dim=dim), x)


def test_cumsum_gradient_is_a_reversed_cumsum():
    x = leaf(5)
    g = torch.arange(1.0, 6.0, dtype=torch.float64)
    (grad,) = torch.autograd.grad(F.cumsum(x, 0), x, g)
    assert grad.tolist() == [15.0, 14.0, 12.0, 9.0, 5.0]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "amax", "amin", "logsumexp",
                                  "norm", "max", "min", "cumsum"])
def test_a_dim_out_of_range_names_the_op_and_the_shape(name):
    x = torch.randn(2, 3)
    with pytest.raises(IndexError, match=rf"^{name}: expected dim in \[-2, 1\] for input "
                                         rf"\(2, 3\), got dim=2$"):
        getattr(F, name)(x, dim=2)
    with pytest.raises(F.ShapeError, match=rf"^{name}: expected dim in \[-2, 1\].*got dim=-3"):
        getattr(F, name)(x, dim=-3)
    with pytest.raises(IndexError, match=rf"^{name}: expected dim in \[-1, 0\] for input \(\)"):
        getattr(F, name)(torch.tensor(1.0), dim=1)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "amax", "amin", "logsumexp",
                                  "norm"])
def test_a_dim_given_twice_names_the_op_and_the_shape(name):
    with pytest.raises(RuntimeError, match=rf"^{name}: expected each dim once for input "
                                           rf"\(2, 3\), got dim=\(0, -2\)$"):
        getattr(F, name)(torch.randn(2, 3), dim=(0, -2))


def test_other_bad_arguments_name_the_op():
    x = torch.randn(2, 3)
    with pytest.raises(F.ShapeError, match=r"^logsumexp: expected dim as an int or a non-empty"):
        F.logsumexp(x, ())
    with pytest.raises(F.ShapeError, match=r"^norm: expected ord=2 .*got ord=1$"):
        F.norm(x, 1)
    with pytest.raises(F.ShapeError, match=r"^max: expected dim as an int, got dim=\(0, 1\)"):
        F.max(x, (0, 1))
    with pytest.raises(F.ShapeError, match=r"^cumsum: expected dim as an int, got dim=None"):
        F.cumsum(x, None)
    with pytest.raises(F.ShapeError, match=r"^sum: expected dim as an int, got dim='a'"):
        F.sum(x, "a")
    with pytest.raises(F.ShapeError, match=r"^var: expected correction as a number"):
        F.var(x, correction="1")
    with pytest.raises(F.ShapeError, match=r"^std: expected a real input"):
        F.std(torch.randn(2, 3, dtype=torch.complex64))


# --- what each keeps for backward --------------------------------------------------------------


def test_each_keeps_only_what_its_gradient_needs():
    x = leaf(4, 5, dtype=torch.float32)
    kept = {name: testing.saved_bytes(call) for name, call in {
        "sum": lambda: F.sum(x, 1),
        "mean": lambda: F.mean(x, (0, 1)),
        "cumsum": lambda: F.cumsum(x, 1),
        "var": lambda: F.var(x, 1),
        "amax": lambda: F.amax(x, 1),
        "max": lambda: F.max(x, 1),
        "std": lambda: F.std(x, 1),
    }.items()}
    assert kept["sum"] == kept["mean"] == kept["cumsum"] == 0  # shapes and counts only
    assert kept["var"] == 4 * 20  # x
    assert kept["amax"] == 20  # the bool mask
    assert kept["max"] == 8 * 4  # the int64 indices
    assert kept["std"] == 4 * 20 + 4 * 4  # x and y
    frozen = x.detach()
    assert testing.saved_bytes(lambda: F.std(frozen, 1)) == 0  # no gradient wanted: nothing


# --- trainer.explicit(): the entry points ------------------------------------------------------


def inside(call):
    """``call`` run inside trainer.explicit(), for a comparison with itself outside."""
    def wrapped(*args):
        with trainer.explicit():
            return call(*args)
    return wrapped


def assert_routed(call, x: torch.Tensor, rule: str) -> None:
    """``call(x)`` inside trainer.explicit() reaches ``rule`` once, with no fallback, and
    gives native's values and gradients."""
    native = call(x)
    with trainer.explicit() as report:
        ours = call(x)
    assert report.explicit == {rule: 1}, report
    assert not report.fallback, report
    assert type(ours) is type(native)
    testing.assert_explicit_graph(ours)
    testing.assert_matches_reference(inside(call), call, x)


ENTRY_POINTS = [  # (label, call, the rule it reaches)
    ("x.sum()", lambda x: x.sum(), "sum"),
    ("torch.sum(x, 1)", lambda x: torch.sum(x, 1), "sum"),
    ("x.sum((0, -1), True)", lambda x: x.sum((0, -1), True), "sum"),
    ("x.sum(axis=1, keepdims=True)", lambda x: x.sum(axis=1, keepdims=True), "sum"),
    ("torch.sum(x, dtype=float32)", lambda x: torch.sum(x, dtype=torch.float32), "sum"),
    ("torch.sum(input=x, dim=0)", lambda x: torch.sum(input=x, dim=0), "sum"),
    ("x.mean(-1, keepdim=True)", lambda x: x.mean(-1, keepdim=True), "mean"),
    ("torch.mean(x)", lambda x: torch.mean(x), "mean"),
    ("torch.mean(x, [0, 2])", lambda x: torch.mean(x, [0, 2]), "mean"),
    ("x.var()", lambda x: x.var(), "var"),
    ("torch.var(x, 1, correction=0)", lambda x: torch.var(x, 1, correction=0), "var"),
    ("x.std(1, keepdim=True)", lambda x: x.std(1, keepdim=True), "std"),
    ("torch.std(x, dim=(0, 1))", lambda x: torch.std(x, dim=(0, 1)), "std"),
    ("x.amax(1)", lambda x: x.amax(1), "amax"),
    ("torch.amax(x, (0, 2), True)", lambda x: torch.amax(x, (0, 2), True), "amax"),
    ("x.amin()", lambda x: x.amin(), "amin"),
    ("torch.amin(x, dim=-1)", lambda x: torch.amin(x, dim=-1), "amin"),
    ("x.max(dim=1)", lambda x: x.max(dim=1), "max"),
    ("torch.max(x, 1, True)", lambda x: torch.max(x, 1, True), "max"),
    ("torch.max(x, dim=-1, keepdim=False)", lambda x: torch.max(x, dim=-1, keepdim=False), "max"),
    ("x.min(0)", lambda x: x.min(0), "min"),
    ("torch.min(x, dim=2)", lambda x: torch.min(x, dim=2), "min"),
    ("torch.logsumexp(x, 1)", lambda x: torch.logsumexp(x, 1), "logsumexp"),
    ("x.logsumexp((0, 1), keepdim=True)", lambda x: x.logsumexp((0, 1), keepdim=True),
     "logsumexp"),
    ("torch.special.logsumexp(x, -1)", lambda x: torch.special.logsumexp(x, -1), "logsumexp"),
    ("torch.linalg.vector_norm(x)", lambda x: torch.linalg.vector_norm(x), "norm"),
    ("torch.linalg.vector_norm(x, 2, 1, True)",
     lambda x: torch.linalg.vector_norm(x, 2, 1, True), "norm"),
    ("torch.linalg.vector_norm(x, ord=2.0, dim=(0, 2))",
     lambda x: torch.linalg.vector_norm(x, ord=2.0, dim=(0, 2)), "norm"),
    ("x.norm()", lambda x: x.norm(), "norm"),
    ("x.norm(dim=1)", lambda x: x.norm(dim=1), "norm"),
    ("x.norm(2, -1, True)", lambda x: x.norm(2, -1, True), "norm"),
    ("x.norm(p='fro', dim=(0, 1))", lambda x: x.norm(p="fro", dim=(0, 1)), "norm"),
    ("torch.cumsum(x, 1)", lambda x: torch.cumsum(x, 1), "cumsum"),
    ("x.cumsum(-1)", lambda x: x.cumsum(-1), "cumsum"),
    ("x.cumsum(dim=0, dtype=float32)", lambda x: x.cumsum(dim=0, dtype=torch.float32), "cumsum"),
]


@pytest.mark.parametrize("label, call, rule", ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_entry_points_reach_their_rule(label, call, rule):
    assert_routed(call, distinct(2, 3, 4), rule)


@pytest.mark.parametrize("call", [lambda x: torch.norm(x), lambda x: torch.norm(x, 2, 1)])
def test_torch_norm_reaches_the_norm_rule(call):
    assert_routed(call, distinct(2, 3, 4), "norm")


LEFT_TO_TORCH = [  # (label, call): other ops, which the adapters hand back
    ("x.max()", lambda x: x.max()),
    ("torch.min(x)", lambda x: torch.min(x)),
    ("torch.linalg.vector_norm(x, 1)", lambda x: torch.linalg.vector_norm(x, 1)),
    ("torch.linalg.vector_norm(x, dtype=float64)",
     lambda x: torch.linalg.vector_norm(x.float(), dtype=torch.float64)),
    ("x.norm(p=1)", lambda x: x.norm(p=1)),
    ("x.norm(float('inf'), 1)", lambda x: x.norm(float("inf"), 1)),
    ("x.norm('nuc', dim=(1, 2))", lambda x: x.norm("nuc", dim=(1, 2))),
    ("x.var(0, True, correction=1)", None),  # torch refuses both: its own error
]


@pytest.mark.parametrize("label, call", LEFT_TO_TORCH, ids=[e[0] for e in LEFT_TO_TORCH])
def test_other_ops_behind_the_same_entry_points_run_natively(label, call):
    x = distinct(2, 3, 4)
    if call is None:
        with pytest.raises(TypeError), trainer.explicit() as report:
            x.var(0, True, correction=1)
        assert not report.explicit
        return
    native = call(x)
    with trainer.explicit() as report:
        ours = call(x)
    assert not report.explicit, report
    assert torch.equal(ours, native)


@pytest.mark.parametrize("name", ["max", "min"])
def test_the_elementwise_form_goes_to_its_own_op(name):
    x, y = distinct(2, 3), distinct(2, 3)
    native = getattr(torch, name)(x, y)
    with trainer.explicit() as report:
        ours = getattr(torch, name)(x, y)
        by_keyword = getattr(x, name)(other=y)
    torch.testing.assert_close(ours, native, rtol=0, atol=0)
    torch.testing.assert_close(by_keyword, native, rtol=0, atol=0)
    elementwise = {"max": "maximum", "min": "minimum"}[name]
    if hasattr(F, elementwise):  # its rule, when that exists: the adapter hands it over
        assert report.explicit == {name: 2}
    else:
        assert not report.explicit and report.fallback


def test_a_model_calling_torch_directly_runs_explicit_rules():
    x = leaf(4, 6)

    def model(x):
        centred = x - x.mean(-1, keepdim=True)
        scale = centred.std(-1, unbiased=False, keepdim=True)
        pooled = torch.logsumexp(x, 1) + x.amax(1) + x.max(1).values + x.norm(dim=1)
        return pooled.sum() + scale.cumsum(0).sum() + centred.var(0).mean()

    native = model(x)
    (native_grad,) = torch.autograd.grad(native, x)
    with trainer.explicit() as report:
        loss = model(x)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(loss, native, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, native_grad, rtol=1e-10, atol=1e-12)
    reductions = {name: n for name, n in report.explicit.items() if name in MULTI_DIM_OPS
                  or name in ("max", "cumsum")}  # the pointwise ops may have rules too
    assert reductions == {"mean": 2, "std": 1, "logsumexp": 1, "amax": 1, "max": 1,
                          "norm": 1, "cumsum": 1, "var": 1, "sum": 2}
