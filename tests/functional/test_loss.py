"""cross_entropy, nll_loss, mse_loss: what the standard checks (tests/test_rule_checks.py, over
the table's examples) do not cover. Values over every option and shape, torch's quirks, nan and
empty cases, Hessian-vector products, mse's broadcast, the exact bytes kept and the work each
gradient costs, per-sample weight gradients, legacy arguments, bfloat16 inputs and errors."""

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as torch_F

import trainer.functional as F
from trainer import testing

C = 5
CLASS_SHAPES = [  # (input shape, class-index target shape)
    ((C,), ()),                 # unbatched
    ((4, C), (4,)),
    ((1, C), (1,)),             # batch 1
    ((2, C, 3), (2, 3)),        # K = 1
    ((2, C, 2, 3), (2, 2, 3)),  # K = 2
    ((2, C, 1, 2, 1), (2, 1, 2, 1)),  # K = 3, size-1 dims
]
REDUCTIONS = ["none", "mean", "sum"]
SMOOTHINGS = [0.0, 0.1, 1.0]


def class_target(shape, ignore_index=None, n_classes=C):
    """Random class indices. With ignore_index, the first is ignored and the last is class 3,
    so that a 'mean' still has something to average; a single target is always class 3."""
    target = torch.randint(n_classes, shape)
    if target.numel() <= 1:
        return torch.full(shape, 3)
    if ignore_index is not None:
        target.view(-1)[0] = ignore_index
        target.view(-1)[-1] = 3
    return target


def class_target_options(weight, dtype):
    """(weight, ignore_index, reduction, label_smoothing): every combination in float64, a
    cover of each value in float32 (whose check is looser anyway)."""
    if dtype == torch.float64:
        return list(itertools.product([None, weight], [-100, 2], REDUCTIONS, SMOOTHINGS))
    return [(None, -100, "mean", 0.0), (weight, 2, "none", 0.1), (weight, -100, "sum", 1.0),
            (None, 2, "mean", 0.1), (weight, 2, "mean", 0.0)]


def leaf(shape, dtype=torch.float64, low=None):
    t = torch.rand(shape, dtype=dtype) + low if low is not None else torch.randn(shape, dtype=dtype)
    return t.requires_grad_()


def both(op_name, **kwargs):
    """(ours, torch's) for one op with fixed keyword arguments."""
    ours, theirs = getattr(F, op_name), getattr(torch_F, op_name)
    return (lambda *a: ours(*a, **kwargs)), (lambda *a: theirs(*a, **kwargs))


def assert_matches_with_nan(op, reference, *inputs):
    """Like testing.assert_matches_reference, for outputs that torch defines as nan."""
    ours_in = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    ref_in = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    ours, ref = op(*ours_in), reference(*ref_in)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, equal_nan=True)
    wants = [i for i, x in enumerate(inputs) if x.requires_grad]
    ref_grads = torch.autograd.grad(ref, [ref_in[i] for i in wants], torch.ones_like(ref))
    our_grads = torch.autograd.grad(ours, [ours_in[i] for i in wants], torch.ones_like(ours))
    for a, b in zip(our_grads, ref_grads):
        torch.testing.assert_close(a, b, equal_nan=True)


# ----------------------------------------------------------------------------------------
# Values and gradients against torch


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape_x,shape_t", CLASS_SHAPES)
def test_cross_entropy_class_targets_match_torch(shape_x, shape_t, dtype):
    x = leaf(shape_x, dtype)
    weight = torch.rand(C, dtype=dtype) + 0.5
    for w, ignore_index, reduction, smoothing in class_target_options(weight, dtype):
        target = class_target(shape_t, ignore_index)
        ours, ref = both("cross_entropy", weight=w, ignore_index=ignore_index,
                         reduction=reduction, label_smoothing=smoothing)
        testing.assert_matches_reference(ours, ref, x, target)
    noncontig = testing.non_contiguous(x)
    target = testing.non_contiguous(class_target(shape_t, 2))
    ours, ref = both("cross_entropy", weight=weight, ignore_index=2, label_smoothing=0.1)
    testing.assert_matches_reference(ours, ref, noncontig, target)
    ours, ref = both("cross_entropy", reduction="none")
    testing.assert_matches_reference(ours, ref, noncontig, target, contiguous_grad=True)


