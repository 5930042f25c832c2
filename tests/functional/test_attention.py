"""scaled_dot_product_attention: values, gradients, masks, dropout, purity, lean saves, vmap,
compile and autocast against torch."""

import inspect
import math

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.functional as F
from trainer import testing
from trainer.functional import _batch_chunks

sdpa, torch_sdpa = F.scaled_dot_product_attention, torch_F.scaled_dot_product_attention


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny ops on a shared 2-core machine: a second OpenMP thread only waits for a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_chunks(monkeypatch):
    """Make every call walk the batch in several parts, as large inputs do."""
    monkeypatch.setattr(_batch_chunks, "CHUNK_SCORES", 4)


def qkv(shape_q, shape_k, shape_v, dtype=torch.float64):
    shapes = (shape_q, shape_k, shape_v)
    return tuple(torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes)


def with_kwargs(op, **kwargs):
    return lambda *args: op(*args, **kwargs)


SHAPES = [  # query, key, value
    ((2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 4, 8)),       # (B, H, L, E), self-attention sizes
    ((2, 5, 8), (2, 7, 8), (2, 7, 3)),                # 3-D, L != S, Ev != E
    ((4, 8), (6, 8), (6, 5)),                         # 2-D, no batch
    ((2, 3, 4, 8), (3, 6, 8), (1, 3, 6, 5)),          # broadcast batch dims
    ((1, 1, 1, 4), (1, 1, 1, 4), (1, 1, 1, 2)),       # batch 1, L = S = 1
    ((0, 2, 3, 4), (0, 2, 5, 4), (0, 2, 5, 4)),       # empty batch
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shapes", SHAPES)
def test_matches_torch(shapes, dtype):
    q, k, v = qkv(*shapes, dtype=dtype)
    testing.assert_matches_reference(sdpa, torch_sdpa, q, k, v)
    nc = [testing.non_contiguous(t) for t in (q, k, v)]
    testing.assert_matches_reference(sdpa, torch_sdpa, *nc, contiguous_grad=True)


@pytest.mark.parametrize("kwargs", [
    {"is_causal": True},
    {"scale": 0.3},
    {"scale": -1.5, "is_causal": True},
    {"enable_gqa": True},
])
@pytest.mark.parametrize("L,S", [(4, 4), (6, 3), (3, 6)])
def test_keyword_options_match_torch(kwargs, L, S):
    heads_kv = 2 if kwargs.get("enable_gqa") else 6
    q, k, v = qkv((2, 6, L, 8), (2, heads_kv, S, 8), (2, heads_kv, S, 5))
    testing.assert_matches_reference(with_kwargs(sdpa, **kwargs), with_kwargs(torch_sdpa, **kwargs),
                                     q, k, v)


def test_gqa_with_different_key_and_value_heads():
    q, k, v = qkv((2, 6, 4, 8), (2, 3, 5, 8), (2, 2, 5, 4))
    op, ref = with_kwargs(sdpa, enable_gqa=True), with_kwargs(torch_sdpa, enable_gqa=True)
    testing.assert_matches_reference(op, ref, q, k, v)
    testing.assert_gradcheck(op, q, k, v, fast_mode=True)


def test_transposed_heads_are_non_contiguous_and_fine():
    x = torch.randn(2, 5, 3, 8, dtype=torch.float64)  # (B, L, H, E) as a projection gives it
    q, k, v = (x.clone().requires_grad_().transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()
    testing.assert_matches_reference(sdpa, torch_sdpa, q, k, v)


def bool_mask(shape, dead_row=None):
    mask = torch.rand(shape) > 0.4
    if dead_row is not None:
        mask[..., dead_row, :] = False
    return mask


MASKS = {
    "bool (L, S)": lambda: bool_mask((4, 5)),
    "bool (B, 1, 1, S)": lambda: bool_mask((2, 1, 1, 5)),
    "bool, a dead row": lambda: bool_mask((4, 5), dead_row=1),
    "float (L, S)": lambda: torch.randn(4, 5, dtype=torch.float64, requires_grad=True),
    "float (B, H, L, S)": lambda: torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True),
    "float (L, 1)": lambda: torch.randn(4, 1, dtype=torch.float64, requires_grad=True),
    "float, -inf rows": lambda: torch.randn(3, 4, 5, dtype=torch.float64).index_fill_(
        1, torch.tensor([2]), -math.inf).requires_grad_(),
    "float32 mask, float64 q": lambda: torch.randn(4, 5),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_masks_match_torch(name):
    mask = MASKS[name]()
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6))
    testing.assert_matches_reference(sdpa, torch_sdpa, q, k, v, mask)


