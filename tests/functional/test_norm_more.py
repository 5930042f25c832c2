"""rms_norm and group_norm, and their module twins: what the standard checks of
tests/test_rule_checks.py do not cover: eps defaults, mixed precision, groups that must divide
the channels, empty inputs, conversion of torch.nn modules, and trainer.explicit() routing."""

import warnings

import pytest
import torch
import torch.nn.functional as torch_F

import trainer
import trainer.functional as F
import trainer.nn as nn
from trainer import testing
from trainer.nn.norm_more import GroupNorm, InstanceNorm1d, RMSNorm


def leaf(*shape, dtype=torch.float64, scale=1.0, shift=0.0):
    return (torch.randn(shape, dtype=dtype) * scale + shift).requires_grad_()


def rms_pair(normalized_shape, **kwargs):
    def ours(x, w):
        return F.rms_norm(x, normalized_shape, w, **kwargs)

    def ref(x, w):
        return torch_F.rms_norm(x, normalized_shape, w, **kwargs)
    return ours, ref


def gn_pair(num_groups, **kwargs):
    def ours(x, w, b):
        return F.group_norm(x, num_groups, w, b, **kwargs)

    def ref(x, w, b):
        return torch_F.group_norm(x, num_groups, w, b, **kwargs)
    return ours, ref


# ------------------------------------------------------------------------------------ rms_norm