@pytest.mark.parametrize("shape", [(256, 10), (128, 5), (100, 15), (64, 16), (8, 10)])
def test_cross_entropy_short_float32_rows_match_torch(shape):
    """float32 (N, C) logits with rows shorter than a SIMD vector take our own log-softmax
    (torch's kernel has a slow scalar path there): values and gradients as torch, -inf logits
    included, for class-index and probability targets and every reduction."""
    n, n_classes = shape
    x = torch.randn(shape) * 5
    x[0, 1] = -float("inf")  # a masked logit: probability 0, gradient 0
    x.requires_grad_()
    target = class_target((n,), n_classes=n_classes)
    target[0] = 0
    probs = torch.softmax(torch.randn(shape), 1)
    for reduction, smoothing in itertools.product(REDUCTIONS, [0.0, 0.1]):
        ours, ref = both("cross_entropy", reduction=reduction, label_smoothing=smoothing)
        testing.assert_matches_reference(ours, ref, x, target)
        if smoothing == 0.0:  # (smoothing spreads weight onto the -inf logit: inf, as torch)
            testing.assert_matches_reference(ours, ref, x, probs)
        strided = testing.non_contiguous(x.detach()).requires_grad_()
        testing.assert_matches_reference(ours, ref, strided, target)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(C,), (4, C), (2, C, 3), (2, C, 2, 2)])
