"""conv_transpose1d, conv_transpose2d: what is special to them. Values and gradients against
torch over drawn strides, paddings, output paddings, dilations and groups (each ∂W route),
output_padding past the stride, the adjoint relation itself, lean saves, skipped work, and the
error messages. The standard checks (gradcheck, vmap, compile, ...) run from
tests/test_rule_checks.py."""

from __future__ import annotations

import contextlib
import inspect

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainer
import trainer.functional as F
from trainer import testing
from trainer.functional._fast import conv as fast_conv

OURS = {1: F.conv_transpose1d, 2: F.conv_transpose2d}
TORCH = {1: torch_F.conv_transpose1d, 2: torch_F.conv_transpose2d}
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATHS = ["unfolded", "folded", "formula"]


@contextlib.contextmanager
def weight_grad_path(path: str):
    """Force one ∂L/∂W route (conv's: the unfolded matmul, the width-folded swapped
    convolution, or the rule's plain swapped convolution), each with g as conv's input."""
    saved = fast_conv.UNFOLD_MAX_ROWS, fast_conv.weight_grad
    fast_conv.UNFOLD_MAX_ROWS = 10**9 if path == "unfolded" else -1
    if path == "formula":
        fast_conv.weight_grad = lambda *args: None
    try:
        yield
    finally:
        fast_conv.UNFOLD_MAX_ROWS, fast_conv.weight_grad = saved


def with_options(op, **options):
    return lambda x, w, b: op(x, w, b, **options)


def test_signatures_are_torchs():
    for rank in (1, 2):
        assert list(inspect.signature(OURS[rank]).parameters) == [
            "input", "weight", "bias", "stride", "padding", "output_padding", "groups",
            "dilation"]