def test_fully_masked_rows_give_zeros_and_zero_grads_like_torch():
    q, k, v = qkv((2, 4, 8), (2, 5, 8), (2, 5, 6))
    mask = bool_mask((4, 5), dead_row=2)
    out = sdpa(q, k, v, mask)
    assert torch.equal(out[:, 2], torch.zeros_like(out[:, 2]))
    torch.testing.assert_close(out, torch_sdpa(q, k, v, mask))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and not q.grad[:, 2].any()


@pytest.mark.parametrize("case", ["plain", "causal", "float mask", "bool mask"])
def test_gradcheck_and_gradgradcheck(case):
    q, k, v = qkv((2, 2, 3, 4), (2, 2, 4, 4), (2, 2, 4, 3))
    if case == "plain":
        testing.assert_gradcheck(sdpa, q, k, v)
    elif case == "causal":
        testing.assert_gradcheck(with_kwargs(sdpa, is_causal=True, scale=0.7), q, k, v)
    elif case == "float mask":
        mask = torch.randn(2, 1, 3, 4, dtype=torch.float64, requires_grad=True)
        testing.assert_gradcheck(sdpa, q, k, v, mask)
    else:
        testing.assert_gradcheck(sdpa, q, k, v, bool_mask((3, 4), dead_row=0), fast_mode=True)


def test_gradcheck_broadcast_and_gqa():
    testing.assert_gradcheck(sdpa, *qkv((2, 4, 3, 4), (4, 4, 4), (1, 4, 4, 3)), fast_mode=True)
    q, k, v = qkv((2, 4, 3, 4), (2, 4, 4), (1, 2, 4, 3))  # 4 query heads share 2 key heads
    testing.assert_gradcheck(with_kwargs(sdpa, enable_gqa=True), q, k, v, fast_mode=True)


def test_chunked_batch_matches_torch(small_chunks):
    q, k, v = qkv((2, 3, 4, 8), (3, 5, 8), (2, 1, 5, 6))
    mask = torch.randn(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(sdpa, torch_sdpa, q, k, v, mask)
    causal = with_kwargs(sdpa, is_causal=True)
    testing.assert_matches_reference(causal, with_kwargs(torch_sdpa, is_causal=True), q, k, v)
    testing.assert_gradcheck(sdpa, *qkv((2, 2, 3, 4), (2, 4, 4), (2, 1, 4, 3)),
                             torch.randn(2, 1, 3, 4, dtype=torch.float64, requires_grad=True),
                             fast_mode=True)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    L=st.integers(1, 5), S=st.integers(1, 5), E=st.integers(1, 4), Ev=st.integers(1, 4),
    causal=st.booleans(), chunk=st.sampled_from([4, 1 << 18]),
)
def test_random_shapes_match_torch(batch, L, S, E, Ev, causal, chunk):
    torch.manual_seed(len(batch) + L * 7 + S * 11)
    _batch_chunks.CHUNK_SCORES = chunk
    try:
        q, k, v = qkv((*batch, L, E), (*batch, S, E), (*batch, S, Ev))
        kwargs = {"is_causal": causal}
        testing.assert_matches_reference(with_kwargs(sdpa, **kwargs),
                                         with_kwargs(torch_sdpa, **kwargs), q, k, v)
    finally:
        _batch_chunks.CHUNK_SCORES = 1 << 18


def drop_reference(q, k, v, p, seed):
    """softmax(q kᵀ/√E) ⊙ M / (1 − p) @ v, with M drawn as the op draws it."""
    probs = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    torch.manual_seed(seed)
    keep = torch.empty(probs.shape, dtype=torch.bool).bernoulli_(1 - p)
    return (probs * keep / (1 - p)) @ v


def seeded(op, seed, **kwargs):
    def run(*args):
        torch.manual_seed(seed)
        return op(*args, **kwargs)
    return run


def test_dropout_equals_the_regenerated_mask():
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5))
    testing.assert_matches_reference(seeded(sdpa, 3, dropout_p=0.4),
                                     lambda q, k, v: drop_reference(q, k, v, 0.4, seed=3), q, k, v)


def test_dropout_draws_the_same_mask_as_torch_on_cpu():
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5))
    testing.assert_matches_reference(seeded(sdpa, 5, dropout_p=0.3),
                                     seeded(torch_sdpa, 5, dropout_p=0.3), q, k, v)


def test_dropout_statistics():
    # q = 0 gives uniform attention 1/S; v = I makes the output the dropped weights themselves
    S, p = 400, 0.3
    q, k, v = torch.zeros(2, 8, 4), torch.randn(2, S, 4), torch.eye(S).expand(2, S, S)
    out = sdpa(q, k, v, dropout_p=p)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - p) < 0.02
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / ((1 - p) * S)))
    assert abs(out.sum(-1).mean().item() - 1.0) < 0.02  # E[P̃] = P: rows still sum to ~1


