"""trainer.nn.LocalResponseNorm: a composition of explicit rules (mul, pad, avg_pool2d, add,
pow, div) with no rule row of its own, so the checks a row would get (gradcheck, graph) are
here: values and gradients against torch over windows, shapes and constants, double
backward, the graph, what it saves, bad input, and conversion both ways."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainer
import trainer.nn as nn
from trainer import testing
from trainer.functional import ShapeError

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pair(size, **kwargs):
    return nn.LocalResponseNorm(size, **kwargs), torch.nn.LocalResponseNorm(size, **kwargs)


def leaf(*shape, dtype=torch.float64):
    return torch.randn(shape, dtype=dtype, requires_grad=True)


CASES = [  # size, constants, input shape
    (1, {}, (2, 3, 5)),
    (2, {}, (2, 4, 5)),  # an even window: one more channel before than after
    (3, {"alpha": 0.5, "beta": 0.6, "k": 2.0}, (2, 5, 4)),
    (5, {"alpha": 1.0, "beta": 1.5, "k": 0.5}, (3, 4, 3, 2)),  # wider than the channels
    (4, {"alpha": 2.0, "beta": 0.75, "k": 1.0}, (1, 6, 2, 3, 2)),
    (3, {"alpha": 1e-4}, (2, 3, 1)),
    (7, {"alpha": 0.3, "beta": -0.5, "k": 3.0}, (2, 8, 3)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size,kwargs,shape", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_matches_torch(size, kwargs, shape, dtype):
    ours, native = pair(size, **kwargs)
    testing.assert_matches_reference(ours, native, leaf(*shape, dtype=dtype))


@FAST
@given(size=st.integers(1, 6), channels=st.integers(1, 6), rest=st.lists(st.integers(1, 3),
       min_size=1, max_size=3), alpha=st.floats(0.01, 2.0), beta=st.floats(-1.0, 2.0),
       k=st.floats(0.5, 3.0))
def test_shapes_and_constants(size, channels, rest, alpha, beta, k):
    ours, native = pair(size, alpha=alpha, beta=beta, k=k)
    testing.assert_matches_reference(ours, native, leaf(2, channels, *rest), rtol=1e-9,
                                     atol=1e-9)


@pytest.mark.parametrize("size,kwargs,shape", CASES[1:5], ids=[f"{c[0]}" for c in CASES[1:5]])
def test_first_and_second_derivatives(size, kwargs, shape):
    testing.assert_gradcheck(nn.LocalResponseNorm(size, **kwargs), leaf(*shape))


def test_graph_holds_only_rules_and_shape_ops():
    counts = testing.graph_node_counts(nn.LocalResponseNorm(3)(leaf(2, 4, 3, 3)))
    assert counts["builtin"] == {}
    assert {"MulBackward", "PadBackward", "AvgPool2dBackward", "AddBackward", "PowBackward",
            "DivBackward"} <= set(counts["explicit"])
    assert set(counts["shape"]) <= testing.SHAPE_NODES


def test_saves_no_more_than_torch():
    x = leaf(4, 16, 8, 8)
    ours, native = pair(5, alpha=0.1)
    assert testing.saved_bytes(lambda: ours(x), exclude=[x]) <= testing.saved_bytes(
        lambda: native(x), exclude=[x])


def test_fewer_than_three_dims_is_refused_as_torch_does():
    with pytest.raises(ShapeError, match=r"LocalResponseNorm\(2.*3 or more dims, got \(4, 5\)"):
        nn.LocalResponseNorm(2)(torch.randn(4, 5))
    with pytest.raises(ValueError):  # torch's exception type, which ShapeError also is
        torch.nn.LocalResponseNorm(2)(torch.randn(4, 5))


def test_an_empty_input_is_returned_as_it_is():
    x = torch.randn(0, 3, 4)
    assert nn.LocalResponseNorm(2)(x) is x


def test_convert_swaps_it_and_to_torch_gives_it_back():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.LocalResponseNorm(2, k=2.0))
    explicit, report = nn.convert(model, strict=True)
    assert report.converted == {"0": "Conv2d", "1": "LocalResponseNorm"}
    assert type(explicit[1]) is nn.LocalResponseNorm and explicit[1].k == 2.0
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(explicit(x), model(x))
    assert report.complete
    back = nn.to_torch(explicit)
    assert type(back[1]) is torch.nn.LocalResponseNorm and repr(back) == repr(model)


def test_every_call_is_explicit_under_strict_mode():
    x = leaf(2, 4, 5, dtype=torch.float32)
    with trainer.explicit(strict=True) as report:
        nn.LocalResponseNorm(3)(x).sum().backward()
    assert report.complete and x.grad is not None
