"""max_pool1d/2d and avg_pool1d/2d: what the standard checks (tests/test_rule_checks.py, over
the table's examples) do not cover. Values and indices over drawn windows, ties, windows in the
padding, the uint8/int16 argmax kept and native's bytes, bfloat16 inputs, and signatures."""

import inspect

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import trainer.functional as F
from trainer import testing

OPS = {  # ours, torch's, spatial dims
    "max_pool1d": (F.max_pool1d, torch_F.max_pool1d, 1),
    "max_pool2d": (F.max_pool2d, torch_F.max_pool2d, 2),
    "avg_pool1d": (F.avg_pool1d, torch_F.avg_pool1d, 1),
    "avg_pool2d": (F.avg_pool2d, torch_F.avg_pool2d, 2),
}
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def torch_raises(fn, *args, **kwargs) -> bool:
    try:
        fn(*args, **kwargs)
    except RuntimeError:
        return True
    return False


# --- signatures ------------------------------------------------------------------------------


def _params(fn) -> list[tuple[str, object, object]]:
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", ["max_pool1d", "max_pool2d"])
def test_max_signature_is_torchs(name):
    # torch's max_pool*d is a boolean_dispatch over these two, which share one signature
    assert _params(getattr(F, name)) == _params(getattr(torch_F, "_" + name))


@pytest.mark.parametrize("name", ["avg_pool1d", "avg_pool2d"])
def test_avg_signature_is_torchs(name):
    # avg_pool*d are builtins: their signature is the docstring's first line
    documented = getattr(torch_F, name).__doc__.strip().splitlines()[0]
    params = inspect.signature(getattr(F, name)).parameters.values()
    ours = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default}"
                     for p in params)
    assert documented == f"{name}({ours}) -> Tensor"


# --- values, indices and gradients against torch, over the option space ----------------------


@st.composite
def max_cases(draw):
    spatial_dims = draw(st.sampled_from([1, 2]))
    kernel = [draw(st.integers(1, 4)) for _ in range(spatial_dims)]
    stride = draw(st.one_of(st.none(), st.lists(st.integers(1, 4), min_size=spatial_dims,
                                                max_size=spatial_dims)))
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    dilation = [draw(st.integers(1, 3)) for _ in range(spatial_dims)]
    size = [draw(st.integers(1, 9)) for _ in range(spatial_dims)]
    lead = draw(st.sampled_from([(2, 3), (1, 2), (3,)]))  # batched, batch 1, unbatched
    options = dict(ceil_mode=draw(st.booleans()), return_indices=draw(st.booleans()))
    return (spatial_dims, (*lead, *size), kernel, stride, padding, dilation, options,
            draw(st.booleans()))


@FAST
@given(max_cases())
def test_max_pool_matches_torch(case):
    spatial_dims, shape, kernel, stride, padding, dilation, options, ties = case
    name = f"max_pool{spatial_dims}d"
    ours, ref, _ = OPS[name]
    x = torch.randn(shape, dtype=torch.float64)
    if ties:  # few distinct values: torch's first-max rule decides
        x = x.round()
    x.requires_grad_()
    args = (kernel, stride, padding, dilation)
    if torch_raises(ref, x.detach(), *args, **options):
        with pytest.raises(F.ShapeError, match=name):
            ours(x, *args, **options)
        return
    native_out = ref(x.detach(), *args, ceil_mode=options["ceil_mode"])
    # a window wholly in padding gives -inf and an out-of-range native index (its backward
    # writes out of bounds), so compare only the forward there
    check_grads = not torch.isinf(native_out).any()
    testing.assert_matches_reference(lambda t: ours(t, *args, **options),
                                     lambda t: ref(t, *args, **options), x,
                                     check_grads=check_grads)


