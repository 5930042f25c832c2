"""conv1d, conv2d: what the standard checks (tests/test_rule_checks.py, over the table's
examples) do not cover. Drawn configs against torch, each ∂W route (per sample, one matmul,
folded, the formula) under gradcheck, vmap and compile, the exact bytes kept and ops run per
needs_input_grad, low precision, edge shapes, and signatures."""

from __future__ import annotations

import contextlib
import inspect

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.functional as F
from trainer import testing
from trainer.functional._fast import conv as fast_conv

OURS = {1: F.conv1d, 2: F.conv2d}
TORCH = {1: torch_F.conv1d, 2: torch_F.conv2d}

# torch warns that 'same' with an even kernel pads a copy of the input; that is the behaviour
# under test, not a problem.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


PATHS = ["per_sample", "one_matmul", "folded", "formula"]


@contextlib.contextmanager
def weight_grad_path(path: str):
    """Force one ∂L/∂W formulation, so that each is tested on every config: the unfolded input
    times g per sample, or in one matmul over all samples (trainer.functional._fast.conv), the
    swapped convolution folded into the width (on CPU), or the rule's plain formula."""
    saved = fast_conv.UNFOLD_MAX_ROWS, fast_conv.PER_SAMPLE_MIN_WORK, fast_conv.weight_grad
    fast_conv.UNFOLD_MAX_ROWS, fast_conv.PER_SAMPLE_MIN_WORK = {
        "per_sample": (10**9, 0), "one_matmul": (10**9, 10**9), "folded": (-1, 0),
        "formula": (-1, 0)}[path]
    if path == "formula":
        fast_conv.weight_grad = lambda *args: None
    try:
        yield
    finally:
        fast_conv.UNFOLD_MAX_ROWS, fast_conv.PER_SAMPLE_MIN_WORK, fast_conv.weight_grad = saved


def make(rank, batch, channels, out_channels, kernel, size, groups=1, bias=True,
         dtype=torch.float64, unbatched=False):
    lead = () if unbatched else (batch,)
    x = torch.randn(*lead, channels, *(size,) * rank, dtype=dtype, requires_grad=True)
    w = torch.randn(out_channels, channels // groups, *(kernel,) * rank, dtype=dtype,
                    requires_grad=True)
    b = torch.randn(out_channels, dtype=dtype, requires_grad=True) if bias else None
    return x, w, b


def with_options(op, **options):
    return lambda x, w, b: op(x, w, b, **options)