@st.composite
def configs(draw, rank):
    groups = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 2))
    out_per_group = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    # output_padding below stride or dilation, as torch requires
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    # padding that leaves at least one output position
    full = [(n - 1) * s + d * (k - 1) + o + 1 for n, s, d, k, o in
            zip(size, stride, dilation, kernel, output_padding)]
    padding = tuple(draw(st.integers(0, (f - 1) // 2)) for f in full)
    unbatched = draw(st.booleans())
    lead = () if unbatched else (draw(st.integers(1, 2)),)
    x = torch.randn(*lead, channels, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(channels, out_per_group, *kernel, dtype=torch.float64, requires_grad=True)
    b = (torch.randn(out_per_group * groups, dtype=torch.float64, requires_grad=True)
         if draw(st.booleans()) else None)
    options = {"stride": stride, "padding": padding, "output_padding": output_padding,
               "groups": groups, "dilation": dilation}
    return x, w, b, options


@pytest.mark.parametrize("rank", [1, 2])
@FAST
@given(data=st.data())
def test_matches_torch_on_drawn_configs(rank, data):
    x, w, b, options = data.draw(configs(rank))
    with weight_grad_path(data.draw(st.sampled_from(PATHS))):
        testing.assert_matches_reference(with_options(OURS[rank], **options),
                                         with_options(TORCH[rank], **options), x, w, b)


GRADCHECK_CONFIGS = [  # rank, x shape, w shape, options
    (1, (2, 2, 3), (2, 2, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    (1, (1, 4, 3), (4, 1, 2), {"groups": 2, "dilation": 3, "output_padding": 2}),  # op >= s
    (2, (1, 2, 2, 3), (2, 1, 2, 2), {"stride": (1, 2), "padding": (0, 1)}),
    (2, (2, 2, 3), (2, 2, 2, 3), {"stride": 2, "output_padding": 1}),  # unbatched 2-D
]


@pytest.mark.parametrize("rank,x_shape,w_shape,options", GRADCHECK_CONFIGS)
def test_gradcheck_and_gradgradcheck(rank, x_shape, w_shape, options):
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[1] * options.get("groups", 1), dtype=torch.float64,
                    requires_grad=True)
    testing.assert_gradcheck(with_options(OURS[rank], **options), x, w, b, fast_mode=True)


def test_is_the_adjoint_of_convolution():
    """⟨conv_transpose(x, W), y⟩ = ⟨x, conv(y, W)⟩: the relation the docstring builds on."""
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 2, dtype=torch.float64)
    options = {"stride": (2, 3), "padding": (1, 0), "dilation": (1, 2)}
    y = F.conv_transpose2d(x, w, output_padding=(1, 2), **options)
    probe = torch.randn_like(y)
    lhs = (y * probe).sum()
    rhs = (x * torch_F.conv2d(probe, w, **options)[..., :3, :5]).sum()
    torch.testing.assert_close(lhs, rhs)


def test_float32_realistic_shape_and_non_contiguous():
    x = torch.randn(4, 8, 9, 9, requires_grad=True)
    w = torch.randn(8, 6, 4, 4, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    op = with_options(F.conv_transpose2d, stride=2, padding=1)
    ref = with_options(torch_F.conv_transpose2d, stride=2, padding=1)
    testing.assert_matches_reference(op, ref, x, w, b, atol=1e-4)
    testing.assert_matches_reference(op, ref, testing.non_contiguous(x),
                                     testing.non_contiguous(w), b, atol=1e-4)


def test_empty_batch_gives_zero_weight_gradients():
    x = torch.randn(0, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    y = F.conv_transpose1d(x, w, b, stride=2)
    assert y.shape == torch_F.conv_transpose1d(x, w, b, stride=2).shape
    grads = torch.autograd.grad(y.sum(), (x, w, b))
    assert grads[0].shape == x.shape and not grads[1].any() and not grads[2].any()


def test_saves_only_what_the_gradients_need():
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    w = torch.randn(8, 4, 3, 3, requires_grad=True)
    ours = testing.saved_bytes(lambda: F.conv_transpose2d(x, w, None, 2))
    assert ours == x.nbytes + w.nbytes
    assert ours <= testing.saved_bytes(lambda: torch_F.conv_transpose2d(x, w, None, 2))
    assert testing.saved_bytes(lambda: F.conv_transpose2d(x, w.detach(), None, 2)) == w.nbytes
    assert testing.saved_bytes(lambda: F.conv_transpose2d(x.detach(), w, None, 2)) == x.nbytes


def test_needs_input_grad_skips_work():
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    w = torch.randn(16, 8, 3, 3, requires_grad=True)  # 8·3·3 rows > 64: the swapped conv
    b = torch.randn(8, requires_grad=True)
    op = with_options(F.conv_transpose2d, stride=2)
    with weight_grad_path("formula"):
        full = testing.backward_op_counts(op, x, w, b)
        only_x = testing.backward_op_counts(op, x, w.detach(), b.detach())
        only_w = testing.backward_op_counts(op, x.detach(), w, None)
    assert full.get("convolution", 0) == 2 and full.get("sum", 0) == 1
    assert only_x.get("convolution", 0) == 1 and "sum" not in only_x
    assert only_w.get("convolution", 0) == 1 and "sum" not in only_w


def test_explicit_routes_torchs_calls_to_the_rules():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    with trainer.explicit(strict=True) as report:
        y = torch.conv_transpose2d(x, w, None, 2, 1, 1)
        z = torch_F.conv_transpose1d(x[:, :, 0], w[..., 0], stride=3)
    assert report.explicit == {"conv_transpose2d": 1, "conv_transpose1d": 1}
    assert type(y.grad_fn).__name__ == "ConvTranspose2dBackward"
    torch.testing.assert_close(y, torch_F.conv_transpose2d(x, w, None, 2, 1, 1))
    torch.testing.assert_close(z, torch_F.conv_transpose1d(x[:, :, 0], w[..., 0], stride=3))


ERRORS = [  # call, what the message says
    (lambda x, w: F.conv_transpose2d(x[0, 0], w),
     r"conv_transpose2d: expected 3-D \(unbatched\) or 4-D \(batched\) input, got input \(4, 4\)"),
    (lambda x, w: F.conv_transpose2d(x, w[0]), r"expected 4-D weight \(in, out/groups, \*kernel\)"),
    (lambda x, w: F.conv_transpose2d(x, w[:2]),
     r"expected input with 2 channels for weight \(2, 2, 3, 3\), got input \(2, 3, 4, 4\)"),
    (lambda x, w: F.conv_transpose2d(x, w, groups=2),
     r"weight's in channels divisible by groups=2"),
    (lambda x, w: F.conv_transpose2d(x, w, torch.randn(3)),
     r"expected bias of shape \(2,\) for weight \(3, 2, 3, 3\) and groups=1, got bias \(3\)"),
    (lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=2),
     r"output_padding >= 0 and smaller than stride or dilation, got output_padding=\(2, 2\)"),
    (lambda x, w: F.conv_transpose2d(x, w, padding="same"), r"padding as an int or a tuple"),
    (lambda x, w: F.conv_transpose2d(x, w, padding=4),
     r"an output of size >= 1 in every spatial dim, got output size \(-2, -2\)"),
    (lambda x, w: F.conv_transpose2d(x, w, stride=0), r"expected positive stride"),
    (lambda x, w: F.conv_transpose2d(x.long(), w), r"input of a floating dtype"),
    (lambda x, w: F.conv_transpose2d(x, w.double()), r"weight of the input's dtype"),
    (lambda x, w: F.conv_transpose1d(x[0], w[..., 0], stride=(1, 2)),
     r"conv_transpose1d: expected stride as an int or a tuple of 1 ints"),
]


@pytest.mark.parametrize("call,message", ERRORS, ids=range(len(ERRORS)))
def test_bad_input_names_the_op_and_the_shapes(call, message):
    x, w = torch.randn(2, 3, 4, 4), torch.randn(3, 2, 3, 3)
    with pytest.raises(F.ShapeError, match=message):
        call(x, w)
