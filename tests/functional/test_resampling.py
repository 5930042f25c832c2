"""pad and adaptive_avg_pool1d/2d: what is special to them. Every pad mode against torch over
pad widths (negative constant pads, reflect pads up to size − 1), adaptive pools on sizes that
do not divide, None in output_size, unbatched inputs; the nn twins; error messages; and
trainer.explicit() routing torch's calls to the rules. The standard checks (gradcheck, vmap,
compile, ...) run from tests/test_rule_checks.py."""

import inspect

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainer
import trainer.functional as F
from trainer import testing
from trainer.nn import convert

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def torch_raises(fn, *args, **kwargs) -> bool:
    try:
        fn(*args, **kwargs)
    except RuntimeError:  # NotImplementedError too
        return True
    return False


def x64(*shape):
    return torch.randn(shape, dtype=torch.float64, requires_grad=True)


def test_signatures_are_torchs():
    assert list(inspect.signature(F.pad).parameters) == ["input", "pad", "mode", "value"]
    assert inspect.signature(F.pad).parameters["mode"].default == "constant"
    for name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d"):
        assert list(inspect.signature(getattr(F, name)).parameters) == ["input", "output_size"]


# --- pad: each mode against torch -----------------------------------------------------------

PAD_CASES = [  # mode, input shape, pad
    ("constant", (2, 3, 5), (2, 1)),
    ("constant", (2, 3, 5), (-2, 1)),
    ("constant", (2, 3, 5), (-3, -2)),  # cropped to nothing
    ("constant", (2, 3, 5), (-1, -1, 2, -3)),
    ("constant", (2, 3, 4), (1, -1, -1, 2, 1, 0)),  # every dim, the batch too
    ("constant", (4,), (3, -2)),
    ("constant", (3, 4), ()),
    ("reflect", (2, 3, 5), (4, 4)),  # as wide as reflect allows
    ("reflect", (3, 5), (1, 3)),  # unbatched
    ("reflect", (2, 3, 5), (-2, 3)),
    ("reflect", (2, 3, 5), (3, -5)),  # crops all of x: only reflections are left
    ("reflect", (1, 2, 4, 5), (4, 0, 3, 3)),
    ("reflect", (2, 4, 6), (2, 5, -1, 3)),
    ("reflect", (1, 2, 3, 4, 5), (1, 4, 3, 2, 2, 1)),
    ("replicate", (2, 3, 4), (5, 2)),
    ("replicate", (3, 4), (-3, 6)),
    ("replicate", (1, 2, 4, 4), (-2, 3, 4, -3)),
    ("replicate", (2, 4, 3), (1, 1, -4, 2)),  # an empty output dim, as torch allows
    ("replicate", (2, 3, 2, 3, 4), (1, 2, 2, 1, 3, 0)),
    ("circular", (2, 3, 5), (5, 5)),  # a whole turn each side
    ("circular", (3, 5), (2, 0)),
    ("circular", (2, 3, 5), (-1, 3)),  # crop, then wrap what is left
    ("circular", (1, 2, 4, 5), (2, -2, 4, 1)),
    ("circular", (2, 3, 5), (-2, -3)),
    ("circular", (1, 2, 3, 3, 4), (1, 2, 0, 3, 2, 1)),
]


@pytest.mark.parametrize("mode,shape,pad", PAD_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}"
                                                          for c in PAD_CASES])
def test_pad_matches_torch(mode, shape, pad):
    x = x64(*shape)
    testing.assert_matches_reference(lambda t: F.pad(t, pad, mode),
                                     lambda t: torch_F.pad(t, pad, mode), x)
    testing.assert_matches_reference(lambda t: F.pad(t, pad, mode),
                                     lambda t: torch_F.pad(t, pad, mode),
                                     testing.non_contiguous(x))


@pytest.mark.parametrize("value", [None, 0, 2.5, -1])
def test_constant_value_and_integer_inputs(value):
    x = x64(2, 3, 4)
    testing.assert_matches_reference(lambda t: F.pad(t, (1, 2), value=value),
                                     lambda t: torch_F.pad(t, (1, 2), value=value), x)
    ints = torch.arange(12).reshape(3, 4)
    assert torch.equal(F.pad(ints, (1, -1, 2, 0), value=value),
                       torch_F.pad(ints, (1, -1, 2, 0), value=value))


