"""dropout: torch's semantics, mask statistics, a mask regenerated from a seed (never stored),
purity, vmap randomness, compile and in-place behaviour.

The mask cannot equal torch's bit for bit (a different random stream), so these tests check what
defines dropout: the keep rate, the exact 1/(1-p) scaling, grad = g·mask/(1-p), independence,
and reproducibility under torch.manual_seed.

The table's examples (tests/test_rule_checks.py) hold p = 0 and eval mode only, where torch's
values can be matched; every check of a random mask (p > 0, training) stays here.
"""

import inspect
import sys

import pytest
import torch
import torch.nn.functional as torch_F

import trainer.functional as F
from trainer import testing

dropout_module = sys.modules["trainer.functional.dropout"]  # the package re-exports the function


def randn(*shape, dtype=torch.float32, grad=True):
    return torch.randn(shape, dtype=dtype).requires_grad_(grad)


def seeded_dropout(p, seed=3, **kwargs):
    """dropout with the global RNG reset first: the same mask on every call."""
    def op(x):
        torch.manual_seed(seed)
        return F.dropout(x, p, **kwargs)
    return op


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_exact_scaling(p):
    x = randn(256, 512) + 5.0  # no zeros in x, so y != 0 is the mask
    y = F.dropout(x, p)
    keep = y != 0
    rate = keep.double().mean().item()
    assert abs(rate - (1 - p)) < 5 * ((p * (1 - p) / keep.numel()) ** 0.5)
    assert torch.equal(y[keep], x[keep] * (1.0 / (1.0 - p)))  # scaled by exactly 1/(1-p)
    assert torch.equal(y[~keep], torch.zeros_like(y[~keep]))


def test_scaling_equals_torch():
    x = torch.rand(4096) + 1.0
    ours, native = F.dropout(x, 0.3), torch_F.dropout(x, 0.3)
    ratio = (ours[ours != 0] / x[ours != 0])
    native_ratio = native[native != 0] / x[native != 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, native_ratio[0].item()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_grad_is_mask_times_scale_times_g(dtype):
    x = randn(64, 33, dtype=dtype)
    with torch.no_grad():
        x.add_(3.0)
    y = F.dropout(x, 0.25)
    assert y.dtype == dtype
    keep = y != 0
    g = testing.non_contiguous(torch.randn(64, 33, dtype=dtype))
    (grad,) = torch.autograd.grad(y, x, g)
    assert torch.equal(grad, (g * keep).mul_(1.0 / 0.75))


def test_mask_is_independent_of_position_and_of_the_previous_call():
    x = torch.ones(512, 512)
    first, second = F.dropout(x, 0.5) != 0, F.dropout(x, 0.5) != 0
    n = first.numel()
    for a, b in [(first.flatten()[1:], first.flatten()[:-1]),      # neighbours
                 (first[1:], first[:-1]),                           # rows apart
                 (first, second)]:                                  # consecutive calls
        corr = torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1]
        assert abs(corr) < 5 / n**0.5
    rows, cols = first.double().mean(1), first.double().mean(0)
    assert (rows - 0.5).abs().max() < 6 * 0.5 / 512**0.5  # no row or column is biased
    assert (cols - 0.5).abs().max() < 6 * 0.5 / 512**0.5


def test_reproducible_under_manual_seed():
    x = randn(32, 32)
    a, b = seeded_dropout(0.4, seed=1)(x), seeded_dropout(0.4, seed=1)(x)
    c = seeded_dropout(0.4, seed=2)(x)
    assert torch.equal(a, b)
    assert not torch.equal(a != 0, c != 0)


def test_non_contiguous_input_and_grad():
    x = randn(16, 24)
    strided = testing.non_contiguous(x)
    assert not strided.is_contiguous()
    # The mask is a function of the logical index, so the layout does not change it.
    assert torch.equal(seeded_dropout(0.3)(strided), seeded_dropout(0.3)(x))
    testing.assert_matches_reference(seeded_dropout(0.3), seeded_dropout(0.3), strided)


def test_gradcheck_and_gradgradcheck_with_a_fixed_mask():
    testing.assert_gradcheck(seeded_dropout(0.3), randn(4, 5, dtype=torch.float64))