@st.composite
def avg_cases(draw):
    spatial_dims = draw(st.sampled_from([1, 2]))
    kernel = [draw(st.integers(1, 4)) for _ in range(spatial_dims)]
    stride = draw(st.one_of(st.none(), st.lists(st.integers(1, 5), min_size=spatial_dims,
                                                max_size=spatial_dims)))
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    size = [draw(st.integers(1, 9)) for _ in range(spatial_dims)]
    lead = draw(st.sampled_from([(2, 3), (1, 2), (3,)]))
    options = dict(ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()))
    if spatial_dims == 2:
        options["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, -2]))
    return spatial_dims, (*lead, *size), kernel, stride, padding, options


@FAST
@given(avg_cases())
def test_avg_pool_matches_torch(case):
    spatial_dims, shape, kernel, stride, padding, options = case
    name = f"avg_pool{spatial_dims}d"
    ours, ref, _ = OPS[name]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    args = (kernel, stride, padding)
    if torch_raises(ref, x.detach(), *args, **options):
        with pytest.raises(F.ShapeError, match=name):
            ours(x, *args, **options)
        return
    testing.assert_matches_reference(lambda t: ours(t, *args, **options),
                                     lambda t: ref(t, *args, **options), x)


CASES = [  # name, input shape, args, kwargs: every keyword, edge shapes
    ("max_pool2d", (2, 3, 9, 8), (3, 2, 1), dict(ceil_mode=True)),
    ("max_pool2d", (2, 3, 7, 7), ((3, 2), (1, 2), (1, 0), (2, 1)), dict(return_indices=True)),
    ("max_pool2d", (1, 2, 3, 3), (2, 1, 1, 3), {}),     # window wider than the input
    ("max_pool2d", (3, 5, 6), (2,), {}),                # unbatched
    ("max_pool2d", (0, 3, 6, 6), (2,), {}),             # empty batch
    ("max_pool2d", (2, 2, 1, 5), ((1, 2),), {}),        # height 1
    ("max_pool1d", (2, 3, 11), (3, 2, 1, 2), dict(ceil_mode=True, return_indices=True)),
    ("max_pool1d", (3, 7), (2,), {}),
    ("max_pool1d", (0, 2, 7), (2,), {}),
    ("avg_pool2d", (2, 3, 9, 8), (3, 2, 1), dict(ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", (2, 3, 7, 7), (3, 1, 1), dict(divisor_override=4)),
    ("avg_pool2d", (2, 3, 7, 7), (2, 3), {}),           # stride > kernel: gaps
    ("avg_pool2d", (3, 5, 6), (2,), {}),
    ("avg_pool2d", (0, 3, 6, 6), (2,), {}),
    ("avg_pool1d", (2, 3, 11), (3, 2, 1), dict(ceil_mode=True, count_include_pad=False)),
    ("avg_pool1d", (3, 1), (1,), {}),                   # length 1
    ("avg_pool1d", (0, 2, 7), (2,), {}),
]
IDS = [f"{c[0]}-{c[1]}-{c[2]}-{sorted(c[3])}" for c in CASES]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name,shape,args,kwargs", CASES, ids=IDS)
def test_matches_torch_non_contiguous(name, shape, args, kwargs, dtype):
    ours, ref, _ = OPS[name]
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    for inp in (x, testing.non_contiguous(x)):
        testing.assert_matches_reference(lambda t: ours(t, *args, **kwargs),
                                         lambda t: ref(t, *args, **kwargs), inp)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_channels_last(name):
    ours, ref, _ = OPS[name]
    x = torch.randn(2, 4, 6, 6).to(memory_format=torch.channels_last).requires_grad_()
    testing.assert_matches_reference(lambda t: ours(t, 3, 2, 1), lambda t: ref(t, 3, 2, 1), x)


def test_ties_follow_torchs_first_max():
    x = torch.zeros(2, 3, 6, 6, requires_grad=True)  # every tap ties
    for kwargs in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)):
        testing.assert_matches_reference(lambda t: F.max_pool2d(t, return_indices=True, **kwargs),
                                         lambda t: torch_F.max_pool2d(t, return_indices=True,
                                                                      **kwargs), x)
    x1 = torch.ones(2, 3, 8, requires_grad=True)
    testing.assert_matches_reference(lambda t: F.max_pool1d(t, 3, 1, 1, return_indices=True),
                                     lambda t: torch_F.max_pool1d(t, 3, 1, 1, return_indices=True),
                                     x1)


def test_window_wholly_in_padding_passes_no_gradient():
    # dilation 2 jumps from the left padding past a 1-wide input: native gives -inf there
    x = torch.randn(1, 2, 3, 1, dtype=torch.float64, requires_grad=True)
    out, indices = F.max_pool2d(x, 2, 1, 1, 2, return_indices=True)
    ref_out, ref_indices = torch_F.max_pool2d(x.detach(), 2, 1, 1, 2, return_indices=True)
    assert torch.equal(out, ref_out) and torch.equal(indices, ref_indices)
    assert torch.isinf(out).all()
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert torch.equal(grad, torch.zeros_like(x))


def test_large_window_uses_int16_local_index():
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(lambda t: F.max_pool2d(t, 17, 1, 8),
                                     lambda t: torch_F.max_pool2d(t, 17, 1, 8), x)
    out_numel = torch_F.max_pool2d(x.detach(), 17, 1, 8).numel()
    assert testing.saved_bytes(lambda: F.max_pool2d(x, 17, 1, 8)) == 2 * out_numel


# --- one node, lean saves -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("kwargs", [{}, dict(ceil_mode=True, padding=1)])
def test_each_pool_is_a_single_node_and_its_indices_need_no_grad(name, kwargs):
    ours, _, spatial_dims = OPS[name]
    x = torch.randn(2, 3, *[7] * spatial_dims, requires_grad=True)
    assert testing.assert_explicit_graph(ours(x, 3, **kwargs)) == 2  # the pool + the leaf
    if name.startswith("max"):
        out, indices = ours(x, 3, return_indices=True, **kwargs)
        assert testing.assert_explicit_graph(out) == 2 and not indices.requires_grad


@pytest.mark.parametrize("shape", [(64, 32, 28, 28), (32, 64, 14, 14)])
def test_max_pool2d_saves_an_eighth_of_native_or_less(shape):
    x = torch.randn(shape, requires_grad=True)
    ours = testing.saved_bytes(lambda: F.max_pool2d(x, 2))
    native = testing.saved_bytes(lambda: torch_F.max_pool2d(x, 2))
    assert ours * 8 <= native
    assert ours == x.numel() // 4  # one uint8 per output: no input, no int64 indices
    with_indices = testing.saved_bytes(lambda: F.max_pool2d(x, 3, 2, 1, return_indices=True))
    assert with_indices == torch_F.max_pool2d(x.detach(), 3, 2, 1).numel()


def test_max_pool1d_saves_uint8_only():
    x = torch.randn(16, 8, 40, requires_grad=True)
    ours = testing.saved_bytes(lambda: F.max_pool1d(x, 2))
    assert ours == x.numel() // 2
    assert ours * 8 <= testing.saved_bytes(lambda: torch_F.max_pool1d(x, 2))


@pytest.mark.parametrize("name", ["avg_pool1d", "avg_pool2d"])
def test_avg_pool_saves_nothing(name):
    ours, ref, spatial_dims = OPS[name]
    x = torch.randn(8, 4, *[12] * spatial_dims, requires_grad=True)
    assert testing.saved_bytes(lambda: ours(x, 3, 2, 1, True, False)) == 0
    assert testing.saved_bytes(lambda: ref(x, 3, 2, 1, True, False)) > 0


class _ForwardOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["max_pool1d", "max_pool2d"])
def test_max_pool_skips_argmax_work_without_grad(name):
    ours, _, spatial_dims = OPS[name]
    x = torch.randn(2, 3, *[9] * spatial_dims, requires_grad=True)
    counts = {}
    for label, inp in (("grad", x), ("frozen", x.detach())):
        with _ForwardOps() as ops:
            ours(inp, 3, 2, 1, 2)
        counts[label] = ops.names
    assert len(counts["frozen"]) < len(counts["grad"])
    assert "index_select" in counts["grad"] and "index_select" not in counts["frozen"]
    with torch.no_grad(), _ForwardOps() as ops:
        ours(x, 3, 2, 1, 2)
    assert ops.names == counts["frozen"]
    assert testing.saved_bytes(lambda: ours(x.detach(), 2)) == 0