def test_dropout_gradcheck_with_fixed_seed():
    testing.assert_gradcheck(seeded(sdpa, 11, dropout_p=0.5),
                             *qkv((2, 3, 4), (2, 4, 4), (2, 4, 3)), fast_mode=True)


def test_dropout_edge_probabilities():
    q, k, v = qkv((2, 4, 8), (2, 5, 8), (2, 5, 6))
    out = sdpa(q, k, v, dropout_p=1.0)
    assert not out.any()
    out.sum().backward()
    assert not q.grad.any() and not v.grad.any()
    torch.testing.assert_close(sdpa(q, k, v, dropout_p=-0.5), torch_sdpa(q, k, v))


def test_graph_is_explicit():
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6), dtype=torch.float32)
    assert testing.assert_explicit_graph(sdpa(q, k, v)) == 4  # the Function + 3 leaves
    mask = torch.randn(4, 5, requires_grad=True)
    assert testing.assert_explicit_graph(sdpa(q, k, v, mask)) == 5
    assert testing.assert_explicit_graph(sdpa(q, k, v, dropout_p=0.2, is_causal=True)) == 4


def test_saves_the_inputs_only_and_less_than_torch():
    q, k, v = qkv((4, 4, 64, 16), (4, 4, 64, 16), (4, 4, 64, 16), dtype=torch.float32)
    ours = testing.saved_bytes(lambda: sdpa(q, k, v))
    assert ours == q.nbytes + k.nbytes + v.nbytes  # no P, no logsumexp
    assert ours < testing.saved_bytes(lambda: torch_sdpa(q, k, v))
    # only ∂L/∂V wanted: V itself is not needed
    assert testing.saved_bytes(lambda: sdpa(q.detach(), k.detach(), v)) == q.nbytes + k.nbytes
    # dropout adds its keep-mask at one byte per score
    drop = testing.saved_bytes(lambda: sdpa(q, k, v, dropout_p=0.1))
    assert drop == ours + 4 * 4 * 64 * 64
    assert drop < testing.saved_bytes(lambda: torch_sdpa(q, k, v, dropout_p=0.1))
    mask = torch.randn(64, 64)
    assert testing.saved_bytes(lambda: sdpa(q, k, v, mask)) == ours + mask.nbytes


def test_needs_input_grad_skips_work():
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6), dtype=torch.float32)
    full = testing.backward_op_counts(sdpa, q, k, v)
    only_v = testing.backward_op_counts(sdpa, q.detach(), k.detach(), v)
    only_q = testing.backward_op_counts(sdpa, q, k.detach(), v.detach())
    assert full["bmm"] == 5  # recompute Q Kᵀ; P̃ᵀ g; g Vᵀ; dS K; dSᵀ Q
    assert only_v["bmm"] == 2 and "addcmul" not in only_v  # no dS at all
    assert only_q["bmm"] == 3


def test_vmap_per_sample_grads():
    gen = torch.Generator().manual_seed(0)
    wq, wk, wv = (torch.randn(8, 8, dtype=torch.float64, generator=gen, requires_grad=True)
                  for _ in range(3))
    bias = torch.randn(5, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    xs = torch.randn(4, 5, 8, dtype=torch.float64, generator=gen)

    def loss(wq, wk, wv, bias, x):
        q, k, v = F.linear(x, wq), F.linear(x, wk), F.linear(x, wv)
        return (sdpa(q, k, v, bias) ** 2).sum() + (sdpa(q, k, v, is_causal=True) ** 2).sum()

    testing.assert_vmap_matches_loop(loss, [wq, wk, wv, bias], [xs])


def test_vmap_dropout_needs_randomness_like_torch():
    from torch.func import vmap

    xs = torch.randn(3, 4, 8)
    out = vmap(lambda x: sdpa(x, x, x, dropout_p=0.5), randomness="different")(xs)
    assert out.shape == xs.shape
    with pytest.raises(RuntimeError, match="random"):
        vmap(lambda x: sdpa(x, x, x, dropout_p=0.5))(xs)


def test_compile_fullgraph_matches_eager():
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6), dtype=torch.float32)
    mask = torch.randn(4, 5, requires_grad=True)
    testing.assert_compile_matches_eager(sdpa, q, k, v, mask)
    testing.assert_compile_matches_eager(with_kwargs(sdpa, is_causal=True, scale=0.5), q, k, v)


