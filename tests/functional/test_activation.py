"""Activations and (log-)softmax: what the standard checks (tests/test_rule_checks.py, over the
table's examples) do not cover. Values over edge shapes (empty, 0-d), kinks and special values,
the bit-packed masks, in-place semantics, bfloat16 inputs under autocast, and signatures."""

import inspect
import sys
import warnings
from functools import partial

import pytest
import torch
import torch.nn.functional as torch_F
from torch.utils._python_dispatch import TorchDispatchMode

import trainer.functional as F
from trainer import testing

# name -> (ours, torch's), each a function of the input alone
OPS = {
    "relu": (F.relu, torch_F.relu),
    "leaky_relu": (F.leaky_relu, torch_F.leaky_relu),
    "leaky_relu_0.2": (lambda x: F.leaky_relu(x, 0.2), lambda x: torch_F.leaky_relu(x, 0.2)),
    "leaky_relu_neg": (lambda x: F.leaky_relu(x, negative_slope=-0.5),
                       lambda x: torch_F.leaky_relu(x, negative_slope=-0.5)),
    "gelu": (F.gelu, torch_F.gelu),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda x: torch_F.gelu(x, approximate="tanh")),
    "silu": (F.silu, torch_F.silu),
    "sigmoid": (F.sigmoid, torch_F.sigmoid),
    "tanh": (F.tanh, torch_F.tanh),
    "softmax": (lambda x: F.softmax(x, -1), lambda x: torch_F.softmax(x, -1)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: torch_F.log_softmax(x, -1)),
    "softmax_dim0": (lambda x: F.softmax(x, dim=0), lambda x: torch_F.softmax(x, dim=0)),
    "log_softmax_dim0": (lambda x: F.log_softmax(x, dim=0),
                         lambda x: torch_F.log_softmax(x, dim=0)),
}
NAMES = list(OPS)
SHAPES = [(4, 5), (1, 5), (2, 3, 4), (0, 5), (3, 0), (1, 1), ()]
SAVES_Y = ["sigmoid", "tanh", "softmax", "log_softmax"]  # native saves y too: same bytes