@pytest.mark.parametrize("name", list(OPS))
def test_backward_is_explicit_math(name):
    ours, _, spatial_dims = OPS[name]
    x = torch.randn(2, 3, *[8] * spatial_dims, requires_grad=True)
    counts = testing.backward_op_counts(lambda t: ours(t, 3, 2, 1), x)
    assert not any(op.endswith("_backward") for op in counts), counts
    if name.startswith("max"):
        assert counts.get("scatter_add_", 0) == 1


# --- tiled windows (kernel = stride): the maximum-of-views path ------------------------------


TILED = [  # (name, shape, kernel): divisible, cropped, odd kernels, 1x1, ceil_mode-divisible
    ("max_pool2d", (3, 4, 8, 8), 2), ("max_pool2d", (2, 3, 9, 7), 2),
    ("max_pool2d", (2, 3, 9, 8), (3, 2)), ("max_pool2d", (2, 2, 5, 5), 1),
    ("max_pool1d", (3, 4, 10), 2), ("max_pool1d", (2, 3, 11), 3),
]


@pytest.mark.parametrize("name,shape,kernel", TILED)
@pytest.mark.parametrize("values", ["random", "ties", "nan", "inf"])
def test_tiled_windows_match_torch_values_indices_and_grads(name, shape, kernel, values):
    ours, ref, _ = OPS[name]
    x = torch.randn(*shape, dtype=torch.float64)
    if values == "ties":
        x = x.round()  # many windows hold their max twice: the first tap must win
    elif values == "nan":  # NaN wins its window, as in torch (the general path)
        x.view(-1)[::7] = float("nan")
    elif values == "inf":
        x.view(-1)[::5] = float("inf")
        x.view(-1)[1::5] = -float("inf")
    x.requires_grad_()
    testing.assert_matches_reference(lambda t: ours(t, kernel), lambda t: ref(t, kernel), x,
                                     equal_nan=True)
    grad_out = torch.randn_like(ref(x.detach(), kernel))
    grad_out.view(-1)[0] = float("inf")  # non-finite g: 0 off the argmax, as torch's scatter
    (ours_grad,) = torch.autograd.grad(ours(x, kernel), x, grad_out)
    (ref_grad,) = torch.autograd.grad(ref(x, kernel), x, grad_out)
    assert torch.equal(ours_grad.nan_to_num(7.0), ref_grad.nan_to_num(7.0))