def test_graph_of_a_random_mask_is_a_single_node():
    assert testing.assert_explicit_graph(F.dropout(randn(3, 4), 0.5)) == 2


def test_saves_a_seed_not_a_mask():
    x = randn(128, 256)
    ours = testing.saved_bytes(lambda: F.dropout(x, 0.1))
    native = testing.saved_bytes(lambda: torch_F.dropout(x, 0.1))
    assert ours == 4  # one int32 seed, whatever the size of x
    assert native == x.nbytes and ours < x.numel()  # below even a 1-byte mask


def test_backward_regenerates_the_mask_without_sampling():
    counts = testing.backward_op_counts(lambda x: F.dropout(x, 0.5), randn(8, 8))
    assert not any(name.startswith(("rand", "bernoulli")) for name in counts)
    assert counts.get("arange", 0) == 1  # the element counter the mask is hashed from


@pytest.mark.parametrize("kwargs", [{"training": False}, {"p": 0.0}, {"p": 0.0, "inplace": True},
                                    {"training": False, "inplace": True}])
def test_identity_cases_return_the_input_itself_like_torch(kwargs):
    x = randn(3, 4)
    assert F.dropout(x, **kwargs) is x
    assert torch_F.dropout(x, **kwargs) is x
    empty = randn(0, 4)
    assert F.dropout(empty, 0.5) is empty


def test_p_one_zeroes_everything_like_torch():
    x = torch.tensor([float("inf"), -1.0, 2.0, 0.0], requires_grad=True)
    y = F.dropout(x, 1.0)
    torch.testing.assert_close(y, torch_F.dropout(x, 1.0), equal_nan=True)  # inf·0 = nan
    assert torch.equal(torch.autograd.grad(y, x, torch.ones(4))[0], torch.zeros(4))


def test_inplace_mutates_like_torch():
    base = randn(64, 64, dtype=torch.float64)
    x = base * 1
    torch.manual_seed(7)
    y = F.dropout(x, 0.5, inplace=True)
    assert y is x
    assert y.grad_fn.next_functions[0][0].__class__.__name__ == "MulBackward0"  # base * 1
    torch.manual_seed(7)
    expected = F.dropout(base.detach(), 0.5)
    assert torch.equal(x, expected)
    (grad,) = torch.autograd.grad(y, base, torch.ones(64, 64, dtype=torch.float64))
    assert torch.equal(grad, (expected != 0) * 2.0)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        F.dropout(randn(3), 0.5, inplace=True)
    frozen = torch.ones(8)
    assert F.dropout(frozen, 0.5, inplace=True) is frozen


def test_vmap_randomness_like_torch():
    from torch.func import grad, vmap

    xs = torch.rand(6, 2000) + 1.0
    different = vmap(lambda r: F.dropout(r, 0.5), randomness="different")(xs) != 0
    assert all(not torch.equal(different[0], row) for row in different[1:])
    same = vmap(lambda r: F.dropout(r, 0.5), randomness="same")(xs) != 0
    assert all(torch.equal(same[0], row) for row in same[1:])
    with pytest.raises(RuntimeError, match="randomness"):
        vmap(lambda r: F.dropout(r, 0.5))(xs)

    def loss(w, x):
        return (F.dropout(x * w, 0.5) ** 2).sum()

    shared = torch.rand(2000) + 1.0  # not vmapped, yet one mask per sample
    per_sample = vmap(lambda r: F.dropout(shared, 0.5), randomness="different")(xs) != 0
    assert per_sample.shape == (6, 2000) and not torch.equal(per_sample[0], per_sample[1])
    inplace = vmap(lambda r: F.dropout(r * 1, 0.5, inplace=True), randomness="different")(xs)
    assert ((inplace == 0) | (inplace == xs * 2)).all()  # computed out of place there

    w = torch.rand(2000) + 1.0
    torch.manual_seed(4)
    per_sample = vmap(grad(loss), in_dims=(None, 0), randomness="different")(w, xs)
    torch.manual_seed(4)
    outputs = vmap(lambda x: F.dropout(x * w, 0.5), randomness="different")(xs)
    # d/dw Σ dropout(x·w)² = 2·y·mask·x/(1-p), with y the same sample's output
    torch.testing.assert_close(per_sample, 2 * outputs * (outputs != 0) * xs * 2.0)


