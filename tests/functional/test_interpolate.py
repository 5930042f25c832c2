"""interpolate, pixel_shuffle, pixel_unshuffle: what is special to them. Every mode over drawn
sizes, scale factors, align_corners and recompute_scale_factor: values against torch, and
gradients against the Jacobian of torch's own forward (each mode is linear in x) and against
torch's backward; where torch's nearest backward disagrees with its own forward; nothing saved;
OpInfo's upsample_nearest/upsample_bilinear samples under trainer.explicit(); what falls back;
error messages. The standard checks run from tests/test_rule_checks.py."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainer
import trainer.functional as F
from trainer import testing

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}

pytestmark = pytest.mark.filterwarnings("ignore:`nn.functional.upsample")


def x64(*shape):
    return torch.randn(shape, dtype=torch.float64, requires_grad=True)


def test_signature_is_torchs():
    assert (list(inspect.signature(F.interpolate).parameters)
            == list(inspect.signature(torch_F.interpolate).parameters))


@st.composite
def interpolations(draw):
    rank = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["nearest", "nearest-exact", LINEAR[rank]]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             *(draw(st.integers(1, 6)) for _ in range(rank)))
    options = {"mode": mode}
    if mode == LINEAR[rank]:
        options["align_corners"] = draw(st.booleans())
    if draw(st.booleans()):
        sizes = [draw(st.integers(1, 9)) for _ in range(rank)]
        options["size"] = sizes[0] if rank == 1 and draw(st.booleans()) else tuple(sizes)
    else:
        factors = [draw(st.sampled_from([0.5, 0.75, 1.0, 1.1, 1.5, 1.7, 2.0, 2.5, 3.0]))
                   for _ in range(rank)]
        factors = [f if math.floor(n * f) >= 1 else 1.0 for n, f in zip(shape[2:], factors)]
        if draw(st.booleans()):
            options["scale_factor"] = tuple(factors)
        else:  # one number for every dim
            fits = all(math.floor(n * factors[0]) >= 1 for n in shape[2:])
            options["scale_factor"] = factors[0] if fits else 1.0
        options["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    return shape, options


def jacobian_of_torchs_forward(shape, options) -> torch.Tensor:
    """J (out numel, in numel): native's forward applied to every basis vector of one plane.
    Each mode is linear in x, so this is its exact Jacobian, built without torch's backward."""
    plane = math.prod(shape[2:])
    basis = torch.eye(plane, dtype=torch.float64).reshape(plane, 1, *shape[2:])
    return torch_F.interpolate(basis, **options).reshape(plane, -1).T


@FAST
@given(interpolations())
def test_matches_torchs_forward_and_its_jacobian(case):
    shape, options = case
    x = x64(*shape)
    y = F.interpolate(x, **options)
    torch.testing.assert_close(y, torch_F.interpolate(x.detach(), **options), rtol=0, atol=0)
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, g)
    jacobian = jacobian_of_torchs_forward(shape, options)
    want = (g.reshape(*shape[:2], -1) @ jacobian).reshape(shape)
    torch.testing.assert_close(grad, want)


@FAST
@given(interpolations())
def test_matches_torchs_backward_where_torch_agrees_with_itself(case):
    shape, options = case
    if options.get("scale_factor") is not None and not options.get("recompute_scale_factor"):
        # native's nearest backward takes out == in (or 2·in) as the identity (or o // 2)
        # whatever the scale factor, where its forward used the scale factor
        if options["mode"] == "nearest":
            return
    testing.assert_matches_reference(lambda t: F.interpolate(t, **options),
                                     lambda t: torch_F.interpolate(t, **options), x64(*shape))


def test_torchs_nearest_backward_disagrees_with_its_own_forward_ours_does_not():
    x = torch.arange(4.0, dtype=torch.float64).reshape(1, 1, 4).requires_grad_()
    y = torch_F.interpolate(x, scale_factor=1.1)  # out = 4 = in, reading x[0, 0, 1, 2]
    assert y.flatten().tolist() == [0, 0, 1, 2]
    g = torch.tensor([[[1.0, 10.0, 100.0, 1000.0]]], dtype=torch.float64)
    (native,) = torch.autograd.grad(y, x, g)
    (ours,) = torch.autograd.grad(F.interpolate(x, scale_factor=1.1), x, g)
    assert native.flatten().tolist() == [1, 10, 100, 1000]  # as if y were x
    assert ours.flatten().tolist() == [11, 100, 1000, 0]
    testing.assert_gradcheck(lambda t: F.interpolate(t, scale_factor=1.1), x)