def test_cross_entropy_probability_targets_match_torch(shape, dtype):
    x = leaf(shape, dtype)
    probs = torch.softmax(torch.randn(shape, dtype=dtype), 0 if len(shape) == 1 else 1)
    probs.requires_grad_()  # torch differentiates the target (and weight) too
    weight = leaf((C,), dtype, low=0.5)
    for reduction, smoothing in itertools.product(REDUCTIONS, SMOOTHINGS):
        ours, ref = both("cross_entropy", reduction=reduction, label_smoothing=smoothing)
        testing.assert_matches_reference(ours, ref, x, probs)
        testing.assert_matches_reference(ours, ref, x, probs, weight)  # a weight gradient too
    ours, ref = both("cross_entropy", label_smoothing=0.1)
    testing.assert_matches_reference(
        ours, ref, testing.non_contiguous(x), testing.non_contiguous(probs), weight
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape_x,shape_t", CLASS_SHAPES)
def test_nll_loss_matches_torch(shape_x, shape_t, dtype):
    log_probs = torch.log_softmax(torch.randn(shape_x, dtype=dtype), 0 if len(shape_x) == 1 else 1)
    log_probs.requires_grad_()
    weight = torch.rand(C, dtype=dtype) + 0.5
    options = dict.fromkeys((w, i, r) for w, i, r, _ in class_target_options(weight, dtype))
    for w, ignore_index, reduction in options:
        target = class_target(shape_t, ignore_index)
        ours, ref = both("nll_loss", weight=w, ignore_index=ignore_index, reduction=reduction)
        testing.assert_matches_reference(ours, ref, log_probs, target)
    ours, ref = both("nll_loss", weight=weight, reduction="none")
    testing.assert_matches_reference(
        ours, ref, testing.non_contiguous(log_probs), testing.non_contiguous(class_target(shape_t))
    )


MSE_SHAPES = [  # (input shape, target shape): torch broadcasts them, with a warning
    ((4, 3), (4, 3)),
    ((4, 1), (4, 3)),
    ((4, 3), (3,)),
    ((), (2, 3)),
    ((), ()),
    ((2, 1, 3), (1, 4, 1)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape_x,shape_t", MSE_SHAPES)
def test_mse_loss_matches_torch(shape_x, shape_t, dtype):
    x, y, w = leaf(shape_x, dtype), leaf(shape_t, dtype), leaf(shape_x, dtype, low=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for reduction in REDUCTIONS:
            ours, ref = both("mse_loss", reduction=reduction)
            testing.assert_matches_reference(ours, ref, x, y)
            testing.assert_matches_reference(ours, ref, testing.non_contiguous(x), y.detach())
            ours, ref = (lambda x, y, w: F.mse_loss(x, y, reduction=reduction, weight=w),
                         lambda x, y, w: torch_F.mse_loss(x, y, reduction=reduction, weight=w))
            testing.assert_matches_reference(ours, ref, x, y, w)  # the weight's gradient too


def test_mse_loss_warns_like_torch_when_shapes_differ():
    x, y = torch.randn(4, 1), torch.randn(4, 3)
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.mse_loss(x, y[:, :1])  # same shapes: silent


def test_cross_entropy_probability_targets_promote_like_torch():
    x, probs = leaf((4, C), torch.float32), leaf((4, C), torch.float32, low=0.0)
    weight = leaf((C,), torch.float64, low=0.5)
    ours, ref = both("cross_entropy", label_smoothing=0.1)
    testing.assert_matches_reference(ours, ref, x, probs, weight)
    testing.assert_matches_reference(ours, ref, x, probs.detach().double())


def test_mse_loss_mixed_dtypes_promote_like_torch():
    x, y = leaf((4, 3), torch.float32), leaf((4, 3), torch.float64)
    testing.assert_matches_reference(F.mse_loss, torch_F.mse_loss, x, y)


def test_nan_and_empty_cases_match_torch():
    x = leaf((4, C))
    ignored = torch.full((4,), -100)
    zero_weight = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    zero_weight_target = torch.tensor([0, 1, -100, 0])
    empty = leaf((0, C))
    empty_target = torch.zeros(0, dtype=torch.long)
    for smoothing in [0.0, 0.3]:
        ours, ref = both("cross_entropy", label_smoothing=smoothing)
        assert_matches_with_nan(ours, ref, x, ignored)  # mean over no targets: nan, zero grads
        assert_matches_with_nan(ours, ref, empty, empty_target)
        assert_matches_with_nan(ours, ref, empty, torch.rand(0, C, dtype=torch.float64))
        ours, ref = both("cross_entropy", weight=zero_weight, label_smoothing=smoothing)
        assert_matches_with_nan(ours, ref, x, zero_weight_target)  # weight sum 0: nan grads
        for reduction in ["sum", "none"]:
            ours, ref = both("cross_entropy", reduction=reduction, label_smoothing=smoothing)
            testing.assert_matches_reference(ours, ref, x, ignored)
            testing.assert_matches_reference(ours, ref, empty, empty_target)
    assert_matches_with_nan(F.nll_loss, torch_F.nll_loss, x, ignored)
    for op_name in ["cross_entropy", "nll_loss"]:  # an ignored unbatched target
        for reduction in REDUCTIONS:
            ours, ref = both(op_name, reduction=reduction)
            assert_matches_with_nan(ours, ref, leaf((C,)), torch.tensor(-100))
    assert_matches_with_nan(F.nll_loss, torch_F.nll_loss, empty, empty_target)
    ours, ref = both("nll_loss", weight=zero_weight)
    assert_matches_with_nan(ours, ref, x, zero_weight_target)
    empty_target = torch.randn(0, C, dtype=torch.float64)
    assert_matches_with_nan(F.mse_loss, torch_F.mse_loss, empty, empty_target)
    ours, ref = both("cross_entropy", reduction="none")
    no_pixels, no_pixel_target = leaf((2, C, 0, 3)), torch.zeros(2, 0, 3, dtype=torch.long)
    testing.assert_matches_reference(ours, ref, no_pixels, no_pixel_target)
    assert torch.isnan(F.cross_entropy(no_pixels, no_pixel_target))


@pytest.mark.parametrize("op_name", ["cross_entropy", "nll_loss", "mse_loss"])
def test_legacy_size_average_and_reduce_map_like_torch(op_name):
    x = leaf((4, C))
    target = torch.randn(4, C, dtype=torch.float64) if op_name == "mse_loss" else class_target((4,))
    for size_average, reduce in itertools.product([None, True, False], repeat=2):
        kwargs = dict(size_average=size_average, reduce=reduce, reduction="sum")
        legacy = size_average is not None or reduce is not None
        with warnings.catch_warnings(record=True) as ours_warned:
            warnings.simplefilter("always")
            ours = getattr(F, op_name)(x, target, **kwargs)
        with warnings.catch_warnings(record=True) as torch_warned:
            warnings.simplefilter("always")
            ref = getattr(torch_F, op_name)(x, target, **kwargs)
        assert ours.shape == ref.shape, (size_average, reduce)
        torch.testing.assert_close(ours, ref)
        assert [str(w.message) for w in ours_warned] == [str(w.message) for w in torch_warned]
        assert len(ours_warned) == int(legacy)
    with pytest.warns(UserWarning, match="elementwise_mean"):
        torch.testing.assert_close(getattr(F, op_name)(x, target, reduction="elementwise_mean"),
                                   getattr(torch_F, op_name)(x, target))


def test_cross_entropy_torch_quirks():
    x = leaf((3, C))
    target = class_target((3,))
    # label_smoothing <= 0 is "off" in torch, not an error
    for smoothing in [-0.5, 0.0]:
        ours, ref = both("cross_entropy", label_smoothing=smoothing)
        testing.assert_matches_reference(ours, ref, x, target)
        testing.assert_matches_reference(ours, ref, x, torch.rand(3, C, dtype=torch.float64))
    # uint8 class indices are accepted
    testing.assert_matches_reference(F.cross_entropy, torch_F.cross_entropy, x, target.byte())
    testing.assert_matches_reference(F.nll_loss, torch_F.nll_loss, x, target.byte())
    # an unbatched input takes a () or a (1,) target, and gives a () loss either way
    # (torch's own backward rejects the (1,) target: compare our grads with the () target's)
    unbatched = leaf((C,))
    for op_name, reduction in itertools.product(["cross_entropy", "nll_loss"], REDUCTIONS):
        ours, ref = both(op_name, reduction=reduction)
        testing.assert_matches_reference(ours, ref, unbatched, torch.tensor(3))
        testing.assert_matches_reference(ours, ref, unbatched, torch.tensor([3]), check_grads=False)
        testing.assert_matches_reference(lambda x: ours(x, torch.tensor([3])),
                                         lambda x: ours(x, torch.tensor(3)), unbatched)
    # an ignore_index outside [0, C) is never a bad class index
    ours, ref = both("cross_entropy", ignore_index=9)
    testing.assert_matches_reference(ours, ref, x, torch.tensor([0, 9, 1]))


# ----------------------------------------------------------------------------------------
# Second derivatives (the gradchecks of every option run from the table's examples)


def test_cross_entropy_second_derivative_equals_torch():
    """Hessian-vector products (the softmax Jacobian) agree with torch's double backward."""
    x, v = leaf((4, C)), torch.randn(4, C, dtype=torch.float64)
    weight = torch.rand(C, dtype=torch.float64) + 0.5
    probs = torch.softmax(torch.randn(4, C, dtype=torch.float64), 1)

    def hvp(op, target, **kwargs):
        (grad_x,) = torch.autograd.grad(op(x, target, weight, **kwargs), x, create_graph=True)
        return torch.autograd.grad(grad_x, x, v)[0]

    for target, kwargs in [(class_target((4,), 2), dict(ignore_index=2, label_smoothing=0.1)),
                           (probs, dict(reduction="sum"))]:
        ours, native = hvp(F.cross_entropy, target, **kwargs), hvp(torch_F.cross_entropy, target,
                                                                   **kwargs)
        torch.testing.assert_close(ours, native)
        assert ours.abs().sum() > 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_broadcast_gradcheck_and_gradgradcheck(reduction):
    # no table example: d = x − y broadcast to (3, 2) is more than native's x and y (24 B, 20 B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op, _ = both("mse_loss", reduction=reduction)
        testing.assert_gradcheck(op, leaf((3, 1)), leaf((2,)))


# ----------------------------------------------------------------------------------------
# Graph purity, lean saves, needs_input_grad


def test_each_loss_is_a_single_node():
    x, w, b = leaf((4, 6), torch.float32), leaf((C, 6), torch.float32), leaf((C,), torch.float32)
    target = class_target((4,))
    # Linear node, its 3 leaves, and the loss node
    assert testing.assert_explicit_graph(F.cross_entropy(F.linear(x, w, b), target)) == 5
    probs, weight = leaf((4, C), torch.float32, low=0.0), leaf((C,), torch.float32, low=0.5)
    logits = leaf((4, C), torch.float32)
    assert testing.assert_explicit_graph(F.cross_entropy(logits, probs, weight)) == 4
    assert testing.assert_explicit_graph(F.nll_loss(logits, target, weight.detach())) == 2
    with pytest.warns(UserWarning):
        assert testing.assert_explicit_graph(F.mse_loss(leaf((4, 1)), leaf((3,)))) == 3
    assert testing.assert_explicit_graph(
        F.mse_loss(leaf((4, 3)), leaf((4, 3)), weight=leaf((4, 3), low=0.5))) == 4


def test_saves_exactly_what_the_gradients_need():
    logits, target = leaf((128, 1000), torch.float32), class_target((128,), 2, n_classes=1000)
    weight = torch.rand(1000) + 0.5
    for w, smoothing in [(None, 0.0), (weight, 0.1)]:
        ours = testing.saved_bytes(
            lambda: F.cross_entropy(logits, target, w, label_smoothing=smoothing))
        native = testing.saved_bytes(
            lambda: torch_F.cross_entropy(logits, target, w, label_smoothing=smoothing))
        assert ours == logits.nbytes + target.nbytes + (0 if w is None else w.nbytes)
        assert ours <= native, (ours, native)
    probs = torch.rand(128, 1000)
    ours = testing.saved_bytes(lambda: F.cross_entropy(logits, probs, weight))
    native = testing.saved_bytes(lambda: torch_F.cross_entropy(logits, probs, weight))
    assert ours == logits.nbytes + probs.nbytes + weight.nbytes <= native
    # nll_loss keeps the target (and weight), never the input
    log_probs = leaf((128, 1000), torch.float32)
    ours = testing.saved_bytes(lambda: F.nll_loss(log_probs, target, weight))
    native = testing.saved_bytes(lambda: torch_F.nll_loss(log_probs, target, weight))
    assert ours == target.nbytes + weight.nbytes < native
    # mse_loss keeps the difference, not input and target
    x, y = leaf((256, 1024), torch.float32), leaf((256, 1024), torch.float32)
    ours = testing.saved_bytes(lambda: F.mse_loss(x, y))
    native = testing.saved_bytes(lambda: torch_F.mse_loss(x, y))
    assert ours == x.nbytes and 2 * ours == native
    mse_weight = leaf((256, 1024), torch.float32, low=0.5)
    ours = testing.saved_bytes(lambda: F.mse_loss(x, y, weight=mse_weight))
    native = testing.saved_bytes(lambda: torch_F.mse_loss(x, y, weight=mse_weight))
    assert ours == 2 * x.nbytes < native


def test_needs_input_grad_skips_the_work_of_each_gradient():
    x, y = leaf((8, 3), torch.float32), leaf((8, 3), torch.float32)
    both_grads = testing.backward_op_counts(F.mse_loss, x, y)
    only_x = testing.backward_op_counts(F.mse_loss, x, y.detach())
    assert both_grads.get("neg", 0) == 1 and "neg" not in only_x
    weight = leaf((8, 3), torch.float32, low=0.5)
    def weighted(x, w):
        return F.mse_loss(x, y.detach(), weight=w)

    with_w = testing.backward_op_counts(weighted, x, weight)
    without_w = testing.backward_op_counts(weighted, x, weight.detach())
    assert sum(with_w.values()) > sum(without_w.values())
    # probability targets: each of the logits', target's and weight's gradients costs work
    logits, probs = leaf((8, C), torch.float32), leaf((8, C), torch.float32, low=0.0)
    class_weight = leaf((C,), torch.float32, low=0.5)
    full = testing.backward_op_counts(F.cross_entropy, logits, probs, class_weight)
    only_logits = testing.backward_op_counts(F.cross_entropy, logits, probs.detach(),
                                             class_weight.detach())
    only_target = testing.backward_op_counts(F.cross_entropy, logits.detach(), probs,
                                             class_weight.detach())
    assert only_logits.get("exp2_", 0) == 1 and "exp2_" not in only_target  # p only for ∂L/∂z
    assert full.get("sum", 0) == only_logits.get("sum", 0) + 1  # Σ_i for ∂L/∂w
    assert sum(only_target.values()) < sum(only_logits.values()) < sum(full.values())


def test_saves_nothing_for_an_input_without_grad():
    logits, probs = leaf((8, C), torch.float32), leaf((8, C), torch.float32, low=0.0)
    # only the target's gradient: no weight (absent), no target needed, only the logits
    assert testing.saved_bytes(lambda: F.cross_entropy(logits.detach(), probs)) == logits.nbytes


# ----------------------------------------------------------------------------------------
# vmap, compile, autocast, CUDA


def test_vmap_per_sample_weight_grads_through_each_loss():
    # the standard vmap check differentiates the batched input alone; here every op in forward
    # and backward must have a batching rule too
    w = torch.randn(C, 6, requires_grad=True)
    b = torch.randn(C, requires_grad=True)
    xs, labels = torch.randn(5, 6), class_target((5,), 2)
    probs = torch.softmax(torch.randn(5, C), 1)
    class_weight = torch.rand(C) + 0.5

    def class_loss(w, b, x, t):
        return F.cross_entropy(F.linear(x, w, b), t, class_weight, ignore_index=2,
                               label_smoothing=0.1)

    def prob_loss(w, b, x, y):
        return F.cross_entropy(F.linear(x, w, b), y, label_smoothing=0.1)

    def nll(w, b, x, t):
        return F.nll_loss(F.linear(x, w, b), t, class_weight, reduction="sum")

    def mse(w, b, x, y):
        return F.mse_loss(F.linear(x, w, b), y)

    with warnings.catch_warnings():  # every op in forward and backward has a batching rule
        warnings.filterwarnings("error", message=".*performance drop.*")
        testing.assert_vmap_matches_loop(class_loss, [w, b], [xs, labels])
        testing.assert_vmap_matches_loop(prob_loss, [w, b], [xs, probs])
        testing.assert_vmap_matches_loop(nll, [w, b], [xs, labels])
        testing.assert_vmap_matches_loop(mse, [w, b], [xs, probs])


def test_compile_fullgraph_of_legacy_arguments_and_a_broadcast_matches_eager():
    with warnings.catch_warnings():  # broadcasting and legacy arguments warn, and compile too
        warnings.simplefilter("ignore")
        testing.assert_compile_matches_eager(lambda x, y: F.mse_loss(x, y, reduce=False),
                                             leaf((4, 1), torch.float32), leaf((3,), torch.float32))


def test_autocast_with_bfloat16_inputs_targets_or_weights_keeps_torchs_dtypes():
    # the standard checks run autocast on float32 tensors alone; here some are bfloat16
    x32, t = leaf((4, C), torch.float32), class_target((4,), 2)
    x16 = leaf((4, C), torch.bfloat16)
    weight = torch.rand(C) + 0.5
    ours, ref = both("cross_entropy", weight=weight, ignore_index=2, label_smoothing=0.1)
    testing.assert_autocast_dtype_matches(ours, ref, x16, t)
    testing.assert_autocast_dtype_matches(F.nll_loss, torch_F.nll_loss, x16, t)
    testing.assert_autocast_dtype_matches(F.mse_loss, torch_F.mse_loss, x16,
                                          leaf((4, C), torch.bfloat16))
    for x in [x32, x16]:
        testing.assert_autocast_dtype_matches(F.cross_entropy, torch_F.cross_entropy, x,
                                              leaf((4, C), torch.bfloat16, low=0.0))
        for w_dtype in [torch.float32, torch.bfloat16]:  # weighted mse follows type promotion
            ours, ref = both("mse_loss", weight=torch.rand(4, C, dtype=w_dtype))
            testing.assert_autocast_dtype_matches(ours, ref, x, leaf((4, C), x.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # and the values are float32's
        torch.testing.assert_close(F.cross_entropy(x16, t), torch_F.cross_entropy(x16, t))


def test_bf16_without_autocast_matches_torch():
    x, t = leaf((4, C), torch.bfloat16), class_target((4,))
    testing.assert_matches_reference(F.cross_entropy, torch_F.cross_entropy, x, t)
    testing.assert_matches_reference(F.nll_loss, torch_F.nll_loss, x, t)
    testing.assert_matches_reference(F.mse_loss, torch_F.mse_loss, x, leaf((4, C), torch.bfloat16))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_matches_torch_and_autocast(dtype):
    x = leaf((4, C), torch.float32).detach().cuda().requires_grad_()
    t = class_target((4,), 2).cuda()
    weight = (torch.rand(C) + 0.5).cuda()
    ours, ref = both("cross_entropy", weight=weight, ignore_index=2, label_smoothing=0.1)
    testing.assert_matches_reference(ours, ref, x, t)
    testing.assert_autocast_dtype_matches(ours, ref, x, t, device_type="cuda", dtype=dtype)
    testing.assert_autocast_dtype_matches(F.nll_loss, torch_F.nll_loss, x, t, device_type="cuda",
                                          dtype=dtype)
    y = torch.randn(4, C, device="cuda", requires_grad=True)
    testing.assert_matches_reference(F.mse_loss, torch_F.mse_loss, x, y)
    testing.assert_autocast_dtype_matches(F.mse_loss, torch_F.mse_loss, x, y, device_type="cuda",
                                          dtype=dtype)
    ours, ref = both("mse_loss", weight=torch.rand(4, C, device="cuda", dtype=dtype))
    testing.assert_autocast_dtype_matches(ours, ref, x, y, device_type="cuda", dtype=dtype)


# ----------------------------------------------------------------------------------------
# Bad inputs: named op, expected and got; still the exception types torch raises


def test_bad_inputs_name_op_and_values():
    x, t = torch.randn(4, C), torch.tensor([0, 1, 2, 3])
    cases = [  # (op, args, kwargs, our message); torch raises for each of these too
        ("cross_entropy", (x, torch.tensor([0, 1, 2, 7])), {},
         r"cross_entropy: expected class indices in \[0, 5\) or ignore_index=-100, "
         r"got target value 7"),
        ("nll_loss", (x, torch.tensor([0, -3, 2, 1])), dict(ignore_index=1),
         r"nll_loss: expected class indices in \[0, 5\) or ignore_index=1, got target value -3"),
        ("cross_entropy", (x, torch.randint(C, (3,))), {},
         r"cross_entropy: expected target of shape \(4,\) for input \(4, 5\), got target \(3\)"),
        ("nll_loss", (torch.randn(2, C, 3), torch.randint(C, (2, 4))), {},
         r"nll_loss: expected target of shape \(2, 3\) for input \(2, 5, 3\), "
         r"got target \(2, 4\)"),
        ("cross_entropy", (torch.randn(C), torch.tensor([1, 2])), {},
         r"cross_entropy: expected target of shape \(\) for input \(5\), got target \(2\)"),
        ("cross_entropy", (torch.randn(()), torch.tensor(0)), {},
         r"cross_entropy: expected input of shape \(C\), \(N, C\).*got input \(\)"),
        ("nll_loss", (x, t.int()), {},
         r"nll_loss: expected class indices of dtype int64 or uint8.*got target \(4\) of dtype"),
        ("cross_entropy", (x, torch.randn(4)), {},
         r"cross_entropy: expected class indices.*got target \(4\) of dtype torch.float32"),
        ("cross_entropy", (x, torch.randint(C, (4, C))), {},
         r"cross_entropy: expected a float target for class probabilities.*torch.int64"),
        ("cross_entropy", (x, torch.rand(4, C)), dict(ignore_index=1),
         r"cross_entropy: expected ignore_index < 0 with probability targets.*ignore_index=1"),
        ("cross_entropy", (x, t), dict(label_smoothing=1.5),
         r"cross_entropy: expected label_smoothing in \[0.0, 1.0\], got label_smoothing=1.5"),
        ("cross_entropy", (x, torch.rand(4, C)), dict(label_smoothing=1.5),
         r"cross_entropy: expected label_smoothing in \[0.0, 1.0\]"),
        ("cross_entropy", (x, t), dict(reduction="avg"),
         r"cross_entropy: expected reduction 'none', 'mean' or 'sum', got reduction='avg'"),
        ("nll_loss", (x, t), dict(weight=torch.ones(4)),
         r"nll_loss: expected weight of shape \(5,\), one per class, got weight \(4\)"),
        ("cross_entropy", (x, torch.rand(4, C)), dict(weight=torch.ones(1, C)),
         r"cross_entropy: expected weight of shape \(5,\), one per class, got weight \(1, 5\)"),
        ("nll_loss", (x, t), dict(weight=torch.ones(C).double()),
         r"nll_loss: expected weight of the input's dtype torch.float32, got weight of dtype"),
        ("nll_loss", (x.long(), t), {},
         r"nll_loss: expected input of a floating dtype, got input of dtype torch.int64"),
        ("cross_entropy", (x, t), dict(weight=torch.ones(C, requires_grad=True)),
         r"cross_entropy: expected a class weight that does not require grad"),
        ("mse_loss", (torch.randn(4, 2), torch.randn(3)), {},
         r"mse_loss: expected a target broadcastable with input \(4, 2\), got target \(3\)"),
        ("mse_loss", (torch.randn(4), torch.randn(4)), dict(weight=torch.ones(3)),
         r"mse_loss: expected weight of the input's shape \(4\), got weight \(3\)"),
        ("mse_loss", (torch.randn(4), torch.randn(4)), dict(reduction="avg"),
         r"mse_loss: expected reduction 'none', 'mean' or 'sum', got reduction='avg'"),
        ("mse_loss", (torch.arange(4), torch.arange(4)), {},
         r"mse_loss: expected floating input and target, got input of dtype torch.int64"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op_name, args, kwargs, message in cases:
            with pytest.raises(F.ShapeError, match=message):
                getattr(F, op_name)(*args, **kwargs)
            with pytest.raises((RuntimeError, ValueError, IndexError, NotImplementedError)):
                getattr(torch_F, op_name)(*args, **kwargs)
    with pytest.raises(RuntimeError):  # what torch-facing code catches
        F.cross_entropy(x, torch.tensor([0, 1, 2, 7]))


def test_class_range_check_off_under_compile_and_vmap():
    """The range check is a host-side branch: compile and vmap skip it and still run."""
    logits = torch.randn(3, C)
    target = torch.tensor([0, 4, 2])
    torch._dynamo.reset()
    compiled = torch.compile(F.cross_entropy, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(logits, target), torch_F.cross_entropy(logits, target))
    per_sample = torch.func.vmap(F.cross_entropy)(logits, target)
    torch.testing.assert_close(per_sample, torch_F.cross_entropy(logits, target, reduction="none"))