def test_batched_grad_outputs():
    # autograd vmaps the backward over g alone (is_grads_batched): the regenerated mask is
    # not batched there, g is
    x = randn(6, 7, dtype=torch.float64)
    with torch.no_grad():
        x.add_(5.0)  # no zeros, so y != 0 is the mask
    y = F.dropout(x, 0.4)
    gs = torch.randn(5, 6, 7, dtype=torch.float64)
    (batched,) = torch.autograd.grad(y, x, gs, is_grads_batched=True, retain_graph=True)
    looped = torch.stack([torch.autograd.grad(y, x, g, retain_graph=True)[0] for g in gs])
    torch.testing.assert_close(batched, looped)
    assert torch.equal(looped, (gs * (y != 0)).mul_(1.0 / 0.6))


def test_compile_fullgraph_draws_its_seed_as_eager_does():
    x = randn(8, 16)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: F.dropout(x, 0.3), fullgraph=True, backend="aot_eager")
    # aot_eager draws the seed from the global RNG as eager does: same seed, same mask
    seeded = [lambda x: (torch.manual_seed(3), compiled(x))[1], seeded_dropout(0.3)]
    testing.assert_matches_reference(*seeded, x)  # values and grads

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: F.dropout(x * 1, 0.5, inplace=True), fullgraph=True,
                             backend="aot_eager")
    y = compiled(x)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(grad, (y != 0) * 2.0)
    assert not torch.equal(compiled(x) != 0, compiled(x) != 0)  # fresh randomness per call


def test_autocast_bf16_dtypes_with_a_random_mask():
    testing.assert_autocast_dtype_matches(lambda x: F.dropout(x, 0.2),
                                          lambda x: torch_F.dropout(x, 0.2), randn(4, 5))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_statistics_and_grad(dtype):
    x = (torch.rand(512, 512, device="cuda") + 1.0).to(dtype).requires_grad_()
    y = F.dropout(x, 0.2)
    keep = y != 0
    assert y.dtype == dtype and abs(keep.float().mean().item() - 0.8) < 0.01
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(grad, keep.to(dtype) * torch.tensor(1.0 / 0.8, dtype=dtype, device="cuda"))
    testing.assert_autocast_dtype_matches(lambda x: F.dropout(x, 0.2),
                                          lambda x: torch_F.dropout(x, 0.2), x.detach().float(),
                                          device_type="cuda", dtype=dtype if dtype != torch.float32
                                          else torch.float16)


def test_counter_stays_distinct_past_int32(monkeypatch):
    monkeypatch.setattr(dropout_module, "_INT32_COUNTER_LIMIT", 8)
    counter = dropout_module._counter(64, torch.device("cpu"))
    assert counter.dtype == torch.int32 and counter.unique().numel() == 64
    assert torch.equal(counter[:8], torch.arange(8, dtype=torch.int32))
    index = torch.tensor([(1 << 32) + 5], dtype=torch.int64)
    folded = torch.add(index, index >> 32, alpha=dropout_module._MIX_1) & 0xFFFFFFFF
    assert folded.item() != 5  # i and i + 2³² do not share a counter
    y = F.dropout(torch.ones(8, 8), 0.5)
    assert abs((y != 0).float().mean().item() - 0.5) < 0.25


def test_bad_inputs_name_the_op():
    x = torch.randn(3)
    for p in (-0.1, 1.5):
        expected = rf"dropout: expected dropout probability p in \[0, 1\], got p={p}"
        with pytest.raises(F.ShapeError, match=expected):
            F.dropout(x, p)
        with pytest.raises(ValueError):  # what torch raises
            F.dropout(x, p, training=False)
    with pytest.raises(RuntimeError, match="dropout: expected input of a floating dtype"):
        F.dropout(torch.arange(3), 0.5)


def test_signature_is_torchs():
    def params(fn):
        return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]

    assert params(F.dropout) == params(torch_F.dropout)