@pytest.mark.parametrize("name", ["max_pool1d", "max_pool2d"])
def test_tiled_windows_take_the_elementwise_path_both_ways(name):
    ours, _, spatial_dims = OPS[name]
    x = torch.randn(2, 3, *[8] * spatial_dims, requires_grad=True)
    with _ForwardOps() as ops:
        ours(x, 2)
    assert "maximum" in ops.names and not any(op.startswith("max_pool") for op in ops.names)
    counts = testing.backward_op_counts(lambda t: ours(t, 2), x)
    assert "scatter_add_" not in counts and counts.get("eq", 0) >= 2 ** spatial_dims  # a tap each
    assert not any(op.endswith("_backward") for op in counts), counts
    # a NaN in x: torch's max_pool decides (the last NaN of a window wins there)
    nan_x = x.detach().index_fill(-1, torch.tensor([0]), float("nan")).requires_grad_()
    with _ForwardOps() as ops:
        ours(nan_x, 2)
    assert any(op.startswith("max_pool") for op in ops.names)


# --- autocast of bfloat16 inputs, CUDA ------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPS))
def test_autocast_keeps_a_bfloat16_inputs_dtype_as_torch(name):
    # the standard checks run autocast on float32 inputs; here the input is bfloat16 already
    ours, ref, spatial_dims = OPS[name]
    x = torch.randn(2, 3, *[8] * spatial_dims, dtype=torch.bfloat16, requires_grad=True)
    kwargs = dict(return_indices=True) if name.startswith("max") else {}
    testing.assert_autocast_dtype_matches(lambda t: ours(t, 2, **kwargs),
                                          lambda t: ref(t, 2, **kwargs), x)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(OPS))
