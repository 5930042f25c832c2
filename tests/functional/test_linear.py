"""linear: what is special to it (shapes torch accepts, its saves, its op counts, per-sample
weight gradients). The standard checks run for it, as for every rule, from the table's examples
(tests/test_rule_checks.py)."""

import pytest
import torch
import torch.nn.functional as torch_F

import trainer.functional as F
from trainer import testing

SHAPES = [  # (input shape, weight shape, has bias)
    ((4, 5), (3, 5), True),
    ((1, 5), (3, 5), False),          # batch 1
    ((2, 3, 5), (1, 5), True),        # extra leading dim, one output
    ((0, 5), (3, 5), True),           # empty batch
    ((4, 1), (2, 1), True),           # size-1 features
    ((4, 5), (5,), False),            # 1-D weight, as torch allows
]


def make(shape_x, shape_w, bias, dtype):
    x = torch.randn(shape_x, dtype=dtype, requires_grad=True)
    w = torch.randn(shape_w, dtype=dtype, requires_grad=True)
    b = torch.randn(shape_w[0] if len(shape_w) == 2 else (), dtype=dtype, requires_grad=True) if bias else None
    return x, w, b


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape_x,shape_w,bias", SHAPES)
def test_matches_torch(shape_x, shape_w, bias, dtype):
    x, w, b = make(shape_x, shape_w, bias, dtype)
    testing.assert_matches_reference(F.linear, torch_F.linear, x, w, b)
    testing.assert_matches_reference(F.linear, torch_F.linear, testing.non_contiguous(x), w, b)


def test_graph_is_a_single_node():
    x, w, b = make((2, 3, 5), (4, 5), True, torch.float32)
    assert testing.assert_explicit_graph(F.linear(x, w, b)) == 4  # LinearBackward + 3 leaves


def test_saves_only_what_the_gradients_need():
    x, w, b = make((64, 32), (16, 32), True, torch.float32)
    both = testing.saved_bytes(lambda: F.linear(x, w, b))
    assert both == x.nbytes + w.nbytes
    frozen = w.detach()
    assert testing.saved_bytes(lambda: F.linear(x, frozen, b.detach())) == frozen.nbytes
    no_x = x.detach()
    assert testing.saved_bytes(lambda: F.linear(no_x, w, b)) == no_x.nbytes


def test_needs_input_grad_skips_each_mm_and_sum():
    x, w, b = make((8, 5), (3, 5), True, torch.float32)
    full = testing.backward_op_counts(F.linear, x, w, b)
    only_x = testing.backward_op_counts(F.linear, x, w.detach(), b.detach())
    assert full.get("mm", 0) == 2 and full.get("sum", 0) == 1
    assert only_x.get("mm", 0) == 1 and "sum" not in only_x


def test_vmap_per_sample_weight_grads():
    # the standard vmap check differentiates the batched input alone
    w = torch.randn(3, 5, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    xs, ys = torch.randn(6, 5), torch.randn(6, 3)

    def loss(w, b, x, y):
        return ((F.linear(x, w, b) - y) ** 2).sum()

    testing.assert_vmap_matches_loop(loss, [w, b], [xs, ys])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_matches_torch_and_autocast(dtype):
    x, w, b = (t.detach().cuda().requires_grad_() for t in make((4, 5), (3, 5), True, torch.float32))
    testing.assert_matches_reference(F.linear, torch_F.linear, x, w, b)
    testing.assert_autocast_dtype_matches(F.linear, torch_F.linear, x, w, b, device_type="cuda", dtype=dtype)


def test_bad_shape_names_op_and_shapes():
    with pytest.raises(F.ShapeError, match=r"linear: expected input of shape \(\*, 5\).*got input \(4, 6\)"):
        F.linear(torch.randn(4, 6), torch.randn(3, 5))
    with pytest.raises(RuntimeError):  # still what torch-facing code catches
        F.linear(torch.randn(4, 5), torch.randn(3, 5), torch.randn(4))