def test_compile_fullgraph_chunked_dropout(small_chunks):
    q, k, v = qkv((2, 4, 8), (2, 5, 8), (2, 5, 6), dtype=torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(with_kwargs(sdpa, dropout_p=0.3), fullgraph=True, backend="aot_eager")
    results = []
    for op in (compiled, with_kwargs(sdpa, dropout_p=0.3)):
        torch.manual_seed(2)  # the seed is set outside: dynamo does not trace manual_seed
        out = op(q, k, v)
        results.append((out, *torch.autograd.grad(out, (q, k, v), torch.ones_like(out))))
    assert not torch.allclose(results[0][0], sdpa(q, k, v))  # dropout did act
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_autocast_bf16_dtypes(mask):
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6), dtype=torch.float32)
    masks = {None: None, "float": torch.randn(4, 5, requires_grad=True), "bool": bool_mask((4, 5))}
    testing.assert_autocast_dtype_matches(sdpa, torch_sdpa, q, k, v, masks[mask])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, ref = sdpa(q, k, v), torch_sdpa(q, k, v)
    torch.testing.assert_close(ours, ref)


def test_bf16_inputs_match_torch():
    q, k, v = qkv((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6), dtype=torch.bfloat16)
    testing.assert_matches_reference(sdpa, torch_sdpa, q, k, v)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_matches_torch_and_autocast(dtype):
    q, k, v = (t.detach().cuda().requires_grad_()
               for t in qkv((2, 3, 16, 8), (2, 3, 12, 8), (2, 3, 12, 8), dtype=torch.float32))
    testing.assert_matches_reference(sdpa, torch_sdpa, q, k, v)
    testing.assert_matches_reference(with_kwargs(sdpa, is_causal=True),
                                     with_kwargs(torch_sdpa, is_causal=True), q, k, v)
    low = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    testing.assert_matches_reference(sdpa, torch_sdpa, *low, rtol=2e-2, atol=2e-2)
    testing.assert_autocast_dtype_matches(sdpa, torch_sdpa, q, k, v, device_type="cuda",
                                          dtype=dtype)


def test_signature_matches_torch():
    params = inspect.signature(sdpa).parameters
    assert list(params) == ["query", "key", "value", "attn_mask", "dropout_p", "is_causal",
                            "scale", "enable_gqa"]
    assert [params[n].default for n in list(params)[3:]] == [None, 0.0, False, None, False]
    assert params["scale"].kind is params["enable_gqa"].kind is inspect.Parameter.KEYWORD_ONLY
    q = torch.randn(2, 4, 8)
    for op in (sdpa, torch_sdpa):  # scale is keyword-only in torch too
        with pytest.raises(TypeError):
            op(q, q, q, None, 0.0, False, 0.5)


BAD_INPUTS = [
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 7), torch.randn(2, 5, 6)), {},
     (r"scaled_dot_product_attention: expected key of shape \(\.\.\., S, 8\).*"
      r"got query \(2, 4, 8\), key \(2, 5, 7\)")),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 6, 6)), {},
     r"expected value of shape \(\.\.\., 5, Ev\).*got key \(2, 5, 8\), value \(2, 6, 6\)"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 6)), {},
     r"expected broadcastable batch dims.*got query \(2, 4, 8\), key \(3, 5, 8\)"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 6),
              torch.ones(3, 5, dtype=torch.bool)), {},
     r"expected attn_mask broadcastable to the scores' shape \(2, 4, 5\).*got attn_mask \(3, 5\)"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 6),
              torch.ones(4, 5, dtype=torch.bool)), {"is_causal": True},
     r"expected attn_mask=None when is_causal=True, got attn_mask \(4, 5\)"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 6),
              torch.ones(4, 5, dtype=torch.long)), {},
     (r"expected attn_mask of dtype torch.bool, torch.float32 or query's torch.float32, "
      r"got attn_mask of dtype torch.int64")),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8).double(), torch.randn(2, 5, 6)), {},
     r"expected query, key and value of one floating dtype"),
    (lambda: (torch.randn(2, 6, 4, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 6)),
     {"enable_gqa": True}, r"with enable_gqa.*H dividing Hq, got query \(2, 6, 4, 8\)"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 6)),
     {"dropout_p": 1.5}, r"expected dropout_p between 0 and 1, got dropout_p=1.5"),
    (lambda: (torch.randn(8), torch.randn(8), torch.randn(8)), {},
     r"of >= 2 dims.*got query \(8\)"),
]


@pytest.mark.parametrize("make,kwargs,message", BAD_INPUTS)
def test_bad_inputs_name_op_and_shapes(make, kwargs, message):
    args = make()
    with pytest.raises(F.ShapeError, match=message):
        sdpa(*args, **kwargs)
    with pytest.raises((RuntimeError, IndexError)):  # torch refuses the same inputs
        torch_sdpa(*args, **kwargs)