@st.composite
def conv_configs(draw, rank):
    groups = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank)) if padding != "same" else 1
    if padding == "int":
        padding = draw(st.integers(0, 2))
    elif padding == "tuple":
        padding = tuple(draw(st.integers(0, 2)) for _ in range(rank))
    pads = (0,) * rank if isinstance(padding, str) else padding
    pads = (pads,) * rank if isinstance(pads, int) else pads
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    size = tuple(max(1, s - 2 * p) + draw(st.integers(0, 4)) for s, p in zip(spans, pads))
    unbatched = draw(st.booleans())
    batch = draw(st.integers(1, 3))
    x = torch.randn(*(() if unbatched else (batch,)), channels, *size, dtype=torch.float64,
                    requires_grad=True)
    w = torch.randn(out_channels, channels // groups, *kernel, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True)
    b = b if draw(st.booleans()) else None
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, w, b, options


@pytest.mark.parametrize("rank", [1, 2])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_matches_torch_on_drawn_configs(rank, data):
    x, w, b, options = data.draw(conv_configs(rank))
    with weight_grad_path(data.draw(st.sampled_from(PATHS))):
        testing.assert_matches_reference(with_options(OURS[rank], **options),
                                         with_options(TORCH[rank], **options), x, w, b)


@pytest.mark.parametrize("rank", [1, 2])
def test_float32_realistic_shape_and_non_contiguous(rank):
    x, w, b = make(rank, 8, 6, 10, 3, 12, dtype=torch.float32)
    op, ref = with_options(OURS[rank], padding=1), with_options(TORCH[rank], padding=1)
    testing.assert_matches_reference(op, ref, x, w, b, atol=1e-4)
    nc_x, nc_w = testing.non_contiguous(x), testing.non_contiguous(w)
    assert not nc_x.is_contiguous() and not nc_w.is_contiguous()
    testing.assert_matches_reference(op, ref, nc_x, nc_w, b, atol=1e-4)  # grads non-contiguous too
    testing.assert_matches_reference(op, ref, x, w, b, atol=1e-4, contiguous_grad=True)


GRADCHECK_CONFIGS = [  # (rank, channels, out, kernel, size, options, unbatched, path)
    (2, 2, 2, 2, 3, {}, False, "per_sample"),
    (2, 2, 2, 2, 3, {}, False, "folded"),
    (2, 1, 2, 2, 4, {"stride": 2, "padding": 1}, False, "folded"),
    (2, 2, 2, 3, 6, {"stride": 2, "padding": 1}, False, "folded"),  # stride leftover: cropped
    (2, 4, 2, 2, 3, {"groups": 2, "dilation": (1, 2), "padding": (0, 1)}, False, "one_matmul"),
    (2, 4, 2, 2, 3, {"groups": 2, "dilation": (2, 1), "padding": (1, 0)}, False, "folded"),
    (2, 1, 1, 2, 3, {"padding": "same"}, False, "per_sample"),  # even kernel: asymmetric
    (1, 2, 2, 4, 5, {"padding": "same"}, False, "folded"),
    (1, 2, 2, 2, 5, {"dilation": 2, "stride": 2}, False, "folded"),  # not width-interleaved
    (1, 2, 3, 3, 6, {"stride": 2, "dilation": 2, "padding": 2}, True, "one_matmul"),
    (1, 4, 2, 2, 5, {"groups": 2, "padding": 1}, False, "per_sample"),
]


@pytest.mark.parametrize("rank,channels,out,kernel,size,options,unbatched,path", GRADCHECK_CONFIGS)
def test_each_weight_grad_path_passes_gradcheck_and_gradgradcheck(rank, channels, out, kernel,
                                                                  size, options, unbatched, path):
    groups = options.get("groups", 1)
    x, w, b = make(rank, 2, channels, out, kernel, size, groups=groups, unbatched=unbatched)
    with weight_grad_path(path):
        # fast mode checks random projections of the Jacobians: the same maths, a tenth the time
        testing.assert_gradcheck(with_options(OURS[rank], **options), x, w, b, fast_mode=True)


@pytest.mark.parametrize("rank", [1, 2])
def test_same_padding_and_unbatched_are_a_single_node(rank):
    # the standard checks see a graph of project Functions; here: no pad node of its own
    x, w, b = make(rank, 2, 3, 4, 3, 6, dtype=torch.float32)
    out = OURS[rank](x, w, b, padding="same")
    assert testing.assert_explicit_graph(out) == 4  # the conv node + 3 leaves
    sample = x[0].detach().requires_grad_()
    assert testing.assert_explicit_graph(OURS[rank](sample, w, b)) == 4  # unbatched too


def test_saves_only_what_the_gradients_need_and_no_more_than_torch():
    x, w, b = make(2, 16, 8, 16, 3, 14, dtype=torch.float32)
    ours = testing.saved_bytes(lambda: F.conv2d(x, w, b, padding=1))
    native = testing.saved_bytes(lambda: torch_F.conv2d(x, w, b, padding=1))
    assert ours == x.nbytes + w.nbytes <= native
    frozen = w.detach()  # only ∂L/∂x is needed: W alone
    assert testing.saved_bytes(lambda: F.conv2d(x, frozen, b, padding=1)) == frozen.nbytes
    assert testing.saved_bytes(lambda: torch_F.conv2d(x, frozen, b, padding=1)) > frozen.nbytes
    data = x.detach()  # only ∂L/∂W is needed: x alone
    assert testing.saved_bytes(lambda: F.conv2d(data, w, b, padding=1)) == data.nbytes
    # 'same' with an even kernel: torch saves its padded copy of x, we save x itself
    even = torch.randn(16, 8, 2, 2, requires_grad=True)
    ours_same = testing.saved_bytes(lambda: F.conv2d(x, even, padding="same"))
    assert ours_same == x.nbytes + even.nbytes
    assert ours_same < testing.saved_bytes(lambda: torch_F.conv2d(x, even, padding="same"))


def test_needs_input_grad_skips_each_convolution_and_sum():
    x, w, b = make(2, 4, 16, 8, 3, 6, dtype=torch.float32)  # 16·3·3 rows: swapped ∂L/∂W
    conv = with_options(F.conv2d, padding=1)
    full = testing.backward_op_counts(conv, x, w, b)
    only_x = testing.backward_op_counts(conv, x, w.detach(), b.detach())
    only_w = testing.backward_op_counts(conv, x.detach(), w, None)
    assert full.get("convolution", 0) == 2 and full.get("sum", 0) == 1
    assert only_x.get("convolution", 0) == 1 and "sum" not in only_x
    assert only_w.get("convolution", 0) == 1 and "sum" not in only_w
    with weight_grad_path("one_matmul"):
        full = testing.backward_op_counts(conv, x, w, b)
        only_w = testing.backward_op_counts(conv, x.detach(), w, None)
        only_x = testing.backward_op_counts(conv, x, w.detach(), None)
    # the bias gradient rides in the weight's matmul (a row of ones): no separate sum over g
    assert full.get("convolution", 0) == 1 and full.get("bmm", 0) == 1 and "sum" not in full
    assert "convolution" not in only_w and only_w.get("bmm", 0) == 1
    assert "bmm" not in only_x and only_x.get("convolution", 0) == 1


@pytest.mark.parametrize("rank", [1, 2])
def test_vmap_per_sample_grads_on_each_weight_grad_path(rank):
    _, w, b = make(rank, 1, 4, 3, 3, 6, dtype=torch.float32)
    xs = torch.randn(5, 4, *(7,) * rank)
    ys = torch.randn(5, 3, *(3,) * rank)

    def loss(w, b, x, y):  # one unbatched sample
        return ((OURS[rank](x, w, b, stride=2, padding="valid") - y) ** 2).sum()

    for path in PATHS:
        with weight_grad_path(path):
            testing.assert_vmap_matches_loop(loss, [w, b], [xs, ys], rtol=1e-4, atol=1e-4)


def test_compile_fullgraph_matches_eager_on_each_weight_grad_path():
    x, w, b = make(2, 2, 4, 4, 2, 6, groups=2, dtype=torch.float32)
    with weight_grad_path("per_sample"):
        testing.assert_compile_matches_eager(with_options(F.conv2d, padding="same", groups=2),
                                             x, w, b, atol=1e-4)
    x, w, b = make(1, 2, 3, 8, 3, 9, dtype=torch.float32)
    for path in ("one_matmul", "folded", "formula"):
        with weight_grad_path(path):
            testing.assert_compile_matches_eager(with_options(F.conv1d, stride=2, padding=1),
                                                 x, w, b, atol=1e-4)


@pytest.mark.parametrize("rank", [1, 2])
def test_autocast_bf16_values_are_torchs(rank):
    x, w, b = make(rank, 2, 3, 4, 3, 6, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = OURS[rank](x, w, b)
        ref = TORCH[rank](x, w, b)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_dtypes(rank, dtype):
    x, w, b = make(rank, 2, 3, 4, 3, 6, dtype=dtype)
    testing.assert_matches_reference(with_options(OURS[rank], padding=1),
                                     with_options(TORCH[rank], padding=1), x, w, b,
                                     atol=1e-4 if dtype == torch.float32 else 0.1, rtol=2e-2)


EDGE_SHAPES = [  # (rank, batch, channels, out, kernel, size)
    (2, 1, 1, 1, 1, 1),   # batch 1, every dim size 1
    (2, 1, 3, 2, 5, 5),   # kernel as large as the input
    (1, 1, 2, 1, 1, 7),
    (2, 2, 1, 3, 3, 3),
]


@pytest.mark.parametrize("rank,batch,channels,out,kernel,size", EDGE_SHAPES)
def test_edge_shapes(rank, batch, channels, out, kernel, size):
    x, w, b = make(rank, batch, channels, out, kernel, size)
    testing.assert_matches_reference(OURS[rank], TORCH[rank], x, w, b)


@pytest.mark.parametrize("rank", [1, 2])
def test_empty_batch_gives_zero_grads(rank):
    x, w, b = make(rank, 0, 3, 4, 3, 5)
    out = OURS[rank](x, w, b, padding=1)
    assert out.shape == TORCH[rank](x, w, b, padding=1).shape == (0, 4, *(5,) * rank)
    gx, gw, gb = torch.autograd.grad(out.sum(), [x, w, b])
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    assert not gw.any() and not gb.any()


@pytest.mark.parametrize("rank", [1, 2])
def test_unbatched_matches_batched_and_torch(rank):
    x, w, b = make(rank, 1, 3, 4, 3, 6, unbatched=True)
    out = OURS[rank](x, w, b, stride=2)
    assert out.shape == TORCH[rank](x, w, b, stride=2).shape == (4, *(2,) * rank)
    testing.assert_matches_reference(with_options(OURS[rank], stride=2),
                                     with_options(TORCH[rank], stride=2), x, w, b)


def test_same_padding_with_even_kernel_is_asymmetric_like_torch():
    x = torch.arange(10.0).reshape(1, 1, 10)
    out = F.conv1d(x, torch.ones(1, 1, 4), padding="same")
    torch.testing.assert_close(out, torch_F.conv1d(torch_F.pad(x, (1, 2)), torch.ones(1, 1, 4)))
    assert out[0, 0, 0] == 0 + 1 + 2 and out[0, 0, -1] == 8 + 9  # one zero before, two after


def test_every_keyword_option_by_name():
    x, w, b = make(2, 2, 4, 6, 3, 9, groups=2)
    kwargs = {"input": x, "weight": w, "bias": b, "stride": (2, 1), "padding": (1, 2),
              "dilation": (2, 1), "groups": 2}
    torch.testing.assert_close(F.conv2d(**kwargs), torch_F.conv2d(**kwargs))
    torch.testing.assert_close(F.conv2d(x, w, b, 1, "same", 2, 2),
                               torch_F.conv2d(x, w, b, 1, "same", 2, 2))
    torch.testing.assert_close(F.conv1d(x[:, :, 0], w[:, :, 0], None, [3], [1], [2], 2),
                               torch_F.conv1d(x[:, :, 0], w[:, :, 0], None, [3], [1], [2], 2))


@pytest.mark.parametrize("op", [F.conv1d, F.conv2d])
def test_signature_is_torchs(op):
    params = inspect.signature(op).parameters
    assert list(params) == ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
    assert [p.default for p in list(params.values())[2:]] == [None, 1, 0, 1, 1]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params.values())


def test_weight_grad_paths_agree_on_a_large_config():
    x, w, b = make(2, 3, 12, 8, 3, 9, groups=2)
    grads = {}
    for path in PATHS:
        with weight_grad_path(path):
            out = F.conv2d(x, w, b, stride=2, padding=1, dilation=(2, 1), groups=2)
            grads[path] = torch.autograd.grad(out, [w, b], torch.ones_like(out))
    for path in PATHS[1:]:
        torch.testing.assert_close(grads[path], grads[PATHS[0]])
    assert grads["formula"][0].abs().sum() > 0


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rank", [1, 2])
def test_cuda_matches_torch_and_autocast(rank, dtype):
    x, w, b = (t.detach().cuda().requires_grad_()
               for t in make(rank, 4, 6, 8, 3, 10, dtype=torch.float32))
    for path in PATHS:
        with weight_grad_path(path):
            testing.assert_matches_reference(with_options(OURS[rank], padding="same"),
                                             with_options(TORCH[rank], padding="same"), x, w, b,
                                             rtol=1e-3, atol=1e-3)
    testing.assert_autocast_dtype_matches(OURS[rank], TORCH[rank], x, w, b, device_type="cuda",
                                          dtype=dtype)


def bad(op, x_shape, w_shape, b_shape=None, x_dtype=torch.float32, **options):
    args = (torch.randn(x_shape, dtype=x_dtype), torch.randn(w_shape),
            None if b_shape is None else torch.randn(b_shape))
    return op, args, options


BAD = [  # ((op name, args, options), message pattern)
    (bad("conv2d", (2, 3, 5, 5), (4, 2, 3, 3)),
     r"conv2d: expected input with 2 channels for weight \(4, 2, 3, 3\).*got input \(2, 3, 5, 5\)"),
    (bad("conv2d", (2, 4, 5, 5), (3, 2, 3, 3), groups=2),
     r"conv2d: expected weight's out channels divisible by groups=2.*got weight \(3, 2, 3, 3\)"),
    (bad("conv2d", (2, 4, 5, 5), (4, 4, 3, 3), stride=2, padding="same"),
     r"conv2d: expected stride 1 with padding='same'.*got stride=\(2, 2\)"),
    (bad("conv1d", (2, 4, 5), (4, 4, 3), padding="full"),
     r"conv1d: expected padding 'same', 'valid'.*got padding='full'"),
    (bad("conv2d", (4, 5), (3, 4, 3, 3)),
     r"conv2d: expected 3-D \(unbatched\) or 4-D \(batched\) input, got input \(4, 5\)"),
    (bad("conv1d", (2, 4, 5, 5), (3, 4, 3)),
     r"conv1d: expected 2-D \(unbatched\) or 3-D \(batched\) input, got input \(2, 4, 5, 5\)"),
    (bad("conv2d", (2, 4, 5, 5), (3, 4, 3)),
     r"conv2d: expected 4-D weight.*got weight \(3, 4, 3\)"),
    (bad("conv2d", (2, 4, 2, 2), (3, 4, 3, 3)),
     (r"conv2d: expected padded input size >= dilated kernel size \(3, 3\).*got padded input "
     r"size \(2, 2\)")),
    (bad("conv2d", (2, 4, 5, 5), (3, 4, 3, 3), (4,)),
     r"conv2d: expected bias of shape \(3,\).*got bias \(4\)"),
    (bad("conv2d", (2, 4, 5, 5), (3, 4, 3, 3), padding=-1),
     r"conv2d: expected non-negative padding, got padding=\(-1, -1\)"),
    (bad("conv2d", (2, 4, 5, 5), (3, 4, 3, 3), stride=0),
     r"conv2d: expected positive stride, got stride=\(0, 0\)"),
    (bad("conv2d", (2, 4, 5, 5), (3, 4, 3, 3), dilation=(1, 1, 1)),
     r"conv2d: expected dilation as an int or a tuple of 2 ints"),
    (bad("conv2d", (2, 4, 5, 5), (3, 4, 3, 3), groups=0),
     r"conv2d: expected groups a positive int, got groups=0"),
    (bad("conv2d", (2, 4, 5, 5), (3, 4, 3, 3), x_dtype=torch.float64),
     (r"conv2d: expected weight of the input's dtype torch.float64, got weight of dtype "
     r"torch.float32")),
    (bad("conv2d", (2, 4, 0, 5), (3, 4, 1, 1), padding=1),
     r"conv2d: expected non-empty spatial dims"),
]


@pytest.mark.parametrize("call,pattern", BAD)
def test_bad_input_names_op_and_values(call, pattern):
    name, args, options = call
    with pytest.raises(F.ShapeError, match=pattern):
        getattr(F, name)(*args, **options)
    with pytest.raises(RuntimeError):  # torch refuses the same input, and so is caught the same
        getattr(torch_F, name)(*args, **options)
