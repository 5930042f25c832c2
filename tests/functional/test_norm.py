"""batch_norm and layer_norm: what the standard checks (tests/test_rule_checks.py, over the
table's examples) do not cover. Values over shapes and options, running statistics (eager and
compiled), Hessian-vector products, the exact bytes kept and the work each gradient costs,
per-sample weight gradients, bfloat16 inputs and parameters, and errors."""

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.functional as F
from trainer import testing

BN_SHAPES = [
    (6, 3),            # (N, C)
    (4, 3, 5),         # (N, C, L)
    (2, 3, 4, 5),      # (N, C, H, W)
    (1, 3, 4),         # batch 1, still several values per channel
    (5, 1, 2),         # one channel
]


def make_bn(shape, dtype, affine=True):
    channels = shape[1]
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    w = torch.randn(channels, dtype=dtype, requires_grad=True) if affine else None
    b = torch.randn(channels, dtype=dtype, requires_grad=True) if affine else None
    running_mean = torch.randn(channels, dtype=dtype)
    running_var = torch.rand(channels, dtype=dtype) + 0.5
    return x, w, b, running_mean, running_var


def bn_pair(running_mean, running_var, training, **kwargs):
    """Ours and torch's batch_norm over fresh clones of the running stats, per call."""
    def clone(t):
        return None if t is None else t.clone()

    def ours(x, w, b):
        return F.batch_norm(x, clone(running_mean), clone(running_var), w, b, training, **kwargs)

    def ref(x, w, b):
        return torch_F.batch_norm(x, clone(running_mean), clone(running_var), w, b, training,
                                  **kwargs)
    return ours, ref


# ---------------------------------------------------------------------------------- batch_norm

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_matches_torch(shape, training, dtype):
    x, w, b, rm, rv = make_bn(shape, dtype)
    ours, ref = bn_pair(rm, rv, training)
    testing.assert_matches_reference(ours, ref, x, w, b)
    testing.assert_matches_reference(ours, ref, testing.non_contiguous(x), w, b)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_options(training):
    x, w, b, rm, rv = make_bn((4, 3, 5), torch.float64)
    for kwargs in (dict(momentum=0.3, eps=1e-3), dict(momentum=0.0), dict(momentum=1.0)):
        testing.assert_matches_reference(*bn_pair(rm, rv, training, **kwargs), x, w, b)
    testing.assert_matches_reference(*bn_pair(rm, rv, training), x, None, None)  # no affine
    testing.assert_matches_reference(*bn_pair(rm, rv, training), x, w, None)     # weight only
    testing.assert_matches_reference(*bn_pair(rm, rv, training), x, None, b)     # bias only
    if training:  # running stats are optional when training
        testing.assert_matches_reference(*bn_pair(None, None, True), x, w, b)


def test_batch_norm_channels_last_and_batch_one_eval():
    x = torch.randn(4, 3, 5, 6).to(memory_format=torch.channels_last).requires_grad_()
    w, b = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    rm, rv = torch.randn(3), torch.rand(3) + 0.5
    for training in (True, False):
        testing.assert_matches_reference(*bn_pair(rm, rv, training), x, w, b)
    one = torch.randn(1, 3, requires_grad=True)  # one value per channel: fine in eval
    testing.assert_matches_reference(*bn_pair(rm, rv, False), one, w, b)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_empty_batch(training):
    x, w, b, rm, rv = make_bn((0, 3, 4), torch.float32)
    ours, ref = bn_pair(rm, rv, training)
    testing.assert_matches_reference(ours, ref, x, w, b)
    before = rm.clone()
    F.batch_norm(x, rm, rv, w, b, training)
    assert torch.equal(rm, before)  # torch leaves the stats alone too