RMS_CASES = [  # (input shape, normalized_shape)
    ((4, 6), (6,)),
    ((2, 3, 4), (4,)),
    ((2, 3, 4), (3, 4)),     # two normalized dims
    ((3, 4), (3, 4)),        # every dim normalized: one row
    ((5,), (5,)),            # 1-D input
    ((3, 1), (1,)),          # one value per row: y = x/√(x² + ε)
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,normalized_shape", RMS_CASES)
def test_rms_norm_matches_torch(shape, normalized_shape, dtype):
    torch.manual_seed(0)
    x, w = leaf(*shape, dtype=dtype), leaf(*normalized_shape, dtype=dtype)
    ours, ref = rms_pair(normalized_shape)
    testing.assert_matches_reference(ours, ref, x, w)
    testing.assert_matches_reference(ours, ref, testing.non_contiguous(x), w)
    testing.assert_matches_reference(ours, ref, x, None)
    testing.assert_matches_reference(*rms_pair(list(normalized_shape), eps=1e-2), x, w)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_rms_norm_eps_none_is_the_machine_epsilon_of_the_compute_dtype(dtype):
    """Native's default is float32's epsilon for half inputs (it computes in float32), not
    ``finfo(x.dtype).eps`` as nn.RMSNorm's docstring reads; tiny inputs show the difference."""
    x = (torch.rand(2, 4, dtype=torch.float64) + 1).mul(1e-3).to(dtype)  # x² ~ float32's ε
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    default = F.rms_norm(x, (4,))
    assert torch.equal(default, torch_F.rms_norm(x, (4,)))
    assert torch.equal(default, F.rms_norm(x, (4,), eps=torch.finfo(compute).eps))
    if dtype in (torch.bfloat16, torch.float16):  # its own epsilon would change the result
        assert not torch.equal(default, F.rms_norm(x, (4,), eps=torch.finfo(dtype).eps))
    assert torch.equal(RMSNorm(4, dtype=dtype)(x), torch.nn.RMSNorm(4, dtype=dtype)(x))


def test_group_norm_eps_default_is_torchs():
    x = leaf(2, 4, 3, scale=1e-3)
    testing.assert_matches_reference(*gn_pair(2), x, None, None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("weight_dtype", ["input", torch.float32])
def test_rms_norm_half_input_computes_in_float32_as_torch(dtype, weight_dtype):
    torch.manual_seed(0)
    x = leaf(6, 16, dtype=dtype)
    w = leaf(16, dtype=dtype if weight_dtype == "input" else weight_dtype)
    ours, ref = rms_pair((16,))
    assert ours(x, w).dtype == dtype
    assert torch.equal(ours(x, w), ref(x, w))  # the same float32 ops as native's, cast once
    testing.assert_matches_reference(ours, ref, x, w, contiguous_grad=True)
    # and close to the float64 truth
    g = torch.randn(6, 16, dtype=torch.float64)
    grads = torch.autograd.grad(ours(x, w), (x, w), g.to(dtype))
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    exact = torch.autograd.grad(torch_F.rms_norm(x64, (16,), w64), (x64, w64), g)
    for a, e in zip(grads, exact):
        torch.testing.assert_close(a.double(), e, rtol=2e-2, atol=2e-2)


def test_rms_norm_takes_any_floating_weight_dtype_as_torch():
    x = leaf(3, 5, dtype=torch.float32)
    for dtype in (torch.float64, torch.bfloat16):
        w = leaf(5, dtype=dtype)
        ours, ref = rms_pair((5,))
        assert ours(x, w).dtype == torch.float32
        testing.assert_matches_reference(ours, ref, x, w, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("input_dtype", [torch.bfloat16])  # float32: the standard checks
def test_autocast_keeps_a_bfloat16_inputs_dtype_as_torch(input_dtype):
    x = leaf(4, 6, 5, dtype=input_dtype)
    w, b = leaf(6, dtype=torch.float32), leaf(6, dtype=torch.float32)
    testing.assert_autocast_dtype_matches(*gn_pair(3), x, w, b)
    testing.assert_autocast_dtype_matches(*rms_pair((5,)), x, leaf(5, dtype=torch.float32))


def test_rms_norm_bad_inputs_name_op_and_shapes():
    x = torch.randn(2, 3, 4)
    with pytest.raises(F.ShapeError, match=r"rms_norm: expected input of shape \(\*, 3\) for "
                                           r"normalized_shape=\(3\).*got input \(2, 3, 4\)"):
        F.rms_norm(x, (3,))
    with pytest.raises(F.ShapeError, match=r"rms_norm: expected weight of shape \(3, 4\).*"
                                           r"got weight \(12\)"):
        F.rms_norm(x, (3, 4), torch.ones(12))
    with pytest.raises(F.ShapeError, match=r"rms_norm: .*at least one dim"):
        F.rms_norm(x, ())
    with pytest.raises(TypeError, match="rms_norm: expected normalized_shape"):
        F.rms_norm(x, 4)
    with pytest.raises(F.ShapeError, match="rms_norm: expected input of a real floating dtype"):
        F.rms_norm(x.to(torch.complex64), (4,))
    with pytest.raises(RuntimeError, match="rms_norm"):
        F.rms_norm(x.long(), (4,))


# ---------------------------------------------------------------------------------- group_norm

GN_CASES = [  # (input shape, num_groups)
    ((2, 6, 5), 3),          # groups in between
    ((2, 6, 5), 1),          # one group: layer norm over (C, *)
    ((2, 6, 5), 6),          # a group per channel: instance norm
    ((3, 4), 2),             # (N, C)
    ((2, 4, 3, 2), 2),       # (N, C, H, W)
    ((1, 4, 2, 2, 2), 4),    # (N, C, D, H, W), batch 1
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,groups", GN_CASES)
def test_group_norm_matches_torch(shape, groups, dtype):
    torch.manual_seed(0)
    channels = shape[1]
    x, w, b = leaf(*shape, dtype=dtype), leaf(channels, dtype=dtype), leaf(channels, dtype=dtype)
    ours, ref = gn_pair(groups)
    testing.assert_matches_reference(ours, ref, x, w, b)
    testing.assert_matches_reference(ours, ref, testing.non_contiguous(x), w, b)
    testing.assert_matches_reference(ours, ref, x, None, None)
    testing.assert_matches_reference(ours, ref, x, w, None)
    testing.assert_matches_reference(*gn_pair(groups, eps=1e-2), x, w, b)


def test_group_norm_channels_last():
    x = leaf(2, 6, 4, 3, dtype=torch.float32).detach()
    x = x.to(memory_format=torch.channels_last).requires_grad_()
    testing.assert_matches_reference(*gn_pair(3), x, leaf(6, dtype=torch.float32),
                                     leaf(6, dtype=torch.float32))


def test_group_norm_bias_without_weight_where_native_backward_fails():
    """Native's backward stops ("tensor does not have a device") with a bias and no weight;
    ours equals native with weight = 1."""
    x, b = leaf(2, 6, 5), leaf(6)

    def ref(x, b):
        return torch_F.group_norm(x, 3, torch.ones(6, dtype=x.dtype), b)
    testing.assert_matches_reference(lambda x, b: F.group_norm(x, 3, None, b), ref, x, b)
    testing.assert_gradcheck(lambda x, b: F.group_norm(x, 3, None, b), x, b)


def test_group_norm_gradcheck_and_gradgradcheck_with_one_value_per_group():
    # no table example: x̂ = 0 and rstd = eps^-1/2 there, which amplifies float32's rounding
    # past the standard checks' float32 tolerance
    x, w, b = leaf(3, 4), leaf(4), leaf(4)
    testing.assert_gradcheck(gn_pair(4)[0], x, w, b)
    testing.assert_gradcheck(lambda x: F.group_norm(x, 4), x)  # no affine: x alone


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_group_norm_half_input_with_float32_affine_as_torch(dtype):
    torch.manual_seed(0)
    x = leaf(4, 6, 8, dtype=dtype)
    w, b = leaf(6, dtype=torch.float32), leaf(6, dtype=torch.float32)
    ours, ref = gn_pair(3)
    assert ours(x, w, b).dtype == dtype
    testing.assert_matches_reference(ours, ref, x, w, b, rtol=2e-2, atol=2e-2,
                                     contiguous_grad=True)
    testing.assert_matches_reference(ours, ref, x, w.detach().to(dtype).requires_grad_(),
                                     b.detach().to(dtype).requires_grad_(), rtol=2e-2, atol=2e-2)


def test_float32_large_mean_group_norm_as_accurate_as_native():
    """Data far from 0 with a small spread: our float32 gradients are no further from float64
    than native's (x − μ is formed before any product)."""
    x = torch.randn(4, 6, 8, dtype=torch.float64) * 1e-2 + 1e3
    w, b = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    g = torch.randn(4, 6, 8, dtype=torch.float64)

    def grads(mod, dtype):
        xi, wi, bi = (t.to(dtype).requires_grad_() for t in (x, w, b))
        return torch.autograd.grad(mod.group_norm(xi, 3, wi, bi), (xi, wi, bi), g.to(dtype))

    exact = grads(torch_F, torch.float64)
    for ours, native, ref in zip(grads(F, torch.float32), grads(torch_F, torch.float32), exact):
        ours_err = (ours.double() - ref).abs().max() / ref.abs().max()
        native_err = (native.double() - ref).abs().max() / ref.abs().max()
        assert ours_err <= 1.5 * native_err + 1e-6, (ours_err, native_err)


def test_group_norm_groups_must_divide_channels_and_bad_inputs_name_op_and_shapes():
    x = torch.randn(2, 6, 5)
    with pytest.raises(F.ShapeError, match=r"group_norm: expected channels divisible by "
                                           r"num_groups=4, got input \(2, 6, 5\) with C = 6"):
        F.group_norm(x, 4)
    with pytest.raises(F.ShapeError, match=r"group_norm: expected num_groups > 0, got "
                                           r"num_groups=0"):
        F.group_norm(x, 0)
    with pytest.raises(F.ShapeError, match=r"group_norm: expected weight of shape \(6\) for "
                                           r"input \(2, 6, 5\), got weight \(3\)"):
        F.group_norm(x, 3, torch.ones(3))
    with pytest.raises(F.ShapeError, match=r"group_norm: expected bias of shape \(6\).*"
                                           r"got bias \(2, 3\)"):
        F.group_norm(x, 3, None, torch.ones(2, 3))
    with pytest.raises(F.ShapeError, match=r"group_norm: expected input of shape \(N, C, \*\), "
                                           r"got input \(6\)"):
        F.group_norm(torch.randn(6), 3)
    with pytest.raises(TypeError, match="group_norm: expected num_groups as an int"):
        F.group_norm(x, 3.0)
    with pytest.raises(F.ShapeError, match="group_norm: expected weight and bias of one dtype"):
        F.group_norm(x.bfloat16(), 3, torch.ones(6, dtype=torch.bfloat16), torch.ones(6))
    with pytest.raises(F.ShapeError, match="group_norm: expected weight of the input's dtype"):
        F.group_norm(x, 3, torch.ones(6, dtype=torch.bfloat16))  # torch refuses it too
    # one value to normalize: F.group_norm refuses (a ValueError, as torch's); torch.group_norm
    # takes it
    one = torch.randn(1, 4, 1)
    with pytest.raises(ValueError, match=r"group_norm: .*more than 1 value.*\(1, 4, 1\) with "
                                         r"num_groups=4"):
        F.group_norm(one, 4)
    with pytest.raises(ValueError):
        torch_F.group_norm(one, 4)
    native = torch.group_norm(one, 4)
    with trainer.explicit() as report:
        torch.testing.assert_close(torch.group_norm(one, 4), native)
    assert report.explicit == {"group_norm": 1}


@pytest.mark.parametrize("shape", [(0, 4, 3), (2, 0, 3), (2, 4, 0), (0, 4)])
def test_group_norm_empty_input_as_torch(shape):
    groups = 2 if shape[1] else 1
    x = leaf(*shape)
    w, b = (leaf(shape[1]), leaf(shape[1]))
    out = F.group_norm(x, groups, w, b)
    assert out.shape == torch_F.group_norm(x, groups, w, b).shape
    grads = torch.autograd.grad(out.sum(), (x, w, b))
    assert grads[0].shape == x.shape and not grads[1].any() and not grads[2].any()
    if shape[0] == 0:  # native's backward takes an empty batch
        testing.assert_matches_reference(*gn_pair(groups), x, w, b)


@pytest.mark.parametrize("shape,normalized_shape", [((0, 4), (4,)), ((2, 0), (0,))])
def test_rms_norm_empty_input_as_torch(shape, normalized_shape):
    x, w = leaf(*shape), leaf(*normalized_shape)
    testing.assert_matches_reference(*rms_pair(normalized_shape), x, w)
    grads = torch.autograd.grad(F.rms_norm(x, normalized_shape, w).sum(), (x, w))
    assert grads[0].shape == x.shape and not grads[1].any()


# ------------------------------------------------------------------- saves, work, vmap, graph

def f32_leaves(*shapes):
    return [leaf(*shape, dtype=torch.float32) for shape in shapes]


def test_saves_exactly_x_gamma_and_the_stats():
    x, w, b = f32_leaves((8, 6, 5), (6,), (6,))
    stats = 2 * 8 * 3 * 4  # μ, rstd: float32 per (sample, group)
    assert testing.saved_bytes(lambda: F.group_norm(x, 3, w, b)) == x.nbytes + w.nbytes + stats
    assert testing.saved_bytes(lambda: F.group_norm(x.detach(), 3, w.detach(), b)) == 0
    assert testing.saved_bytes(lambda: F.group_norm(x.detach(), 3, w, b)) == x.nbytes + stats
    rw = leaf(5, dtype=torch.float32)
    assert testing.saved_bytes(lambda: F.rms_norm(x, (5,), rw)) == x.nbytes + rw.nbytes + 8 * 6 * 4
    assert testing.saved_bytes(lambda: F.rms_norm(x.detach(), (5,), rw)) == x.nbytes + 8 * 6 * 4
    half = x.detach().bfloat16().requires_grad_()  # native keeps a float32 copy of x; ours, x
    assert testing.saved_bytes(lambda: F.rms_norm(half, (5,), rw)) < testing.saved_bytes(
        lambda: torch_F.rms_norm(half, (5,), rw))


def test_needs_input_grad_skips_the_work_of_each_gradient():
    x, w, b = f32_leaves((8, 6, 5), (6,), (6,))

    def op(x, w, b):
        return F.group_norm(x, 3, w, b)
    full = testing.backward_op_counts(op, x, w, b)
    params_only = testing.backward_op_counts(op, x.detach(), w, b)
    bias_only = testing.backward_op_counts(op, x.detach(), w.detach(), b)
    assert sum(full.values()) > sum(params_only.values()) > sum(bias_only.values())
    assert "sub" not in bias_only and "mul" not in bias_only
    rw = leaf(5, dtype=torch.float32)
    rms_full = testing.backward_op_counts(lambda x, w: F.rms_norm(x, (5,), w), x, rw)
    rms_weight = testing.backward_op_counts(lambda x, w: F.rms_norm(x, (5,), w), x.detach(), rw)
    assert sum(rms_full.values()) > sum(rms_weight.values())


def test_vmap_per_sample_weight_grads():
    # the standard vmap check differentiates the batched input alone
    w, b = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    xs, targets = torch.randn(4, 2, 6, 5), torch.randn(4, 2, 6, 5)

    def gn_loss(w, b, x, t):
        return (F.group_norm(x, 3, w, b) * t).sum()

    def rms_loss(w, x, t):
        return (F.rms_norm(x, (6, 5), w.view(6, 1).expand(6, 5)) * t).sum()
    testing.assert_vmap_matches_loop(gn_loss, [w, b], [xs, targets])
    testing.assert_vmap_matches_loop(rms_loss, [w], [xs, targets])


def test_double_backward_sees_the_statistics():
    """A second derivative through the normalization: Hessian-vector products equal torch's,
    which needs μ and rstd as functions of x, not the forward's constants."""
    x, w, b = leaf(2, 6, 4), leaf(6), leaf(6)
    v = torch.randn(2, 6, 4, dtype=torch.float64)
    for op in (lambda m, x: m.group_norm(x, 3, w, b), lambda m, x: m.rms_norm(x, (4,), w[:4])):
        hvps = []
        for module in (F, torch_F):
            xi = x.detach().requires_grad_()
            (gx,) = torch.autograd.grad(op(module, xi).pow(2).sum(), xi, create_graph=True)
            hvps.append(torch.autograd.grad(gx, xi, v)[0])
        torch.testing.assert_close(*hvps)


# -------------------------------------------------------------------------------------- twins

def models():
    torch.manual_seed(0)
    return {
        "RMSNorm": (torch.nn.RMSNorm([3, 5]), (2, 4, 3, 5)),
        "RMSNorm, eps": (torch.nn.RMSNorm(5, eps=1e-3, elementwise_affine=False), (2, 4, 5)),
        "GroupNorm": (torch.nn.GroupNorm(2, 6), (2, 6, 5)),
        "GroupNorm, no affine": (torch.nn.GroupNorm(3, 6, affine=False, eps=1e-3), (2, 6, 3, 4)),
        "InstanceNorm1d": (torch.nn.InstanceNorm1d(4), (2, 4, 5)),
        "InstanceNorm1d, affine": (torch.nn.InstanceNorm1d(4, affine=True), (2, 4, 5)),
        "InstanceNorm1d, unbatched": (torch.nn.InstanceNorm1d(4, affine=True), (4, 5)),
        "InstanceNorm2d": (torch.nn.InstanceNorm2d(3, eps=1e-3), (2, 3, 4, 4)),
        "InstanceNorm2d, affine, unbatched": (torch.nn.InstanceNorm2d(3, affine=True), (3, 4, 4)),
    }


@pytest.mark.parametrize("name", list(models()))
def test_each_twin_converts_with_torchs_outputs_gradients_and_state_dict(name):
    native, shape = models()[name]
    with torch.no_grad():  # affine parameters away from their 1, 0 init
        for p in native.parameters():
            p.add_(torch.randn_like(p))
    converted, report = nn.convert(native)
    assert report.converted == {"": type(native).__name__} and not report.unconverted
    assert type(converted).__module__ == "trainer.nn.norm_more"
    assert list(converted.state_dict()) == list(native.state_dict())
    for key, value in native.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value)
    x = torch.randn(shape, requires_grad=True)
    y, y_native = converted(x), native(x)
    torch.testing.assert_close(y, y_native)
    g = torch.randn(shape)
    wanted = [x, *converted.parameters()]
    ours = torch.autograd.grad(y, wanted, g)
    theirs = torch.autograd.grad(y_native, [x, *native.parameters()], g)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    testing.assert_explicit_graph(converted(x))
    assert report.calls.complete  # (a twin calls its rule directly: nothing to count)
    assert type(nn.to_torch(converted)) is type(native)


def test_instance_norm_checks_as_torch():
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        InstanceNorm1d(3)(torch.randn(2, 3, 1))
    with pytest.raises(ValueError, match=r"match num_features \(3\), but got: 4"):
        InstanceNorm1d(3, affine=True)(torch.randn(2, 4, 5))
    with pytest.warns(UserWarning, match="does not match num_features"):
        y = InstanceNorm1d(3)(torch.randn(2, 4, 5))  # affine=False: torch goes on, so do we
    assert y.shape == (2, 4, 5)
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        InstanceNorm1d(3)(torch.randn(2, 3, 4, 5))


def test_instance_norm_with_running_stats_is_left_to_torch():
    native = torch.nn.InstanceNorm1d(4, track_running_stats=True)
    twin = InstanceNorm1d(4, track_running_stats=True)
    x = torch.randn(2, 4, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(twin(x), native(x))
    torch.testing.assert_close(twin.running_mean, native.running_mean)
    twin.eval(), native.eval()
    torch.testing.assert_close(twin(x), native(x))


def test_convert_reports_instance_norm_with_running_stats_unconverted():
    model = torch.nn.Sequential(torch.nn.InstanceNorm2d(3, track_running_stats=True))
    _, report = nn.convert(model)
    assert not report.converted
    assert "track_running_stats=True" in report.unconverted["0"]


def test_twins_name_the_layer_on_bad_input():
    with pytest.raises(F.ShapeError, match=r"RMSNorm\(\(4,\).*expected input of shape "
                                           r"\(\*, 4\), got \(2, 3\)"):
        RMSNorm(4)(torch.randn(2, 3))
    with pytest.raises(F.ShapeError, match=r"GroupNorm\(2, 6.*C = 6, got \(2, 4, 3\)"):
        GroupNorm(2, 6)(torch.randn(2, 4, 3))
    with pytest.raises(F.ShapeError, match=r"group_norm: expected channels divisible"):
        GroupNorm(2, 6, affine=False)(torch.randn(2, 5, 3))  # torch takes C ≠ num_channels
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(GroupNorm(2, 6, affine=False)(x),
                               torch.nn.GroupNorm(2, 6, affine=False)(x))


# ----------------------------------------------------------------------------- explicit mode

def test_every_entry_point_reaches_its_rule_under_explicit():
    x = leaf(2, 6, 4, dtype=torch.float32)
    w, b = leaf(6, dtype=torch.float32), leaf(6, dtype=torch.float32)
    rms, group = torch.nn.RMSNorm(4), torch.nn.GroupNorm(3, 6)
    calls = {  # entry point -> (the call, the rule it reaches)
        "F.rms_norm": (lambda: torch_F.rms_norm(x, (4,), w[:4], eps=1e-5), "rms_norm"),
        "torch.rms_norm": (lambda: torch.rms_norm(x, [4], w[:4]), "rms_norm"),
        "nn.RMSNorm": (lambda: rms(x), "rms_norm"),
        "F.group_norm": (lambda: torch_F.group_norm(x, 3, w, b), "group_norm"),
        "torch.group_norm": (lambda: torch.group_norm(x, 3, w, b, 1e-5, False), "group_norm"),
        "nn.GroupNorm": (lambda: group(x), "group_norm"),
    }
    for name, (call, rule) in calls.items():
        native = call()
        with trainer.explicit(strict=True) as report:
            out = call()
        assert report.explicit == {rule: 1}, name
        torch.testing.assert_close(out, native)
        counts = testing.graph_node_counts(out)
        assert not counts["builtin"], (name, counts)


def test_complex_rms_norm_is_left_to_torch_under_explicit():
    x = torch.randn(2, 4, dtype=torch.complex64)
    with trainer.explicit() as report:
        out = torch_F.rms_norm(x, (4,))
    torch.testing.assert_close(out, torch_F.rms_norm(x, (4,)))
    assert not report.explicit


def test_a_hand_written_llama_rms_norm_stays_explicit():
    """LLaMA's RMSNorm (Hugging Face's, float32 upcast included) written out of torch ops:
    every op reaches a pointwise or reduction rule, and agrees with rms_norm."""
    eps = 1e-6
    x = leaf(2, 3, 8, dtype=torch.float32)
    w = leaf(8, dtype=torch.float32)

    def llama_rms_norm(hidden, weight):
        h = hidden.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return weight * h.to(hidden.dtype)

    with trainer.explicit(strict=True) as report:
        out = llama_rms_norm(x, w)
    assert set(report.explicit) == {"mul", "rsqrt", "pow", "mean", "add"}
    assert not report.fallback
    assert not testing.graph_node_counts(out)["builtin"]
    testing.assert_matches_reference(llama_rms_norm, lambda x, w: F.rms_norm(x, (8,), w, eps),
                                     x, w)
