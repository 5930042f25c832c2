"""embedding: what the standard checks (tests/test_rule_checks.py, over the table's examples)
do not cover. Values over index shapes (0-d, empty) and dtypes, what each gradient rule gives,
gradgradcheck where the gradient is not the derivative, exact bytes and ops, per-sample weight
gradients over batched indices, bfloat16 weights, max_norm, sparse gradients and errors."""

import pytest
import torch
import torch.nn.functional as torch_F

import trainer.functional as F
from trainer import testing

INDEX_SHAPES = [(6,), (2, 3), (2, 2, 2), (), (0,), (0, 3)]  # scalar and empty included
OPTIONS = [
    {},
    dict(padding_idx=1),
    dict(padding_idx=-2),          # counted from the end, as torch
    dict(scale_grad_by_freq=True),
    dict(scale_grad_by_freq=True, padding_idx=0),
]


def make(index_shape, dtype, num=7, dim=4, index_dtype=torch.int64):
    weight = torch.randn(num, dim, dtype=dtype, requires_grad=True)
    # small range so that indices repeat and padding/frequency scaling have work to do
    index = torch.randint(0, 3, index_shape, dtype=index_dtype)
    return index, weight


def pair(**kwargs):
    def ours(index, weight):
        return F.embedding(index, weight, **kwargs)

    def ref(index, weight):
        return torch_F.embedding(index, weight, **kwargs)
    return ours, ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kwargs", OPTIONS)
@pytest.mark.parametrize("index_shape", INDEX_SHAPES)
def test_matches_torch(index_shape, kwargs, dtype):
    index, weight = make(index_shape, dtype)
    testing.assert_matches_reference(*pair(**kwargs), index, weight)
    if index.dim():
        testing.assert_matches_reference(*pair(**kwargs), testing.non_contiguous(index), weight)


def test_int32_indices_and_non_contiguous_weight():
    index, weight = make((3, 4), torch.float32, index_dtype=torch.int32)
    testing.assert_matches_reference(*pair(padding_idx=2), index, weight)
    wide = testing.non_contiguous(weight.detach()).requires_grad_()
    testing.assert_matches_reference(*pair(), index, wide)


def test_gradient_rules_are_what_they_say():
    weight = torch.randn(5, 3, requires_grad=True)
    index = torch.tensor([0, 2, 2, 2, 4])
    g = torch.arange(15.0).reshape(5, 3)
    (plain,) = torch.autograd.grad(F.embedding(index, weight), weight, g)
    torch.testing.assert_close(plain[2], g[1] + g[2] + g[3])
    assert not plain[1].any() and not plain[3].any()
    (scaled,) = torch.autograd.grad(F.embedding(index, weight, scale_grad_by_freq=True), weight, g)
    torch.testing.assert_close(scaled[2], (g[1] + g[2] + g[3]) / 3)
    torch.testing.assert_close(scaled[0], g[0])
    (padded,) = torch.autograd.grad(F.embedding(index, weight, padding_idx=2), weight, g)
    assert not padded[2].any() and torch.equal(padded[4], g[4])


@pytest.mark.parametrize("kwargs", OPTIONS[1:])
def test_gradgradcheck_where_the_gradient_is_not_the_derivative(kwargs):
    index, weight = make((2, 3), torch.float64)
    ours, _ = pair(**kwargs)
    # padding and frequency scaling are deliberately not the derivative of the lookup (torch's
    # note), so finite differences only check the second order: the backward's own derivative
    # (the standard checks skip gradcheck and gradgradcheck both on those examples)
    assert torch.autograd.gradgradcheck(lambda w: ours(index, w), (weight,))


def test_graph_is_a_single_node():
    index, weight = make((2, 3), torch.float32)
    assert testing.assert_explicit_graph(F.embedding(index, weight, padding_idx=0)) == 2


def test_saves_only_the_indices():
    index, weight = make((64, 16), torch.float32, num=100)
    saved = testing.saved_bytes(lambda: F.embedding(index, weight, scale_grad_by_freq=True))
    assert saved == index.nbytes
    assert saved <= testing.saved_bytes(lambda: torch_F.embedding(index, weight))
    assert testing.saved_bytes(lambda: F.embedding(index, weight.detach())) == 0


def test_backward_does_only_the_work_asked_for():
    index, weight = make((4, 5), torch.float32)
    plain = testing.backward_op_counts(F.embedding, index, weight)
    assert plain.get("index_add_", 0) == 1 and "reciprocal" not in plain and "zero_" not in plain
    scaled = testing.backward_op_counts(pair(scale_grad_by_freq=True)[0], index, weight)
    assert scaled.get("reciprocal", 0) == 1
    padded = testing.backward_op_counts(pair(padding_idx=0)[0], index, weight)
    assert padded.get("zero_", 0) == 1 and "reciprocal" not in padded
    # a frozen table: the index is not even kept, so backward has nothing to do
    frozen = weight.detach()
    assert testing.saved_bytes(lambda: F.embedding(index, frozen)) == 0
    assert not F.embedding(index, frozen).requires_grad