def test_batch_norm_running_stats_follow_torch_over_steps():
    ours_mean, ours_var = torch.zeros(3), torch.ones(3)
    ref_mean, ref_var = torch.zeros(3), torch.ones(3)
    for momentum in (0.1, 0.5, 0.9):
        for _ in range(3):
            x = torch.randn(4, 3, 5) * 3 + 1
            F.batch_norm(x, ours_mean, ours_var, training=True, momentum=momentum)
            torch_F.batch_norm(x, ref_mean, ref_var, training=True, momentum=momentum)
            torch.testing.assert_close(ours_mean, ref_mean, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(ours_var, ref_var, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(ours_var, torch.ones(3))  # they did move
    # eval neither reads batch stats nor writes the running ones
    frozen_mean, frozen_var = ours_mean.clone(), ours_var.clone()
    F.batch_norm(torch.randn(4, 3, 5), ours_mean, ours_var, training=False)
    assert torch.equal(ours_mean, frozen_mean) and torch.equal(ours_var, frozen_var)


def test_batch_norm_cumulative_average_like_module_momentum_none():
    """nn.BatchNorm(momentum=None) passes exponential_average_factor = 1/num_batches_tracked
    to F.batch_norm; doing the same with ours gives the same running stats (unbiased var)."""
    module = torch.nn.BatchNorm1d(3, momentum=None, affine=False)
    mean, var = torch.zeros(3), torch.ones(3)
    batches = [torch.randn(6, 3, 4) * (i + 1) + i for i in range(4)]
    for step, x in enumerate(batches, start=1):
        module(x)
        F.batch_norm(x, mean, var, training=True, momentum=1.0 / step)
    torch.testing.assert_close(mean, module.running_mean)
    torch.testing.assert_close(var, module.running_var)
    everything = torch.cat([x.transpose(0, 1).reshape(3, -1) for x in batches], 1)
    per_batch_means = torch.stack([x.mean((0, 2)) for x in batches])
    torch.testing.assert_close(mean, per_batch_means.mean(0))  # a plain average of the batches
    assert everything.shape[1] == 96


def test_batch_norm_second_derivative_sees_batch_statistics():
    """Training's ∂²L/∂x² depends on how μ and rstd move with x: equal to torch's own."""
    x, w, b, _, _ = make_bn((4, 3, 2), torch.float64)
    g = torch.randn(4, 3, 2, dtype=torch.float64)

    def hessian_vector(fn):
        xi = x.detach().clone().requires_grad_()
        (gx,) = torch.autograd.grad(fn(xi, w, b), xi, g, create_graph=True)
        return torch.autograd.grad((gx ** 2).sum(), xi)[0]

    ours, ref = bn_pair(None, None, True)
    torch.testing.assert_close(hessian_vector(ours), hessian_vector(ref))


def test_batch_norm_is_a_single_node():
    x, w, b, rm, rv = make_bn((4, 3, 5), torch.float32)
    for training in (True, False):
        assert testing.assert_explicit_graph(F.batch_norm(x, rm, rv, w, b, training)) == 4


def test_batch_norm_saves_exactly_what_the_gradients_need():
    x, w, b, rm, rv = make_bn((16, 8, 6, 6), torch.float32)
    stats = 2 * 8 * 4  # fp32 mean and rstd per channel
    for training in (True, False):
        ours = testing.saved_bytes(lambda: F.batch_norm(x, rm.clone(), rv.clone(), w, b, training))
        native = testing.saved_bytes(
            lambda: torch_F.batch_norm(x, rm.clone(), rv.clone(), w, b, training))
        assert ours <= native
        assert ours == x.nbytes + w.nbytes + stats
    # eval with only ∂L/∂x: γ·rstd·g needs neither x nor μ
    frozen_w = w.detach()
    assert testing.saved_bytes(
        lambda: F.batch_norm(x, rm, rv, frozen_w, b.detach(), False)) == frozen_w.nbytes + 8 * 4
    # only ∂L/∂β: nothing at all
    assert testing.saved_bytes(lambda: F.batch_norm(x.detach(), rm.clone(), rv.clone(),
                                                    frozen_w, b, True)) == 0


def test_batch_norm_needs_input_grad_skips_the_work_of_each_gradient():
    x, w, b, rm, rv = make_bn((8, 4, 5), torch.float32)
    for training in (True, False):
        def op(x, w, b):
            return F.batch_norm(x, rm.clone(), rv.clone(), w, b, training)
        full = testing.backward_op_counts(op, x, w, b)
        only_bias = testing.backward_op_counts(op, x.detach(), w.detach(), b)
        assert sum(full.values()) > sum(only_bias.values())
        assert only_bias.get("sum", 0) == 1 and "mul" not in only_bias and "sub" not in only_bias
    only_x_eval = testing.backward_op_counts(
        lambda x, w, b: F.batch_norm(x, rm, rv, w, b, False), x, w.detach(), b.detach())
    assert "sum" not in only_x_eval and "sub" not in only_x_eval  # a per-channel scale


def test_batch_norm_vmap_per_sample_weight_grads():
    # the standard vmap check differentiates the batched input alone
    w, b = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    rm, rv = torch.randn(3), torch.rand(3) + 0.5
    xs, targets = torch.randn(5, 3, 4), torch.randn(5, 3, 4)

    def eval_loss(w, b, x, t):  # one sample of (C, L) seen as a batch of C rows
        return (F.batch_norm(x.unsqueeze(0), rm, rv, w, b, False) * t).sum()

    testing.assert_vmap_matches_loop(eval_loss, [w, b], [xs, targets])

    batches, batch_targets = torch.randn(4, 6, 3, 2), torch.randn(4, 6, 3, 2)

    def train_loss(w, b, x, t):  # each vmapped sample is a whole batch with its own stats
        return (F.batch_norm(x, None, None, w, b, True) * t).sum()

    testing.assert_vmap_matches_loop(train_loss, [w, b], [batches, batch_targets])


def test_batch_norm_compiled_updates_running_stats_as_eager():
    x, w, b, _, _ = make_bn((4, 3, 5), torch.float32)
    compiled_mean, compiled_var = torch.zeros(3), torch.ones(3)
    eager_mean, eager_var = torch.zeros(3), torch.ones(3)
    testing.assert_matches_reference(
        torch.compile(lambda x, w, b: F.batch_norm(x, compiled_mean, compiled_var, w, b, True),
                      fullgraph=True, backend="aot_eager"),
        lambda x, w, b: F.batch_norm(x, eager_mean, eager_var, w, b, True),
        x, w, b,
    )
    torch.testing.assert_close(compiled_mean, eager_mean)
    torch.testing.assert_close(compiled_var, eager_var)
    assert not torch.equal(compiled_var, torch.ones(3))


@pytest.mark.parametrize("input_dtype", [torch.bfloat16])  # float32: the standard checks
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_autocast_keeps_a_bfloat16_inputs_dtype_as_torch(input_dtype, training):
    x, w, b, rm, rv = make_bn((4, 3, 5), torch.float32)
    x = x.detach().to(input_dtype).requires_grad_()
    testing.assert_autocast_dtype_matches(*bn_pair(rm, rv, training), x, w, b)


def test_batch_norm_bf16_input_close_to_float64():
    x, w, b, _, _ = make_bn((8, 3, 5), torch.float32)
    x_bf16 = x.detach().bfloat16().requires_grad_()
    g = testing.non_contiguous(torch.randn(8, 3, 5).bfloat16())
    y = F.batch_norm(x_bf16, None, None, w, b, True)
    assert y.dtype == torch.bfloat16
    ours = torch.autograd.grad(y, (x_bf16, w, b), g)
    x64 = x_bf16.detach().double().requires_grad_()
    w64, b64 = w.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    ref = torch.autograd.grad(torch_F.batch_norm(x64, None, None, w64, b64, True),
                              (x64, w64, b64), g.double())
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.double(), r, rtol=2e-2, atol=2e-2)


def test_batch_norm_bad_inputs_name_op_and_shapes():
    x = torch.randn(4, 3, 5)
    with pytest.raises(F.ShapeError, match=r"batch_norm: expected running_mean of shape \(3\)"
                                           r".*got running_mean \(4\)"):
        F.batch_norm(x, torch.zeros(4), torch.ones(4))
    with pytest.raises(F.ShapeError, match=r"batch_norm: .*weight of shape \(3\).*weight \(2\)"):
        F.batch_norm(x, torch.zeros(3), torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match=r"batch_norm: .*more than 1 value per channel when "
                                         r"training.*\(1, 3\)"):
        F.batch_norm(torch.randn(1, 3), None, None, training=True)
    with pytest.raises(RuntimeError, match=r"batch_norm: .*evaluation mode"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(F.ShapeError, match=r"batch_norm: .*both None or both tensors"):
        F.batch_norm(x, torch.zeros(3), None, training=True)
    with pytest.raises(F.ShapeError, match=r"batch_norm: expected input of shape \(N, C, \*\)"):
        F.batch_norm(torch.randn(3), torch.zeros(3), torch.ones(3))
    with pytest.raises(F.ShapeError, match=r"batch_norm: expected eps > 0"):
        F.batch_norm(x, None, None, training=True, eps=0.0)
    with pytest.raises(TypeError, match="batch_norm: expected momentum"):
        F.batch_norm(x, torch.zeros(3), torch.ones(3), training=True, momentum=None)
    with pytest.raises(TypeError):  # torch too
        torch_F.batch_norm(x, torch.zeros(3), torch.ones(3), training=True, momentum=None)


# ---------------------------------------------------------------------------------- layer_norm

LN_CASES = [  # (input shape, normalized_shape)
    ((4, 6), (6,)),
    ((2, 3, 4), (4,)),
    ((2, 3, 4), (3, 4)),       # several normalized dims
    ((3, 4), (3, 4)),          # every dim normalized: one row
    ((1, 5), (5,)),            # batch 1
    ((3, 1), (1,)),            # a single value per row: x̂ = 0
    ((0, 5), (5,)),            # empty batch
]


def make_ln(shape, normalized_shape, dtype):
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    w = torch.randn(normalized_shape, dtype=dtype, requires_grad=True)
    b = torch.randn(normalized_shape, dtype=dtype, requires_grad=True)
    return x, w, b


def ln_pair(normalized_shape, **kwargs):
    def ours(x, w, b):
        return F.layer_norm(x, normalized_shape, w, b, **kwargs)

    def ref(x, w, b):
        return torch_F.layer_norm(x, normalized_shape, w, b, **kwargs)
    return ours, ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,normalized_shape", LN_CASES)
def test_layer_norm_matches_torch(shape, normalized_shape, dtype):
    x, w, b = make_ln(shape, normalized_shape, dtype)
    ours, ref = ln_pair(normalized_shape)
    # one value per row: x̂ is 0, but native's float32 x − μ rounds to ~1e-7, times rstd = 1/√ε
    tol = dict(atol=1e-4) if shape[-1] == 1 and dtype == torch.float32 else {}
    testing.assert_matches_reference(ours, ref, x, w, b, **tol)
    testing.assert_matches_reference(ours, ref, testing.non_contiguous(x), w, b, **tol)
    testing.assert_matches_reference(ours, ref, x, None, None, **tol)
    testing.assert_matches_reference(ours, ref, x, w, None, **tol)
    testing.assert_matches_reference(ours, ref, x, None, b, **tol)


def test_layer_norm_options():
    x, w, b = make_ln((3, 8), (8,), torch.float64)
    testing.assert_matches_reference(*ln_pair([8], eps=1e-2), x, w, b)  # a list, as torch
    testing.assert_matches_reference(*ln_pair(torch.Size([8])), x, w, b)


def test_layer_norm_is_a_single_node():
    x, w, b = make_ln((2, 3, 4), (4,), torch.float32)
    assert testing.assert_explicit_graph(F.layer_norm(x, (4,), w, b)) == 4


def test_layer_norm_saves_exactly_what_the_gradients_need():
    x, w, b = make_ln((32, 64), (64,), torch.float32)
    ours = testing.saved_bytes(lambda: F.layer_norm(x, (64,), w, b))
    native = testing.saved_bytes(lambda: torch_F.layer_norm(x, (64,), w, b))
    assert ours <= native
    assert ours == x.nbytes + w.nbytes + 2 * 32 * 4  # x, γ, per-row μ and rstd
    assert testing.saved_bytes(lambda: F.layer_norm(x.detach(), (64,), w.detach(), b)) == 0


def test_layer_norm_needs_input_grad_skips_the_work_of_each_gradient():
    x, w, b = make_ln((8, 6), (6,), torch.float32)

    def op(x, w, b):
        return F.layer_norm(x, (6,), w, b)
    full = testing.backward_op_counts(op, x, w, b)
    params_only = testing.backward_op_counts(op, x.detach(), w, b)
    bias_only = testing.backward_op_counts(op, x.detach(), w.detach(), b)
    assert sum(full.values()) > sum(params_only.values()) > sum(bias_only.values())
    assert "sub" not in bias_only and "mul_" not in bias_only


def test_layer_norm_vmap_per_sample_weight_grads():
    # the standard vmap check differentiates the batched input alone
    w, b = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    xs, targets = torch.randn(5, 2, 3, 4), torch.randn(5, 2, 3, 4)

    def loss(w, b, x, t):
        return (F.layer_norm(x, (3, 4), w, b) * t).sum()

    testing.assert_vmap_matches_loop(loss, [w, b], [xs, targets])


@pytest.mark.parametrize("input_dtype,param_dtype", [  # (float32, float32): the standard checks
    (torch.bfloat16, torch.float32),
    (torch.bfloat16, torch.bfloat16),  # (float32, bfloat16) is refused by torch on CPU
])
def test_layer_norm_autocast_with_bfloat16_keeps_torchs_dtypes(input_dtype, param_dtype):
    x, w, b = make_ln((4, 5), (5,), torch.float32)
    x = x.detach().to(input_dtype).requires_grad_()
    w, b = (t.detach().to(param_dtype).requires_grad_() for t in (w, b))
    testing.assert_autocast_dtype_matches(*ln_pair((5,)), x, w, b)


def test_layer_norm_bf16_input_matches_torch():
    x, w, b = make_ln((6, 16), (16,), torch.float32)
    x = x.detach().bfloat16().requires_grad_()
    testing.assert_matches_reference(*ln_pair((16,)), x, w, b, rtol=2e-2, atol=2e-2,
                                     contiguous_grad=True)


def test_layer_norm_bad_inputs_name_op_and_shapes():
    x = torch.randn(2, 3, 4)
    with pytest.raises(F.ShapeError, match=r"layer_norm: expected input of shape \(\*, 3\) "
                                           r"for normalized_shape=\(3\).*got input \(2, 3, 4\)"):
        F.layer_norm(x, (3,))
    with pytest.raises(RuntimeError, match=r"layer_norm: .*input \(2, 3, 4\)"):
        F.layer_norm(x, (1, 2, 3, 4))
    with pytest.raises(F.ShapeError, match=r"layer_norm: expected weight of shape \(4\).*"
                                           r"got weight \(3\)"):
        F.layer_norm(x, (4,), torch.ones(3))
    with pytest.raises(F.ShapeError, match=r"layer_norm: expected bias of shape \(3, 4\)"):
        F.layer_norm(x, (3, 4), None, torch.ones(4))
    with pytest.raises(F.ShapeError, match=r"layer_norm: .*at least one dim"):
        F.layer_norm(x, ())
    with pytest.raises(TypeError, match="layer_norm: expected normalized_shape"):
        F.layer_norm(x, 4)


# ------------------------------------------------------------------------------------ accuracy

@pytest.mark.parametrize("op", ["batch_norm", "layer_norm"])
def test_float32_large_mean_as_accurate_as_native(op):
    """Data far from 0 with a small spread (x − μ must be formed before any product): our
    float32 gradients are no further from float64 than native's."""
    x = torch.randn(16, 3, 8, dtype=torch.float64) * 1e-2 + 1e3
    channels = 3 if op == "batch_norm" else 8
    w, b = torch.randn(channels, dtype=torch.float64), torch.randn(channels, dtype=torch.float64)
    g = torch.randn(16, 3, 8, dtype=torch.float64)

    def grads(mod, dtype):
        xi, wi, bi = (t.to(dtype).requires_grad_() for t in (x, w, b))
        if op == "batch_norm":
            y = mod.batch_norm(xi, None, None, wi, bi, True)
        else:
            y = mod.layer_norm(xi, (8,), wi, bi)
        return torch.autograd.grad(y, (xi, wi, bi), g.to(dtype))

    exact = grads(torch_F, torch.float64)
    for ours, native, ref in zip(grads(F, torch.float32), grads(torch_F, torch.float32), exact):
        ours_err = (ours.double() - ref).abs().max() / ref.abs().max()
        native_err = (native.double() - ref).abs().max() / ref.abs().max()
        assert ours_err <= 1.5 * native_err + 1e-6, (ours_err, native_err)


# ---------------------------------------------------------------------------------------- cuda

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_matches_torch_and_autocast(dtype):
    x, w, b, rm, rv = (None if t is None else t.detach().cuda()
                       for t in make_bn((4, 3, 5), torch.float32))
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    for training in (True, False):
        testing.assert_matches_reference(*bn_pair(rm, rv, training), x, w, b)
        testing.assert_autocast_dtype_matches(*bn_pair(rm, rv, training), x, w, b,
                                              device_type="cuda", dtype=dtype)
    lx, lw, lb = (t.detach().cuda().requires_grad_() for t in make_ln((4, 5), (5,), torch.float32))
    testing.assert_matches_reference(*ln_pair((5,)), lx, lw, lb)
    testing.assert_autocast_dtype_matches(*ln_pair((5,)), lx.detach().to(dtype).requires_grad_(),
                                          lw, lb, device_type="cuda", dtype=dtype)


# ------------------------------------------------------------------------------------ property

@settings(max_examples=20, deadline=None)
@given(
    dims=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    training=st.booleans(),
    affine=st.booleans(),
)
def test_batch_norm_random_shapes_match_torch(dims, training, affine):
    if training and torch.Size(dims).numel() // dims[1] == 1:
        dims[0] += 1  # torch refuses one value per channel when training
    x, w, b, rm, rv = make_bn(tuple(dims), torch.float64, affine)
    testing.assert_matches_reference(*bn_pair(rm, rv, training), x, w, b)


@settings(max_examples=20, deadline=None)
@given(
    dims=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    normalized_ndim=st.integers(1, 4),
    affine=st.booleans(),
)
def test_layer_norm_random_shapes_match_torch(dims, normalized_ndim, affine):
    normalized_shape = tuple(dims[-min(normalized_ndim, len(dims)):])
    x, w, b = make_ln(tuple(dims), normalized_shape, torch.float64)
    if not affine:
        w = b = None
    testing.assert_matches_reference(*ln_pair(normalized_shape), x, w, b)
