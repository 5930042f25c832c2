"""trainer.nn.MultiheadAttention: torch's MultiheadAttention through the explicit rules.

Values and gradients (every parameter, every input, a float mask) against torch's own module
over a grid of its options, in train and eval, float64 tightly and float32 loosely; the graph
holds only rules and shape ops; torch's fast path and F.multi_head_attention_forward never
run; bad input is named; convert and to_torch swap it both ways, TransformerEncoderLayer too.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainer
import trainer.nn as nn
from trainer import testing
from trainer.functional import ShapeError

E, H, N, L, S = 8, 2, 3, 4, 5
# a float key_padding_mask beside a bool attn_mask: torch warns, and so does the twin
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pair(dtype=torch.float64, embed_dim=E, num_heads=H, **kwargs):
    torch.manual_seed(0)
    native = torch.nn.MultiheadAttention(embed_dim, num_heads, **kwargs).to(dtype)
    torch.manual_seed(0)
    ours = nn.MultiheadAttention(embed_dim, num_heads, **kwargs).to(dtype)
    return ours, native


def seq(length, batch, width, batched, batch_first, dtype):
    shape = ((batch, length) if batch_first else (length, batch)) if batched else (length,)
    return torch.randn(*shape, width, dtype=dtype)


def masks(call, batched, tgt, src, dtype):
    """key_padding_mask and attn_mask of the kinds a case names; no row is fully masked."""
    kpm = attn = None
    if call.get("kpm"):
        kpm = torch.zeros((N, src) if batched else (src,), dtype=torch.bool)
        kpm[..., -1] = True  # the last key is padding
        if batched:
            kpm[0, 1] = True
        if call["kpm"] == "float":
            kpm = torch.randn(kpm.shape, dtype=dtype).masked_fill(kpm, float("-inf"))
    if call.get("attn"):
        rank, kind = call["attn"]
        shape = (tgt, src) if rank == 2 else ((N if batched else 1) * H, tgt, src)
        if call.get("is_causal"):
            attn = torch.ones(tgt, src, dtype=torch.bool).triu(1)
        elif kind == "bool":
            attn = torch.rand(shape) < 0.3
            attn[..., 0] = False  # every query keeps its first key
        else:
            attn = torch.randn(shape, dtype=dtype)
    return kpm, attn


# module options, call options
CASES = [
    ({}, {}),
    ({"batch_first": True}, {}),
    ({"bias": False}, {"form": "cross"}),
    ({}, {"form": "kv"}),
    ({"batch_first": True}, {"form": "kv", "kpm": "bool"}),
    ({"kdim": 6, "vdim": 3}, {"form": "cross"}),
    ({"kdim": 6, "vdim": 3, "bias": False, "batch_first": True}, {"form": "cross", "kpm": "bool"}),
    ({}, {"kpm": "bool"}),
    ({}, {"kpm": "float"}),
    ({}, {"attn": (2, "bool")}),
    ({}, {"attn": (2, "float")}),
    ({"batch_first": True}, {"attn": (3, "bool")}),
    ({}, {"attn": (3, "float"), "form": "cross"}),
    ({}, {"attn": (2, "float"), "kpm": "float"}),
    ({"batch_first": True}, {"attn": (3, "bool"), "kpm": "bool"}),
    ({}, {"attn": (2, "bool"), "is_causal": True}),
    ({"batch_first": True}, {"attn": (2, "bool"), "is_causal": True, "kpm": "bool"}),
    ({}, {"attn": (2, "bool"), "is_causal": True, "form": "cross"}),
    ({"add_bias_kv": True}, {}),
    ({"add_bias_kv": True}, {"attn": (3, "float"), "kpm": "bool"}),
    ({"add_zero_attn": True}, {"kpm": "float", "attn": (2, "bool")}),
    ({"add_bias_kv": True, "add_zero_attn": True, "batch_first": True},
     {"form": "cross", "attn": (2, "float"), "kpm": "bool"}),
    ({"add_bias_kv": True, "add_zero_attn": True}, {"attn": (2, "bool"), "is_causal": True}),
    ({}, {"batched": False}),
    ({"batch_first": True}, {"batched": False, "kpm": "bool", "attn": (3, "float")}),
    ({"kdim": 5, "vdim": 7, "add_bias_kv": True}, {"batched": False, "form": "cross",
                                                   "attn": (2, "bool")}),
    ({"dropout": 0.3}, {}),
    ({"dropout": 0.3, "batch_first": True, "add_zero_attn": True}, {"kpm": "bool"}),
    ({"dropout": 0.3}, {"attn": (2, "bool"), "is_causal": True, "form": "cross"}),
]


def run_case(module_kwargs, call, dtype, training, need_weights, average=True,
             mask_grad=False, rtol=None, atol=None):
    ours, native = pair(dtype, **module_kwargs)
    ours.train(training), native.train(training)
    batched, batch_first = call.get("batched", True), module_kwargs.get("batch_first", False)
    form = call.get("form", "self")
    tgt, src = (L, L) if form == "self" else (L, S)
    q = seq(tgt, N, E, batched, batch_first, dtype)
    k = seq(src, N, module_kwargs.get("kdim", E), batched, batch_first, dtype)
    v = seq(src, N, module_kwargs.get("vdim", E), batched, batch_first, dtype)
    kpm, attn = masks(call, batched, tgt, src, dtype)
    float_mask = attn is not None and attn.is_floating_point() and mask_grad
    names = [name for name, _ in native.named_parameters()]
    tensors = {"self": [q], "kv": [q, k], "cross": [q, k, v]}[form]
    tensors += [attn] if float_mask else []
    tensors += [p.detach().clone() for p in native.parameters()]

    def calling(module):
        def run(*args):
            args = list(args)
            qkv = [args.pop(0) for _ in range({"self": 1, "kv": 2, "cross": 3}[form])]
            qkv = {"self": qkv * 3, "kv": qkv + qkv[1:], "cross": qkv}[form]
            mask = args.pop(0) if float_mask else attn
            kwargs = dict(key_padding_mask=kpm, attn_mask=mask, need_weights=need_weights,
                          average_attn_weights=average, is_causal=call.get("is_causal", False))
            torch.manual_seed(7)  # the same dropout draw for both
            return torch.func.functional_call(module, dict(zip(names, args)), tuple(qkv),
                                              kwargs)
        return run

    inputs = [t.requires_grad_() for t in tensors]
    testing.assert_matches_reference(calling(ours), calling(native), *inputs, rtol=rtol,
                                     atol=atol)
    return ours, calling(ours), inputs


def ids(cases):
    return ["-".join([*(f"{k}={v}" for k, v in m.items()), *(f"{k}={v}" for k, v in c.items())])
            or "plain" for m, c in cases]


@pytest.mark.parametrize("need_weights", [False, True], ids=["sdpa", "weights"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("module_kwargs,call", CASES, ids=ids(CASES))
def test_matches_torch_float64(module_kwargs, call, training, need_weights):
    run_case(module_kwargs, call, torch.float64, training, need_weights)


@pytest.mark.parametrize("need_weights", [False, True], ids=["sdpa", "weights"])
@pytest.mark.parametrize("module_kwargs,call", CASES[::3], ids=ids(CASES[::3]))
def test_matches_torch_float32(module_kwargs, call, need_weights):
    run_case(module_kwargs, call, torch.float32, True, need_weights, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("need_weights", [False, True], ids=["sdpa", "weights"])
@pytest.mark.parametrize("module_kwargs,call", [c for c in CASES if "float" in str(c[1])],
                         ids=ids([c for c in CASES if "float" in str(c[1])]))
def test_a_float_mask_gets_its_gradient(module_kwargs, call, need_weights):
    run_case(module_kwargs, call, torch.float64, False, need_weights, mask_grad=True)


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("batched", [False, True])
def test_weights_per_head_or_averaged(average, batched):
    call = {"batched": batched, "kpm": "bool", "attn": (2, "float")}
    ours, run, inputs = run_case({}, call, torch.float64, False, True, average=average)
    weights = run(*inputs)[1]
    heads = () if average else (H,)
    assert weights.shape == ((N,) if batched else ()) + heads + (L, L)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1], dtype=weights.dtype))


@FAST
@given(heads=st.integers(1, 3), head_dim=st.integers(1, 4), n=st.integers(1, 3),
       tgt=st.integers(1, 5), src=st.integers(1, 5), batch_first=st.booleans(),
       need_weights=st.booleans(), kpm=st.booleans())
def test_shapes(heads, head_dim, n, tgt, src, batch_first, need_weights, kpm):
    ours, native = pair(embed_dim=heads * head_dim, num_heads=heads, batch_first=batch_first)
    q = seq(tgt, n, heads * head_dim, True, batch_first, torch.float64)
    kv = seq(src, n, heads * head_dim, True, batch_first, torch.float64)
    padding = None
    if kpm:
        padding = torch.zeros(n, src, dtype=torch.bool)
        padding[:, src // 2 + 1:] = True  # never every key
    for module in (ours, native):
        module.zero_grad()
    outs = [m(q, kv, kv, key_padding_mask=padding, need_weights=need_weights)
            for m in (ours, native)]
    for a, b in zip(outs[0], outs[1]):
        if b is not None or a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    outs[0][0].sum().backward(), outs[1][0].sum().backward()
    for (name, a), b in zip(ours.named_parameters(), native.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10, msg=name)


# --- the graph, and what never runs ---------------------------------------------------------

@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("module_kwargs,call", [
    ({"add_bias_kv": True, "add_zero_attn": True, "dropout": 0.2},
     {"form": "cross", "attn": (3, "float"), "kpm": "float"}),
    ({"kdim": 6, "vdim": 3, "batch_first": True}, {"form": "cross", "batched": False}),
    ({}, {"attn": (2, "bool"), "is_causal": True}),
])
def test_graph_holds_only_rules_and_shape_ops(module_kwargs, call, need_weights):
    _, run, inputs = run_case(module_kwargs, call, torch.float64, True, need_weights,
                              mask_grad=True)
    counts = testing.graph_node_counts(run(*inputs))
    assert counts["builtin"] == {}
    assert "LinearBackward" in counts["explicit"]
    attention = "SoftmaxBackward" if need_weights else "ScaledDotProductAttentionBackward"
    assert attention in counts["explicit"]


def test_double_backward_through_the_layer():
    ours, _ = pair(add_bias_kv=True, kdim=5, vdim=5)
    q = torch.randn(3, 1, E, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 1, 5, dtype=torch.float64, requires_grad=True)
    kpm = torch.tensor([[False, False, True, False]])
    for need_weights in (False, True):
        testing.assert_gradcheck(
            lambda q, k: ours(q, k, k, key_padding_mask=kpm, need_weights=need_weights)[0], q, k)


def test_never_torchs_fused_paths(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch's own attention ran")

    monkeypatch.setattr(torch, "_native_multi_head_attention", refuse)
    monkeypatch.setattr(torch.nn.functional, "multi_head_attention_forward", refuse)
    ours, _ = pair(torch.float32, batch_first=True)  # eval + no_grad: torch's fast path
    ours.eval()
    x = torch.randn(2, L, E)
    with torch.no_grad():
        ours(x, x, x)
        ours(x, x, x, need_weights=False)


def test_every_call_is_explicit_under_strict_mode():
    ours, _ = pair(torch.float32, add_bias_kv=True, add_zero_attn=True)
    x = torch.randn(L, N, E)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    with trainer.explicit(strict=True) as report:
        out, weights = ours(x, x, x, key_padding_mask=kpm)
        (out.sum() + weights.sum()).backward()
    # its trainer.functional calls apply the rules directly: the mode sees only shape ops
    assert report.complete and set(report.moved) <= {f"Tensor.{op}" for op in (
        "transpose", "unflatten", "expand", "unbind", "reshape")} | {"torch.cat"}


@pytest.mark.parametrize("need_weights", [False, True])
def test_compiles_whole_and_keeps_autocasts_dtypes(need_weights):
    ours, native = pair(torch.float32)
    x = torch.randn(L, N, E, requires_grad=True)
    testing.assert_compile_matches_eager(lambda t: ours(t, t, t, need_weights=need_weights), x)
    testing.assert_autocast_dtype_matches(lambda t: ours(t, t, t, need_weights=need_weights),
                                          lambda t: native(t, t, t, need_weights=need_weights), x)


# --- bad input ------------------------------------------------------------------------------

BAD = [
    ((torch.randn(E),) * 3, {}, "all 3-D (batched) or all 2-D"),
    ((torch.randn(L, N, E), torch.randn(S, E), torch.randn(S, E)), {}, "all 3-D"),
    ((torch.randn(L, N, E + 1),) * 3, {}, "last dims 8, 8, 8"),
    ((torch.randn(L, N, E), torch.randn(S, N, E), torch.randn(S + 1, N, E)), {},
     "one sequence length"),
    ((torch.randn(L, N, E), torch.randn(S, N + 1, E), torch.randn(S, N + 1, E)), {},
     "one batch size"),
    ((torch.randn(L, N, E),) * 3, {"key_padding_mask": torch.zeros(L, N, dtype=torch.bool)},
     "key_padding_mask of shape (3, 4)"),
    ((torch.randn(L, N, E),) * 3, {"attn_mask": torch.zeros(N, L, L)},
     "attn_mask of shape (4, 4) or (6, 4, 4)"),
    ((torch.randn(L, E),) * 3, {"attn_mask": torch.zeros(N * H, L, L)}, "(2, 4, 4)"),
    ((torch.randn(L, N, E),) * 3, {"is_causal": True}, "attn_mask with is_causal=True"),
    ((torch.randn(L, N, E),) * 3, {"attn_mask": torch.zeros(L, L, dtype=torch.int64)},
     "torch.bool or floating"),
]


@pytest.mark.parametrize("args,kwargs,message", BAD, ids=[b[2] for b in BAD])
def test_bad_input_is_named(args, kwargs, message):
    ours, native = pair(torch.float32)
    with pytest.raises(ShapeError, match="MultiheadAttention\\(embed_dim=8, num_heads=2\\)"
                       if "floating" not in message else "MultiheadAttention") as info:
        ours(*args, **kwargs)
    assert message in str(info.value)
    with pytest.raises((RuntimeError, AssertionError)):  # torch refuses them too
        native(*args, **kwargs)


# --- conversion -----------------------------------------------------------------------------

def test_same_init_and_state_dict():
    ours, native = pair(kdim=5, vdim=3, add_bias_kv=True)
    assert type(ours.out_proj) is type(native.out_proj)
    assert list(ours.state_dict()) == list(native.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), native.state_dict().values()):
        assert torch.equal(a, b), name


def test_convert_swaps_it_and_to_torch_gives_it_back():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, E), torch.nn.MultiheadAttention(E, H))
    explicit, report = nn.convert(model)
    assert report.converted == {"0": "Linear", "1": "MultiheadAttention"}
    assert not report.unconverted
    assert type(explicit[1]) is nn.MultiheadAttention
    back = nn.to_torch(explicit)
    assert type(back[1]) is torch.nn.MultiheadAttention
    for a, b in zip(back.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("training", [False, True])
def test_a_converted_transformer_encoder_layer_is_explicit_throughout(training):
    torch.manual_seed(0)
    native = torch.nn.TransformerEncoderLayer(E, H, dim_feedforward=16, dropout=0.0,
                                              batch_first=True).double().train(training)
    explicit, report = nn.convert(native, strict=True)
    assert report.converted["self_attn"] == "MultiheadAttention" and not report.unconverted
    x = torch.randn(N, L, E, dtype=torch.float64)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
    ours, theirs = explicit(x, src_mask=mask), native(x, src_mask=mask)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    ours.sum().backward(), theirs.sum().backward()
    for (name, a), b in zip(explicit.named_parameters(), native.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10, msg=name)
    assert report.complete
    counts = testing.graph_node_counts(explicit(x, src_mask=mask))
    assert counts["builtin"] == {} and "ScaledDotProductAttentionBackward" in counts["explicit"]


def test_a_converted_encoder_layer_skips_torchs_fast_path_in_inference(monkeypatch):
    torch.manual_seed(0)
    native = torch.nn.TransformerEncoderLayer(E, H, dim_feedforward=16, batch_first=True).eval()
    explicit, report = nn.convert(native)
    x = torch.randn(N, L, E)
    with torch.no_grad():
        expected = native(x)  # torch's fused encoder layer

    def refuse(*args, **kwargs):
        raise AssertionError("torch's fused kernel ran")

    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", refuse)
    monkeypatch.setattr(torch, "_native_multi_head_attention", refuse)
    with torch.no_grad():
        torch.testing.assert_close(explicit(x), expected, rtol=1e-5, atol=1e-5)
    assert report.complete