def test_cuda_matches_torch_and_autocast(name, dtype):
    ours, ref, spatial_dims = OPS[name]
    x = torch.randn(4, 3, *[9] * spatial_dims, device="cuda", dtype=dtype, requires_grad=True)
    kwargs = dict(return_indices=True) if name.startswith("max") else dict(ceil_mode=True)
    loose = {} if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)  # rounding order
    testing.assert_matches_reference(lambda t: ours(t, 3, 2, 1, **kwargs),
                                     lambda t: ref(t, 3, 2, 1, **kwargs), x, **loose)
    for autocast_dtype in (torch.float16, torch.bfloat16):
        testing.assert_autocast_dtype_matches(lambda t: ours(t, 2), lambda t: ref(t, 2), x,
                                              device_type="cuda", dtype=autocast_dtype)


# --- bad inputs ------------------------------------------------------------------------------

BAD = [  # name, input shape, args, kwargs, what the message names
    ("max_pool2d", (2, 3, 4, 4), (5,), {}, r"fit the input \(2, 3, 4, 4\)"),
    ("max_pool2d", (2, 3, 8, 8), (3,), dict(padding=2), r"padding <= kernel_size // 2"),
    ("max_pool2d", (8, 8), (2,), {}, r"input of shape .*got input \(8, 8\)"),
    ("max_pool2d", (1, 2, 3, 8, 8), (2,), {}, r"got input \(1, 2, 3, 8, 8\)"),
    ("max_pool2d", (2, 0, 8, 8), (2,), {}, r"non-zero channel.*got input \(2, 0, 8, 8\)"),
    ("max_pool2d", (2, 3, 8, 8), ((2, 2, 2),), {}, r"kernel_size as an int or a tuple of 2"),
    ("max_pool2d", (2, 3, 8, 8), (2,), dict(stride=0), r"stride > 0"),
    ("max_pool2d", (2, 3, 8, 8), (2,), dict(dilation=0), r"dilation > 0"),
    ("max_pool1d", (2, 3, 4), (5,), {}, r"fit the input \(2, 3, 4\)"),
    ("max_pool1d", (8,), (2,), {}, r"got input \(8\)"),
    ("max_pool1d", (2, 3, 8), (3,), dict(padding=2), r"padding <= kernel_size // 2"),
    ("avg_pool2d", (2, 3, 4, 4), (5,), {}, r"fit the input"),
    ("avg_pool2d", (2, 3, 8, 8), (3,), dict(padding=2), r"padding <= kernel_size // 2"),
    ("avg_pool2d", (2, 3, 8, 8), (2,), dict(divisor_override=0), r"divisor_override != 0"),
    ("avg_pool1d", (8,), (2,), {}, r"got input \(8\)"),
    ("avg_pool1d", (2, 3, 8), ((2, 2),), {}, r"kernel_size as an int or a tuple of 1"),
]


@pytest.mark.parametrize("name,shape,args,kwargs,message", BAD,
                         ids=[f"{b[0]}-{b[1]}-{b[2]}-{b[3]}" for b in BAD])
def test_bad_input_names_op_and_values(name, shape, args, kwargs, message):
    ours, ref, _ = OPS[name]
    x = torch.randn(shape)
    assert torch_raises(ref, x, *args, **kwargs)  # we refuse only what torch refuses
    with pytest.raises(F.ShapeError, match=rf"{name}: expected .*{message}"):
        ours(x, *args, **kwargs)
    with pytest.raises(RuntimeError):  # still what torch-facing code catches
        ours(x, *args, **kwargs)