class ForwardOps(TorchDispatchMode):
    """Names of the aten ops a forward runs."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def randn(*shape, dtype=torch.float32, grad=True):
    return torch.randn(shape, dtype=dtype).requires_grad_(grad)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_matches_torch(name, shape, dtype):
    ours, ref = OPS[name]
    x = randn(*shape, dtype=dtype)
    testing.assert_matches_reference(ours, ref, x)  # non-contiguous grad_output
    testing.assert_matches_reference(ours, ref, testing.non_contiguous(x), contiguous_grad=True)


def test_bfloat16_matches_torch():
    for name in NAMES:
        ours, ref = OPS[name]
        testing.assert_matches_reference(ours, ref, randn(6, 7, dtype=torch.bfloat16))


def test_derivative_at_zero_and_special_values_matches_torch():
    x = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0, 40.0, -40.0], dtype=torch.float64,
                     requires_grad=True)
    for name in NAMES:
        ours, ref = OPS[name]
        testing.assert_matches_reference(ours, ref, x, contiguous_grad=True)
    zero = torch.zeros(3, requires_grad=True)
    (relu_at_0,) = torch.autograd.grad(F.relu(zero).sum(), zero)
    (leaky_at_0,) = torch.autograd.grad(F.leaky_relu(zero, 0.3).sum(), zero)
    assert relu_at_0.eq(0).all()  # torch's relu'(0) = 0
    assert torch.allclose(leaky_at_0, torch.full((3,), 0.3))  # torch's leaky'(0) = slope


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gelu_first_order_at_zero_subnormal_and_extreme_values_matches_torch(dtype):
    # The first-order rule takes Φ(x) − ½ = (gelu(x) − x/2)/x: 0/0 at x = 0, and gelu(x) of a
    # subnormal x rounds (x/2 may not be representable), so these are the values to check.
    tiny = torch.finfo(dtype).smallest_normal
    values = [0.0, -0.0, tiny, -tiny, tiny / 4, -tiny / 3, tiny * 2**-20, 1e-30, -1e-30,
              -0.7518, 0.5, -3.0, -5.0, 5.0, -10.0, 10.0, -40.0, 40.0,
              float("inf"), float("-inf"), float("nan")]
    x = torch.tensor(values, dtype=dtype, requires_grad=True)
    testing.assert_matches_reference(F.gelu, torch_F.gelu, x, contiguous_grad=True,
                                     equal_nan=True)
    (grad,) = torch.autograd.grad(F.gelu(x), x, torch.ones_like(x))
    assert grad[:7].eq(0.5).all()  # Φ(0) = ½ exactly, for ±0 and subnormal x alike


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gelu_low_precision_near_zero_matches_torch(dtype):
    # x/2 is subnormal in half below 6·10⁻⁵: the rule computes in float32, as torch does
    x = (torch.randn(2000) * 1e-4).to(dtype).requires_grad_()
    testing.assert_matches_reference(F.gelu, torch_F.gelu, x, contiguous_grad=True)


def test_nan_propagates_like_torch():
    x = torch.tensor([float("nan"), 1.0, -1.0], requires_grad=True)
    for name in ["relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh"]:
        ours, ref = OPS[name]
        y, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y, y_ref, equal_nan=True)
        g = torch.ones(3)
        torch.testing.assert_close(torch.autograd.grad(y, x, g)[0],
                                   torch.autograd.grad(y_ref, x, g)[0], equal_nan=True)


def test_second_derivative_in_x_matches_torch():
    x = randn(5, 6, dtype=torch.float64)
    for name in ["gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softmax", "log_softmax"]:
        ours, ref = OPS[name]

        def first_grad(op, x):
            (gx,) = torch.autograd.grad(op(x).pow(2).sum(), x, create_graph=True)
            return gx

        testing.assert_matches_reference(partial(first_grad, ours), partial(first_grad, ref), x)


@pytest.mark.parametrize("name", NAMES)
def test_each_activation_is_a_single_node(name):
    # the standard checks see a graph of project Functions; here: one node, no shape ops
    ours, _ = OPS[name]
    assert testing.assert_explicit_graph(ours(randn(3, 4))) == 2  # the op's node + the leaf


def test_relu_and_leaky_save_a_bit_packed_mask_a_32nd_of_native():
    for shape in [(64, 256), (5, 7), (3, 0), ()]:
        x = randn(*shape)
        for name in ["relu", "leaky_relu", "leaky_relu_neg"]:
            ours, ref = OPS[name]
            mine = testing.saved_bytes(partial(ours, x))
            native = testing.saved_bytes(partial(ref, x))  # a float32 tensor of x's size
            assert mine == -(-x.numel() // 8)  # one bit per element, the last byte padded
            assert mine <= native / 32 + 1
    inplace = randn(64, 256) * 1
    assert testing.saved_bytes(lambda: F.relu(inplace, inplace=True)) == 64 * 256 // 8


def test_relu_and_leaky_masks_survive_every_layout():
    # non-contiguous, channels_last and odd-sized inputs, and every mask bit exercised
    base = torch.randn(3, 5, 7, 9, dtype=torch.float64)
    for x in [base, base.to(memory_format=torch.channels_last), base.transpose(1, 3),
              testing.non_contiguous(base)]:
        for name in ["relu", "leaky_relu", "leaky_relu_0.2", "leaky_relu_neg"]:
            ours, ref = OPS[name]
            testing.assert_matches_reference(ours, ref, x.requires_grad_())


def test_gelu_and_silu_save_x_and_the_rest_save_y():
    x = randn(64, 256)
    for name in ["gelu", "gelu_tanh", "silu"]:
        assert testing.saved_bytes(partial(OPS[name][0], x)) == x.nbytes
    for name in SAVES_Y:
        ours, ref = OPS[name]
        assert testing.saved_bytes(partial(ours, x)) == testing.saved_bytes(partial(ref, x))
    wide = x.detach().requires_grad_()
    y = F.softmax(wide, -1, dtype=torch.float64)  # y is saved in the requested dtype
    assert testing.saved_bytes(lambda: F.softmax(wide, -1, dtype=torch.float64)) == y.nbytes


@pytest.mark.parametrize("name", NAMES)
def test_nothing_extra_runs_when_no_grad_is_needed(name):
    ours, _ = OPS[name]
    x, frozen = randn(4, 5), randn(4, 5, grad=False)
    with ForwardOps() as needs_grad:
        ours(x)
    with ForwardOps() as no_grad:
        ours(frozen)
    computed = [n for n in needs_grad.names if n != "detach"]  # detach: autograd saving y
    if not name.startswith(("relu", "leaky")):
        assert computed == no_grad.names
        return
    # the mask is built (and bit-packed) only when needed: relu casts y to bool, leaky_relu
    # writes x > 0 as int8 bytes; then a zero pad to whole bytes (20 elements here), two int64
    # steps and a cast to uint8 pack it
    packing = ["constant_pad_nd", "mul_", "bitwise_right_shift_", "_to_copy"]
    mask_ops = ["empty_like", "gt", *packing] if name.startswith("leaky") else ["_to_copy", *packing]
    assert computed[: len(no_grad.names)] == no_grad.names
    assert [n for n in computed[len(no_grad.names):] if n != "view"] == mask_ops


BUFFERS_PER_BACKWARD = {  # full-size tensors a first-order backward allocates (result included)
    "relu": 1, "leaky_relu": 1, "sigmoid": 1, "tanh": 1, "softmax": 1, "log_softmax": 1,
    "silu": 2, "gelu": 2, "gelu_tanh": 2,
}


class FreshBuffers(TorchDispatchMode):
    """Names of the ops that return a fresh tensor (sharing no storage with their inputs: not a
    view, not in place, not ``out=``) of at least ``nbytes`` bytes."""

    def __init__(self, nbytes):
        super().__init__()
        self.nbytes, self.names = nbytes, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in testing._tensors((args, kwargs))}
        for t in testing._tensors(out):
            if t.untyped_storage().data_ptr() not in inputs and t.nbytes >= self.nbytes:
                self.names.append(func.overloadpacket.__name__)
        return out


@pytest.mark.parametrize("name", list(BUFFERS_PER_BACKWARD))
def test_backward_allocates_few_buffers(name):
    x = randn(8, 5)
    y = OPS[name][0](x)
    g = torch.ones_like(y)
    with FreshBuffers(x.nbytes) as fresh:
        torch.autograd.grad(y, x, g)
    assert len(fresh.names) == BUFFERS_PER_BACKWARD[name], fresh.names
    counts = testing.backward_op_counts(OPS[name][0], randn(8, 5))
    assert not any(op.startswith(("exp", "tanh", "erf")) and not op.startswith("exp2")
                   for op in counts), counts  # MKL's VML: slow on CPU


@pytest.mark.parametrize("name", NAMES)
def test_batched_grad_outputs(name):
    # autograd vmaps the (in-place, first-order) backward over g alone: x's saved tensors are
    # not batched there, so in-place steps must write into g-derived buffers
    ours, _ = OPS[name]
    x = randn(3, 4, dtype=torch.float64)
    gs = torch.randn(5, 3, 4, dtype=torch.float64)
    (batched,) = torch.autograd.grad(ours(x), x, gs, is_grads_batched=True)
    looped = torch.stack([torch.autograd.grad(ours(x), x, g)[0] for g in gs])
    torch.testing.assert_close(batched, looped)


def test_apply_takes_the_full_function_apply_for_keywords_and_transforms():
    # the leaner apply (positional arguments, no transform) and Function.apply agree
    activation = sys.modules["trainer.functional.activation"]
    x = randn(3, 4, dtype=torch.float64)
    y = activation.ReLU.apply(x, False)
    y_keywords = activation.ReLU.apply(x, inplace=False)  # bound by Function.apply
    torch.testing.assert_close(y, y_keywords)
    assert type(y.grad_fn) is type(y_keywords.grad_fn)
    testing.assert_gradcheck(lambda x: activation.LeakyReLU.apply(x, 0.1, False), x)
    from torch.func import grad, vmap
    per_sample = vmap(grad(lambda r: activation.GELU.apply(r, "none").sum()))(x.detach())
    torch.testing.assert_close(per_sample, torch.autograd.grad(torch_F.gelu(x).sum(), x)[0])


def test_compile_fullgraph_of_in_place_relu_and_a_softmax_dtype_matches_eager():
    # what the table's examples cannot hold: an in-place op (on a leaf it would raise) and
    # log_softmax's dtype option (a float32 output of a float64 gradcheck)
    def ops(x):
        out = F.relu(x * 1, inplace=True) + F.leaky_relu(x, 0.2)
        return out + F.log_softmax(x, 0, dtype=torch.float64).float()

    testing.assert_compile_matches_eager(ops, randn(4, 5))


@pytest.mark.slow
def test_compile_inductor_matches_eager_with_odd_sizes():
    # inductor's own C++ (the bit-packed masks through int64 views, sizes that leave a
    # vectorised tail and a padded last byte)
    for shape in [(4, 5), (3, 7, 9), (2, 64)]:
        x = randn(*shape)
        for op in [F.relu, partial(F.leaky_relu, negative_slope=0.2),
                   lambda x: F.relu(x * 1, inplace=True) + F.leaky_relu(x * 2, -0.5)]:
            testing.assert_compile_matches_eager(op, x, backend="inductor")


@pytest.mark.parametrize("name", NAMES)
def test_autocast_keeps_a_bfloat16_inputs_dtype_as_torch(name):
    # the standard checks run autocast on float32 inputs; here the input is bfloat16 already
    ours, ref = OPS[name]
    testing.assert_autocast_dtype_matches(ours, ref, randn(4, 5, dtype=torch.bfloat16))


def test_autocast_softmax_with_dtype():
    for op, ref in [(F.softmax, torch_F.softmax), (F.log_softmax, torch_F.log_softmax)]:
        testing.assert_autocast_dtype_matches(partial(op, dim=1, dtype=torch.float64),
                                              partial(ref, dim=1, dtype=torch.float64),
                                              randn(4, 5, dtype=torch.bfloat16))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_torch_and_autocast(name, dtype):
    ours, ref = OPS[name]
    x = torch.randn(4, 5, device="cuda", requires_grad=True)
    testing.assert_matches_reference(ours, ref, x)
    testing.assert_matches_reference(ours, ref, x.detach().to(dtype).requires_grad_())
    testing.assert_autocast_dtype_matches(ours, ref, x, device_type="cuda", dtype=dtype)


@pytest.mark.parametrize("op,ref", [(F.softmax, torch_F.softmax),
                                    (F.log_softmax, torch_F.log_softmax)])
def test_softmax_every_dim_and_dtype(op, ref):
    x = randn(2, 3, 4)
    for dim in range(-3, 3):
        testing.assert_matches_reference(partial(op, dim=dim), partial(ref, dim=dim), x)
        testing.assert_matches_reference(partial(op, dim=dim, dtype=torch.float64),
                                         partial(ref, dim=dim, dtype=torch.float64), x)
    half = randn(2, 3, dtype=torch.bfloat16)
    testing.assert_matches_reference(lambda x: op(x, 1, dtype=torch.float32),
                                     lambda x: ref(x, 1, dtype=torch.float32), half)
    assert op(half, 1, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("op,ref", [(F.softmax, torch_F.softmax),
                                    (F.log_softmax, torch_F.log_softmax)])
@pytest.mark.parametrize("shape", [(), (5,), (2, 5), (2, 3, 4), (2, 3, 4, 5)], ids=str)
def test_softmax_implicit_dim_follows_torch_and_warns(op, ref, shape):
    x = randn(*shape)
    with pytest.warns(UserWarning, match=f"Implicit dimension choice for {op.__name__}") as ours:
        y = op(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref(x)
    torch.testing.assert_close(y, expected)
    assert ours[0].filename == __file__  # the default stacklevel points at the caller, as torch's


def test_bad_inputs_name_the_op():
    x = torch.randn(2, 3)
    with pytest.raises(F.ShapeError, match=r"softmax: expected dim in \[-2, 1\].*got dim=2"):
        F.softmax(x, 2)
    with pytest.raises(IndexError):  # what torch raises there, so torch-facing code still works
        F.log_softmax(x, -3)
    with pytest.raises(F.ShapeError, match=r"log_softmax: expected dim in \[-1, 0\].*got dim=1"):
        F.log_softmax(torch.tensor(1.0), 1)
    with pytest.raises(F.ShapeError, match=r"softmax: expected a floating.*torch.int64"):
        F.softmax(x, 1, dtype=torch.int64)
    with pytest.raises(F.ShapeError, match=r"log_softmax: expected a floating.*torch.int64"):
        F.log_softmax(torch.arange(3), 0)
    with pytest.raises(F.ShapeError, match=r"gelu: expected approximate='none' or 'tanh'"):
        F.gelu(x, approximate="erf")
    for op in (F.gelu, F.silu, F.leaky_relu):
        with pytest.raises(RuntimeError, match=rf"{op.__name__}: expected input of a floating"):
            op(torch.arange(3))


def test_relu_accepts_integers_and_sigmoid_promotes_them_like_torch():
    ints = torch.arange(-2, 3)
    assert torch.equal(F.relu(ints), torch_F.relu(ints))
    assert torch.equal(F.sigmoid(ints), torch_F.sigmoid(ints))
    assert torch.equal(F.tanh(ints), torch_F.tanh(ints))


# In place: relu, leaky_relu (slope >= 0) and silu without autograd mutate x exactly as torch.


IN_PLACE_OPS = [
    (F.relu, torch_F.relu),
    (partial(F.leaky_relu, negative_slope=0.1), partial(torch_F.leaky_relu, negative_slope=0.1)),
]


@pytest.mark.parametrize("op,ref", IN_PLACE_OPS)
def test_inplace_mutates_like_torch_and_gradients_match(op, ref):
    base = randn(4, 5, dtype=torch.float64)

    def run(fn):
        x = base * 1  # a non-leaf, as in-place needs under autograd
        y = fn(x, inplace=True)
        assert y is x  # the very tensor, modified
        (grad,) = torch.autograd.grad(y, base, torch.arange(20.0).double().reshape(4, 5))
        return y, grad

    (y, grad), (y_ref, grad_ref) = run(op), run(ref)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, grad_ref)
    x = base * 1
    multiply_node = x.grad_fn
    y = op(x, inplace=True)
    assert y.grad_fn.__class__.__name__ in ("ReLUBackward", "LeakyReLUBackward")
    assert y.grad_fn.next_functions[0][0] is multiply_node  # nothing built-in in between


def test_inplace_on_a_leaf_that_needs_grad_raises_like_torch():
    for op in (F.relu, F.leaky_relu):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            op(randn(3), inplace=True)


def test_inplace_leaky_with_negative_slope_fails_in_backward_like_torch():
    base = randn(5)
    y = F.leaky_relu(base * 1, -0.5, inplace=True)
    torch.testing.assert_close(y, torch_F.leaky_relu(base.detach(), -0.5))
    with pytest.raises(RuntimeError, match="negative slope"):
        y.sum().backward()


def test_silu_inplace_mutates_only_when_autograd_does_not_record():
    x = torch.randn(4, 5)
    expected = torch_F.silu(x)
    y = F.silu(x, inplace=True)
    assert y is x and torch.equal(x, expected)

    base = randn(4, 5, dtype=torch.float64)
    x = base * 1
    before = x.detach().clone()
    y = F.silu(x, inplace=True)
    assert y is not x and torch.equal(x, before)  # x is still needed by backward: left alone
    torch.testing.assert_close(y, torch_F.silu(before))
    testing.assert_matches_reference(lambda b: F.silu(b * 1, inplace=True),
                                     lambda b: torch_F.silu(b * 1, inplace=True), base)


@pytest.mark.parametrize("op,ref", [*IN_PLACE_OPS, (F.silu, torch_F.silu)])
def test_inplace_under_vmap_of_grad(op, ref):
    from torch.func import grad, vmap

    def loss(op, inplace, x):
        return op(x * 1, inplace=inplace).pow(2).sum()

    xs = torch.randn(4, 5)
    native = vmap(grad(partial(loss, ref, True)))(xs)
    for inplace in (True, False):
        torch.testing.assert_close(vmap(grad(partial(loss, op, inplace)))(xs), native)
    mutated = xs.clone()
    vmap(lambda x: op(x, inplace=True))(mutated)  # no autograd: mutates, as torch does
    torch.testing.assert_close(mutated, ref(xs.clone(), inplace=True))


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "silu", "softmax", "log_softmax",
                                  "sigmoid", "tanh"])
def test_signature_is_torchs(name):
    def params(fn):
        return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]

    assert params(getattr(F, name)) == params(getattr(torch_F, name))
    gelu = inspect.signature(F.gelu).parameters  # torch's gelu is a builtin without one
    assert [(p.name, p.default) for p in gelu.values()] == [("input", inspect.Parameter.empty),
                                                            ("approximate", "none")]