DTYPE_CASES = [  # shape, options
    ((2, 3, 5), {"size": 9, "mode": "linear"}),
    ((2, 3, 4, 5), {"scale_factor": (1.7, 0.6), "mode": "bilinear", "align_corners": True}),
    ((2, 3, 4, 5), {"size": (7, 3), "mode": "nearest"}),
    ((2, 3, 4, 5), {"scale_factor": 1.5, "mode": "nearest-exact"}),
    ((1, 2, 3, 4, 2), {"size": (5, 2, 3), "mode": "trilinear"}),
    ((2, 3, 7, 5), {"size": (3, 4), "mode": "area"}),
    ((2, 3, 7), {"scale_factor": 0.5, "mode": "area"}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,options", DTYPE_CASES, ids=[c[1]["mode"] for c in DTYPE_CASES])
def test_low_precision_matches_torch(shape, options, dtype):
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    testing.assert_matches_reference(lambda t: F.interpolate(t, **options),
                                     lambda t: torch_F.interpolate(t, **options), x)


@pytest.mark.parametrize("shape,options", DTYPE_CASES[:5], ids=[c[1]["mode"] for c in
                                                               DTYPE_CASES[:5]])
def test_keeps_nothing_and_double_backward_works(shape, options):
    x = x64(*shape)
    assert testing.saved_bytes(lambda: F.interpolate(x, **options)) == 0
    testing.assert_gradcheck(lambda t: F.interpolate(t, **options), x)


def test_nearest_takes_integer_images():
    image = torch.randint(0, 255, (1, 3, 4, 5), dtype=torch.uint8)
    assert torch.equal(F.interpolate(image, scale_factor=2.5),
                       torch_F.interpolate(image, scale_factor=2.5))


def test_area_is_adaptive_average_pooling():
    x = x64(2, 3, 7, 5)
    y = F.interpolate(x, scale_factor=0.5, mode="area")
    assert type(y.grad_fn).__name__ == "AdaptiveAvgPool2dBackward"
    torch.testing.assert_close(y, torch_F.adaptive_avg_pool2d(x, (3, 2)))


@pytest.mark.parametrize("name", ["nn.functional.upsample_nearest",
                                  "nn.functional.upsample_bilinear"])
def test_opinfo_upsample_samples_run_the_rule_under_explicit(name):
    """OpInfo's own samples for the deprecated wrappers (which call F.interpolate, the entry
    point the mode sees): values and gradients equal native's, every node a rule."""
    common = pytest.importorskip("torch.testing._internal.common_methods_invocations")
    info = next(i for i in common.op_db if i.name == name)
    samples = list(info.sample_inputs("cpu", torch.float64, requires_grad=True))
    for sample in samples:
        def run():
            out = info.op(sample.input, *sample.args, **sample.kwargs)
            weights = torch.randn(out.shape, dtype=out.dtype,
                                  generator=torch.Generator().manual_seed(0))
            return out, torch.autograd.grad((out * weights).sum(), sample.input)[0]

        native, native_grad = run()
        with trainer.explicit(strict=True) as report:
            ours, grad = run()
        assert report.explicit["interpolate"] == 1, sample
        torch.testing.assert_close(ours, native)
        torch.testing.assert_close(grad, native_grad)
        assert not testing.graph_node_counts([ours])["builtin"]
    assert samples


def test_explicit_routes_torchs_calls_and_counts_bicubic_a_fallback():
    x = x64(1, 2, 4, 5)
    with trainer.explicit() as report:
        torch_F.upsample(x, scale_factor=2)
        torch_F.interpolate(x, size=(3, 7), mode="bilinear", align_corners=False)
        torch.nn.Upsample(scale_factor=1.5, mode="nearest-exact")(x)
        torch_F.interpolate(x, size=(3, 7), mode="bicubic")
        torch_F.interpolate(x, size=(3, 7), mode="bilinear", antialias=True)
    assert report.explicit == {"interpolate": 3}
    assert report.fallback == {"torch.nn.functional.interpolate": 2}


ERRORS = [  # call, what the message says
    (lambda x: F.interpolate(x, size=3, scale_factor=2), r"interpolate: expected exactly one "
                                                          r"of size and scale_factor"),
    (lambda x: F.interpolate(x), r"exactly one of size and scale_factor, got size=None"),
    (lambda x: F.interpolate(x, size=(3, 4)), r"size as an int or 1 ints for input \(2, 3, 4\)"),
    (lambda x: F.interpolate(x, scale_factor=(2, 2)), r"scale_factor as a number or 1 numbers"),
    (lambda x: F.interpolate(x, size=3, mode="bilinear"), r"a 4-D input for mode 'bilinear', "
                                                          r"got input \(2, 3, 4\)"),
    (lambda x: F.interpolate(x, size=3, align_corners=True),
     r"align_corners=None for mode 'nearest'"),
    (lambda x: F.interpolate(x, size=3, recompute_scale_factor=True),
     r"no recompute_scale_factor with an explicit size"),
    (lambda x: F.interpolate(x, scale_factor=0.1), r"input and output sizes > 0, got input "
                                                   r"\(2, 3, 4\) to output size \(0,\)"),
    (lambda x: F.interpolate(x[0, 0], size=3), r"a 3-D, 4-D or 5-D input .* got input \(4\)"),
    (lambda x: F.interpolate(x, size=3, mode="cubic"), r"mode one of nearest, .*got mode='cubic'"),
    (lambda x: F.interpolate(x[None], size=3, mode="bicubic"), r"bicubic has no explicit rule"),
    (lambda x: F.interpolate(x.long(), size=3, mode="linear"), r"input of a floating dtype"),
    (lambda x: F.pixel_shuffle(x, 2), r"pixel_shuffle: expected channels divisible by "
                                      r"upscale_factor² = 4, got input \(2, 3, 4\)"),
    (lambda x: F.pixel_shuffle(x[0], 1), r"pixel_shuffle: expected an input of at least 3 dims"),
    (lambda x: F.pixel_unshuffle(x, 3), r"pixel_unshuffle: expected height and width divisible "
                                        r"by downscale_factor = 3, got input \(2, 3, 4\)"),
    (lambda x: F.pixel_unshuffle(x, 0), r"pixel_unshuffle: expected downscale_factor a positive "
                                        r"int, got downscale_factor=0"),
]


@pytest.mark.parametrize("call,message", ERRORS, ids=range(len(ERRORS)))
def test_bad_input_names_the_op_and_the_shapes(call, message):
    with pytest.raises(F.ShapeError, match=message):
        call(torch.randn(2, 3, 4))


# --- pixel shuffle ---------------------------------------------------------------------------


def test_pixel_shuffle_and_unshuffle_are_each_others_gradient():
    x = x64(2, 8, 3, 2)
    y = F.pixel_shuffle(x, 2)
    assert type(y.grad_fn).__name__ == "PixelShuffleBackward"
    g = torch.randn_like(y).requires_grad_()
    (grad,) = torch.autograd.grad(y, x, g, create_graph=True)
    assert type(grad.grad_fn).__name__ == "PixelUnshuffleBackward"
    assert torch.equal(grad, torch_F.pixel_unshuffle(g, 2))
    assert torch.equal(F.pixel_unshuffle(y, 2), x)
    assert testing.saved_bytes(lambda: F.pixel_shuffle(x, 2)) == 0
    ints = torch.arange(2 * 9 * 4).reshape(2, 9, 2, 2)
    assert torch.equal(F.pixel_shuffle(ints, 3), torch_F.pixel_shuffle(ints, 3))


def test_explicit_counts_pixel_shuffle_as_a_rule():
    x = x64(1, 4, 2, 2)
    with trainer.explicit(strict=True) as report:
        y = torch.nn.PixelShuffle(2)(x)
        z = torch.nn.PixelUnshuffle(2)(y)
    assert report.explicit == {"pixel_shuffle": 1, "pixel_unshuffle": 1}
    assert not report.fallback and torch.equal(z, x)