def test_vmap_per_sample_weight_grads_over_batched_indices():
    # the standard vmap check batches the first differentiable input (here the weight)
    weight = torch.randn(9, 4, requires_grad=True)
    indices, targets = torch.randint(0, 9, (5, 3)), torch.randn(5, 3, 4)

    def loss(w, index, t):
        return (F.embedding(index, w, padding_idx=0, scale_grad_by_freq=True) * t).sum()

    testing.assert_vmap_matches_loop(loss, [weight], [indices, targets])


def test_autocast_keeps_a_bfloat16_weights_dtype_as_torch():
    index, weight = make((3, 4), torch.float32)
    low = weight.detach().bfloat16().requires_grad_()
    testing.assert_autocast_dtype_matches(*pair(scale_grad_by_freq=True), index, low)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_max_norm_renormalizes_rows_in_place_like_torch(norm_type):
    weight = torch.randn(8, 5) * 3
    index = torch.tensor([[1, 2, 1], [7, 2, 0]])
    ours_weight, ref_weight = weight.clone().requires_grad_(), weight.clone().requires_grad_()
    ours = F.embedding(index, ours_weight, max_norm=1.5, norm_type=norm_type)
    ref = torch_F.embedding(index, ref_weight, max_norm=1.5, norm_type=norm_type)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours_weight, ref_weight)  # the same rows rescaled
    assert torch.equal(ours_weight[3:7], weight[3:7])  # rows never looked up are untouched
    assert not torch.equal(ours_weight[1], weight[1])
    g = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, ours_weight, g)[0],
                               torch.autograd.grad(ref, ref_weight, g)[0])


def test_max_norm_compiles():
    index, weight = make((3, 4), torch.float32)
    with torch.no_grad():
        weight.mul_(3)
    testing.assert_compile_matches_eager(lambda i, w: F.embedding(i, w, max_norm=1.0),
                                         index, weight)


@pytest.mark.parametrize("padding_idx", [None, 1])
def test_sparse_gradient_like_torch(padding_idx):
    index, weight = make((3, 4), torch.float64)
    ours_weight, ref_weight = (weight.detach().clone().requires_grad_() for _ in range(2))
    g = torch.randn(3, 4, 4, dtype=torch.float64)
    F.embedding(index, ours_weight, padding_idx=padding_idx, sparse=True).backward(g)
    torch_F.embedding(index, ref_weight, padding_idx=padding_idx, sparse=True).backward(g)
    assert ours_weight.grad.layout == torch.sparse_coo
    assert ours_weight.grad._nnz() == ref_weight.grad._nnz()
    torch.testing.assert_close(ours_weight.grad.to_dense(), ref_weight.grad.to_dense())


def test_errors_name_embedding_and_the_range():
    weight = torch.randn(10, 3)
    for bad in (torch.tensor([[1, 10]]), torch.tensor([-1, 2])):
        with pytest.raises(IndexError, match=r"embedding: expected indices in \[0, 10\) for "
                                             r"num_embeddings=10, got indices in \[-?\d+, \d+\]"):
            F.embedding(bad, weight)
        with pytest.raises(F.ShapeError):  # the project's own error type too
            F.embedding(bad, weight)
        with pytest.raises(IndexError):  # what torch raises for the same mistake
            torch_F.embedding(bad, weight)
    with pytest.raises(IndexError, match=r"num_embeddings=10"):  # before any row is rescaled
        F.embedding(torch.tensor([12]), weight, max_norm=1.0)
    with pytest.raises(AssertionError, match=r"embedding: expected padding_idx in \[-10, 10\)"):
        F.embedding(torch.tensor([1]), weight, padding_idx=10)
    with pytest.raises(F.ShapeError, match=r"embedding: expected weight of shape "
                                           r"\(num_embeddings, embedding_dim\), got weight \(10\)"):
        F.embedding(torch.tensor([1]), torch.randn(10))
    with pytest.raises(F.ShapeError, match=r"embedding: .*int64 or torch.int32.*float32"):
        F.embedding(torch.tensor([1.0]), weight)
    with pytest.raises(F.ShapeError, match=r"embedding: .*scale_grad_by_freq=False with "
                                           r"sparse=True"):
        F.embedding(torch.tensor([1]), weight.requires_grad_(), sparse=True,
                    scale_grad_by_freq=True)


@pytest.mark.cuda
def test_cuda_matches_torch_and_autocast():
    index, weight = make((3, 4), torch.float32)
    index, weight = index.cuda(), weight.detach().cuda().requires_grad_()
    testing.assert_matches_reference(*pair(padding_idx=0, scale_grad_by_freq=True), index, weight)
    testing.assert_autocast_dtype_matches(*pair(), index, weight, device_type="cuda",
                                          dtype=torch.float16)