@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    dims = draw(st.integers(1, 3))
    extra = draw(st.integers(0 if mode == "constant" else 1, 2))
    shape = ([draw(st.integers(1, 3)) for _ in range(extra)]
             + [draw(st.integers(1, 5)) for _ in range(dims)])
    pad = [draw(st.integers(-6, 6)) for _ in range(2 * dims)]
    return mode, shape, pad


@FAST
@given(pad_cases())
def test_pad_matches_torch_over_random_widths(case):
    mode, shape, pad = case
    x = x64(*shape)
    if torch_raises(torch_F.pad, x.detach(), pad, mode):
        with pytest.raises(F.ShapeError, match="pad: expected"):
            F.pad(x, pad, mode)
        return
    sizes = shape[::-1]
    over_wrap = any(max(pad[2 * k], pad[2 * k + 1])
                    > sizes[k] - max(-pad[2 * k], 0) - max(-pad[2 * k + 1], 0)
                    for k in range(len(pad) // 2))
    if mode == "circular" and over_wrap:  # torch reads memory it never wrote; we refuse
        with pytest.raises(F.ShapeError, match="circular pads no larger"):
            F.pad(x, pad, mode)
        return
    testing.assert_matches_reference(lambda t: F.pad(t, pad, mode),
                                     lambda t: torch_F.pad(t, pad, mode), x)


def test_reflect_gradient_adds_the_border_onto_the_rows_it_mirrors():
    x = torch.zeros(1, 1, 4, dtype=torch.float64, requires_grad=True)
    y = F.pad(x, (3, 2), "reflect")  # x3 x2 x1 | x0 x1 x2 x3 | x2 x1
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert grad.flatten().tolist() == [1, 3, 3, 2]


def test_replicate_and_circular_gradients_land_on_the_edge_and_the_far_side():
    x = torch.zeros(1, 1, 4, dtype=torch.float64, requires_grad=True)
    y = F.pad(x, (3, 1), "replicate")  # x0 x0 x0 | x0 x1 x2 x3 | x3
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert grad.flatten().tolist() == [4, 1, 1, 2]
    y = F.pad(x, (1, 2), "circular")  # x3 | x0 x1 x2 x3 | x0 x1
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert grad.flatten().tolist() == [2, 2, 1, 2]


# --- adaptive average pools ------------------------------------------------------------------

POOL_CASES = [  # op, input shape, output_size
    ("adaptive_avg_pool1d", (2, 3, 8), 4),
    ("adaptive_avg_pool1d", (2, 3, 7), 3),  # overlapping windows
    ("adaptive_avg_pool1d", (2, 3, 10), (4,)),
    ("adaptive_avg_pool1d", (3, 7), 5),  # unbatched
    ("adaptive_avg_pool1d", (2, 3, 3), 7),  # more outputs than inputs
    ("adaptive_avg_pool1d", (2, 3, 5), 0),
    ("adaptive_avg_pool1d", (0, 3, 5), 2),
    ("adaptive_avg_pool2d", (2, 3, 6, 4), (3, 2)),
    ("adaptive_avg_pool2d", (2, 3, 7, 5), (3, 4)),
    ("adaptive_avg_pool2d", (2, 3, 7, 5), 3),
    ("adaptive_avg_pool2d", (2, 3, 7, 5), (None, 3)),
    ("adaptive_avg_pool2d", (2, 3, 7, 5), (4, None)),
    ("adaptive_avg_pool2d", (2, 3, 7, 5), (None, None)),
    ("adaptive_avg_pool2d", (3, 7, 5), (2, 3)),  # unbatched
    ("adaptive_avg_pool2d", (5, 6, 5), (None, 2)),
    ("adaptive_avg_pool2d", (1, 2, 3, 2), (5, 7)),  # more outputs than inputs
    ("adaptive_avg_pool2d", (2, 3, 5, 5), 1),  # global
    ("adaptive_avg_pool2d", (0, 3, 5, 5), 2),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name,shape,size", POOL_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}"
                                                             for c in POOL_CASES])
def test_adaptive_pool_matches_torch(name, shape, size, dtype):
    ours, theirs = getattr(F, name), getattr(torch_F, name)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    if theirs(x.detach(), size).numel() == 0:  # torch's own backward refuses: ours gives 0
        testing.assert_matches_reference(lambda t: ours(t, size), lambda t: theirs(t, size),
                                         x, check_grads=False)
        out = ours(x, size)
        (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
        assert grad.shape == x.shape and not grad.any()
        return
    testing.assert_matches_reference(lambda t: ours(t, size), lambda t: theirs(t, size), x)


def test_adaptive_pool_gradgradcheck_with_an_empty_output():
    # no table example: torch's own backward refuses an empty output (ours gives zeros)
    testing.assert_gradcheck(lambda t: F.adaptive_avg_pool1d(t, 0), x64(2, 3, 5))


def test_overlapping_windows_add_up():
    # L = 5 into 3 windows: [0, 2), [1, 4), [3, 5): x1 and x3 sit in two windows each
    x = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
    y = F.adaptive_avg_pool1d(x, 3)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    torch.testing.assert_close(grad[0], torch.tensor([1 / 2, 1 / 2 + 1 / 3, 1 / 3,
                                                      1 / 3 + 1 / 2, 1 / 2],
                                                     dtype=torch.float64))


@pytest.mark.parametrize("call", [
    lambda x: F.pad(x, (2, 1, 1, 3), "reflect"),
    lambda x: F.pad(x, (-1, 2), "constant", 3.0),
    lambda x: F.adaptive_avg_pool2d(x, (3, None)),
    lambda x: F.adaptive_avg_pool1d(x[0], 3),
], ids=["reflect", "constant", "adaptive_avg_pool2d", "adaptive_avg_pool1d"])
def test_keeps_shapes_only(call):
    x = torch.randn(2, 3, 6, 5, requires_grad=True)
    assert testing.saved_bytes(lambda: call(x)) == 0


# --- the nn twins ----------------------------------------------------------------------------

MODULES = [  # torch.nn module, input shape
    (torch.nn.ZeroPad1d((2, -1)), (2, 3, 5)),
    (torch.nn.ZeroPad2d((1, 2, 0, 3)), (2, 3, 4, 5)),
    (torch.nn.ConstantPad1d(2, 0.5), (3, 5)),
    (torch.nn.ConstantPad2d((1, 0, -1, 2), -1.0), (2, 3, 4, 5)),
    (torch.nn.ReflectionPad1d((4, 2)), (2, 3, 5)),
    (torch.nn.ReflectionPad2d((1, 2, 3, 0)), (3, 4, 5)),
    (torch.nn.ReplicationPad1d((0, 3)), (2, 3, 4)),
    (torch.nn.ReplicationPad2d(2), (2, 3, 4, 5)),
    (torch.nn.CircularPad1d(3), (2, 3, 4)),
    (torch.nn.CircularPad2d((1, 1, 2, 0)), (2, 3, 4, 5)),
    (torch.nn.AdaptiveAvgPool1d(3), (2, 3, 7)),
    (torch.nn.AdaptiveAvgPool2d((3, None)), (2, 3, 7, 5)),
]


@pytest.mark.parametrize("module,shape", MODULES, ids=[type(m).__name__ for m, _ in MODULES])
def test_twin_converts_and_gives_torchs_outputs_and_gradients(module, shape):
    converted, report = convert(module)
    assert type(converted) is not type(module) and isinstance(converted, type(module))
    assert type(converted).__module__ == "trainer.nn.resampling"
    assert report.converted == {"": type(module).__name__} and not report.unconverted
    testing.assert_matches_reference(converted, module, x64(*shape))
    y = converted(x64(*shape))
    testing.assert_explicit_graph(y)
    assert report.calls.complete


def test_circular_twin_keeps_torchs_input_check():
    converted, _ = convert(torch.nn.CircularPad2d(1))
    with pytest.raises(ValueError, match="expected 3D or 4D input"):
        converted(torch.randn(4, 5))


# --- error messages name the op and the shapes -----------------------------------------------

ERRORS = [  # call, what the message says
    (lambda x: F.pad(x, (1,)), r"pad: expected pad of even length.*got pad=\(1,\)"),
    (lambda x: F.pad(x, (1,) * 8), r"pad: expected at most 6 pads for input \(2, 3, 4\)"),
    (lambda x: F.pad(x, (1.5, 1)), r"pad: expected pad as a sequence of ints"),
    (lambda x: F.pad(x, (1, 1), "zeros"), r"pad: expected mode 'constant', .*got mode='zeros'"),
    (lambda x: F.pad(x, (1, 1), "reflect", 2.0), r"pad: expected no fill value"),
    (lambda x: F.pad(x, (-3, -2)), r"crop no more than the input holds, got pad=\(-3, -2\) "
                                   r"for input \(2, 3, 4\)"),
    (lambda x: F.pad(x, (4, 0), "reflect"), r"reflect pads smaller than the dim they pad, "
                                            r"got pad=\(4, 0\) for input \(2, 3, 4\)"),
    (lambda x: F.pad(x, (1, 1, 1, 1, 1, 1), "replicate"), r"got pad=.* for input \(2, 3, 4\)"),
    (lambda x: F.pad(x, (-2, -2), "replicate"), r"output sizes >= 1 where it pads"),
    (lambda x: F.pad(x, (5, 0), "circular"), r"circular pads no larger than the dim they pad"),
    (lambda x: F.pad(x, (3, -2), "circular"), r"circular pads .* after cropping"),
    (lambda x: F.adaptive_avg_pool2d(x[0, 0], 2),
     r"adaptive_avg_pool2d: expected input of shape \(C, H, W\) or \(N, C, H, W\), "
     r"got input \(4\)"),
    (lambda x: F.adaptive_avg_pool2d(x, (2,)), r"adaptive_avg_pool2d: expected output_size as"),
    (lambda x: F.adaptive_avg_pool2d(x, -1), r"output sizes >= 0, got output_size=-1"),
    (lambda x: F.adaptive_avg_pool2d(x.long(), 2), r"a floating dtype, got input of dtype"),
    (lambda x: F.adaptive_avg_pool2d(x[:, :, :0], 2), r"non-zero spatial sizes, got input "
                                                      r"\(2, 3, 0\)"),
    (lambda x: F.adaptive_avg_pool1d(x, None), r"adaptive_avg_pool1d: expected output_size as "
                                               r"an int or a 1-tuple, got output_size=None"),
    (lambda x: F.adaptive_avg_pool1d(x[None], 2), r"adaptive_avg_pool1d: expected input of "
                                                  r"shape \(C, L\) or \(N, C, L\)"),
]


@pytest.mark.parametrize("call,message", ERRORS, ids=range(len(ERRORS)))
def test_bad_input_names_the_op_and_the_shapes(call, message):
    x = torch.randn(2, 3, 4)
    with pytest.raises(F.ShapeError, match=message):
        call(x)


# --- trainer.explicit() routes torch's calls to the rules ------------------------------------


def test_explicit_routes_torchs_modules_and_calls_to_the_rules():
    x = x64(2, 3, 7, 5)
    pool, reflect = torch.nn.AdaptiveAvgPool2d((3, None)), torch.nn.ReflectionPad2d((1, 2, 3, 0))
    with trainer.explicit(strict=True) as report:
        pooled = pool(x)
        padded = torch_F.pad(x, (1, 1, 2, 0), mode="replicate")
        cropped = torch.constant_pad_nd(x, (-1, 2), 0.5)
        mirrored = reflect(x)
        pooled_1d = torch.nn.AdaptiveAvgPool1d(2)(x[0])
    assert report.explicit == {"adaptive_avg_pool2d": 1, "pad": 3, "adaptive_avg_pool1d": 1}
    assert not report.fallback
    assert type(pooled.grad_fn).__name__ == "AdaptiveAvgPool2dBackward"
    assert type(padded.grad_fn).__name__ == "PadBackward"
    native = [torch_F.adaptive_avg_pool2d(x, (3, None)), torch_F.pad(x, (1, 1, 2, 0), "replicate"),
              torch_F.pad(x, (-1, 2), value=0.5), torch_F.pad(x, (1, 2, 3, 0), "reflect"),
              torch_F.adaptive_avg_pool1d(x[0], 2)]
    ours = [pooled, padded, cropped, mirrored, pooled_1d]
    for got, want in zip(ours, native, strict=True):
        torch.testing.assert_close(got, want)
    weights = [torch.randn_like(t) for t in native]

    def weighted_grad(outs):
        return torch.autograd.grad(sum((t * w).sum() for t, w in zip(outs, weights)), x)[0]

    torch.testing.assert_close(weighted_grad(ours), weighted_grad(native))
