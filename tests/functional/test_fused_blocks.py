"""The fused transformer rules (layer_norm_linear, layer_norm_mlp, causal_attention_proj):
what the table's standard checks do not cover: each first-order piece of ``_fast.fused``
against the plain formula, shapes drawn by hypothesis against torch's chain, what each keeps
against the chain it replaces, error messages, and the GPT that runs them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.functional as F
import trainer.nn as tnn
from trainer import models, testing
from trainer.functional import ShapeError, fused_attention, fused_norm
from trainer.functional._fast import fused as fast
from trainer.rules.fused import (
    attention_then_projection,
    layer_norm_then_linear,
    layer_norm_then_mlp,
)

D64 = torch.float64


def leaf(*shape, scale=1.0, dtype=D64, seed=None):
    gen = torch.Generator().manual_seed(seed if seed is not None else sum(shape))
    return (torch.randn(shape, dtype=dtype, generator=gen) * scale).requires_grad_()


# -- the fast pieces equal the formulas ------------------------------------------------------


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_and_derivative_equal_the_formula_at_zero_and_far_out(approximate):
    h = torch.cat([torch.randn(200, dtype=D64) * 3, torch.tensor([0.0, -0.0, 1e-30, -1e-30,
                                                                  -12.0, 12.0], dtype=D64)])
    a, slope = fast.gelu_and_derivative(h, approximate)
    want_a, want_slope = fused_norm._gelu_pair(h, approximate)
    torch.testing.assert_close(a, want_a, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(slope, want_slope, rtol=1e-10, atol=1e-14)
    assert slope[200].item() == 0.5  # gelu′(0) = Φ(0) = ½, not 0/0


def test_probs_from_lse_is_the_causal_softmax():
    q, k = torch.randn(2, 3, 5, 4, dtype=D64).unbind(0)
    scale = 0.5
    causal = fused_attention._causal_bias(5, D64, q.device)
    scores = q @ k.transpose(-2, -1) * scale + causal
    lse = scores.logsumexp(-1, keepdim=True)
    torch.testing.assert_close(fast.probs_from_lse(q, k, lse, scale, causal),
                               scores.softmax(-1), rtol=1e-12, atol=1e-15)
    assert causal.triu(1).isinf().sum() == 10 and not causal.tril().any()


def test_attention_input_grads_equal_the_formula():
    q, k, v, grad_out = torch.randn(4, 6, 5, 3, dtype=D64).unbind(0)
    probs = (q @ k.transpose(-2, -1) * 0.7).softmax(-1)
    grad_probs = grad_out @ v.transpose(-2, -1)
    grad_scores = probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))
    want = torch.stack([grad_scores @ k * 0.7, grad_scores.transpose(-2, -1) @ q * 0.7,
                        probs.transpose(-2, -1) @ grad_out])
    got = fast.attention_input_grads(probs.clone(), grad_out, q, k, v, 0.7)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_pieces_equal_the_formula(affine):
    x, g_normed, g = torch.randn(7, 5, dtype=D64), torch.randn(7, 5, dtype=D64), \
        torch.randn(7, 3, dtype=D64)
    gamma, beta = (torch.randn(5, dtype=D64), torch.randn(5, dtype=D64)) if affine else (None,) * 2
    mean, rstd = x.mean(-1, keepdim=True), (x.var(-1, unbiased=False, keepdim=True) + 1e-5).rsqrt()
    x_hat = fast.normalized(x, mean, rstd)
    torch.testing.assert_close(x_hat, (x - mean) * rstd)
    normed = x_hat if gamma is None else x_hat * gamma + beta
    torch.testing.assert_close(fast.normed_weight_grad(g, x_hat, gamma, beta), g.t() @ normed)
    want = fused_norm._layer_norm_grads(g_normed, x_hat, rstd, gamma, True, True, True)
    got = fast.layer_norm_grads(g_normed.clone(), x_hat, rstd, gamma, True, True, True)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_math_forward_equals_the_fused_kernel_path():
    """Under a torch.func transform (or off the CPU) forward computes in torch ops."""
    qkv, weight = leaf(2, 6, 12).detach(), leaf(5, 4).detach()
    kernel, lse = fused_attention.CausalAttentionProj.forward(qkv, weight, None, 2)
    heads = fused_attention._split_heads(qkv, 2, 3)
    attended, math_lse = fused_attention._attend(heads, 2 ** -0.5)  # D = 2
    joined = fused_attention._join_heads(attended[None], 2)
    torch.testing.assert_close(joined @ weight.t(), kernel)
    torch.testing.assert_close(math_lse, lse)


# -- against torch's chain over drawn shapes --------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 9), heads=st.sampled_from([1, 2, 3]),
       head_size=st.sampled_from([1, 4]), out=st.integers(1, 5), bias=st.booleans())
def test_attention_equals_torchs_chain_over_shapes(batch, length, heads, head_size, out, bias):
    width = heads * head_size
    args = (leaf(batch, length, 3 * width), leaf(out, width), leaf(out) if bias else None)
    testing.assert_matches_reference(lambda *a: F.causal_attention_proj(*a, n_head=heads),
                                     lambda *a: attention_then_projection(*a, n_head=heads),
                                     *args)


@settings(max_examples=12, deadline=None)
@given(lead=st.lists(st.integers(1, 4), min_size=0, max_size=2), width=st.integers(1, 6),
       hidden=st.integers(1, 7), affine=st.booleans(), approximate=st.sampled_from(["none",
                                                                                   "tanh"]))
def test_norm_rules_equal_torchs_chains_over_shapes(lead, width, hidden, affine, approximate):
    x = leaf(*lead, width, seed=1)
    ln = (leaf(width, seed=2), leaf(width, seed=3)) if affine else (None, None)
    w1, b1, w2 = leaf(hidden, width, seed=4), leaf(hidden, seed=5), leaf(3, hidden, seed=6)
    testing.assert_matches_reference(F.layer_norm_linear, layer_norm_then_linear,
                                     x, *ln, w1, b1)
    testing.assert_matches_reference(
        lambda *a: F.layer_norm_mlp(*a, approximate=approximate),
        lambda *a: layer_norm_then_mlp(*a, approximate=approximate), x, *ln, w1, b1, w2, None)


# -- what each keeps ------------------------------------------------------------------------


def test_each_keeps_far_less_than_the_chain_it_replaces():
    x, gamma = leaf(4, 16, 32, dtype=torch.float32), leaf(32, dtype=torch.float32)
    w_qkv, w1 = leaf(96, 32, dtype=torch.float32), leaf(128, 32, dtype=torch.float32)
    w2, w_proj = leaf(32, 128, dtype=torch.float32), leaf(32, 32, dtype=torch.float32)
    qkv = leaf(4, 16, 96, dtype=torch.float32)
    params = [gamma, w_qkv, w1, w2, w_proj]
    unit = x.numel() * 4  # bytes of one (B, T, C) activation

    def kept(fn):
        return testing.saved_bytes(fn, exclude=params)

    # x and the stats, against x and the normed copy
    assert kept(lambda: F.layer_norm_linear(x, gamma, None, w_qkv)) < 1.1 * unit
    assert kept(lambda: layer_norm_then_linear(x, gamma, None, w_qkv)) >= 2 * unit
    # x and h (4 C wide), against x, n, h and gelu(h)
    assert kept(lambda: F.layer_norm_mlp(x, gamma, None, w1, None, w2)) < 5.1 * unit
    assert kept(lambda: layer_norm_then_mlp(x, gamma, None, w1, None, w2)) >= 10 * unit
    # qkv (3 units) and one number per row and head, against qkv and the attention output
    lse = 4 * 16 * 4 * 4
    assert kept(lambda: F.causal_attention_proj(qkv, w_proj, n_head=4)) == 3 * unit + lse
    assert kept(lambda: attention_then_projection(qkv, w_proj, n_head=4)) >= 4 * unit


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("call, words", [
    (lambda: F.layer_norm_linear(torch.randn(2, 4), torch.randn(3), None, torch.randn(5, 4)),
     r"layer_norm_linear: expected ln_weight of shape \(4,\) for input \(2, 4\), got "
     r"ln_weight \(3\)"),
    (lambda: F.layer_norm_linear(torch.randn(2, 4), None, None, torch.randn(5, 3)),
     r"layer_norm_linear: expected weight of shape \(out, 4\) .*got weight \(5, 3\)"),
    (lambda: F.layer_norm_mlp(torch.randn(2, 4), None, None, torch.randn(6, 4), None,
                              torch.randn(3, 5)),
     r"layer_norm_mlp: expected proj_weight of shape \(out, 6\) for fc_weight \(6, 4\), got "
     r"proj_weight \(3, 5\)"),
    (lambda: F.layer_norm_mlp(torch.randn(2, 4), None, None, torch.randn(6, 4), None,
                              torch.randn(3, 6), approximate="erf"),
     r"layer_norm_mlp: expected approximate 'none' or 'tanh', got approximate='erf'"),
    (lambda: F.causal_attention_proj(torch.randn(2, 3, 12), torch.randn(4, 4), n_head=3),
     r"causal_attention_proj: expected qkv of shape \(B, T, 3C\) with C divisible by "
     r"n_head=3, got qkv \(2, 3, 12\)"),
    (lambda: F.causal_attention_proj(torch.randn(3, 12), torch.randn(4, 4), n_head=2),
     r"causal_attention_proj: expected qkv of shape \(B, T, 3C\), got qkv \(3, 12\)"),
    (lambda: F.causal_attention_proj(torch.randn(2, 3, 12), torch.randn(4, 5), n_head=2),
     r"causal_attention_proj: expected weight of shape \(out, 4\) for qkv \(2, 3, 12\), got "
     r"weight \(4, 5\)"),
])
def test_bad_input_names_the_op_and_the_shapes(call, words):
    with pytest.raises(ShapeError, match=words):
        call()


# -- the GPT that runs them ------------------------------------------------------------------


def gpt(dtype=torch.float32, **options):
    torch.manual_seed(0)
    cfg = {"name": "gpt", "n_layer": 2, "n_head": 4, "n_embd": 32, "dropout": 0.0, **options}
    return models.build(cfg, (16,), 65).to(dtype)


def test_gpt_blocks_run_the_fused_rules_in_training_and_eval():
    model = gpt()
    idx = torch.randint(0, 65, (3, 16))
    for mode in (model.train, model.eval):
        mode()
        nodes = testing.graph_node_counts(model.loss(idx, idx))
        assert not nodes["builtin"], nodes["builtin"]
        explicit = nodes["explicit"]
        assert explicit["LayerNormLinearBackward"] == explicit["LayerNormMLPBackward"] == 2
        assert explicit["CausalAttentionProjBackward"] == 2
        assert explicit["LayerNormBackward"] == 1  # ln_f alone
        assert "GELUBackward" not in explicit and "LinearBackward" not in explicit


def test_gpt_with_dropout_drawing_takes_the_per_layer_rules():
    model = gpt(dropout=0.1).train()
    nodes = testing.graph_node_counts(model(torch.randint(0, 65, (2, 16))))["explicit"]
    assert "LayerNormLinearBackward" not in nodes and nodes["GELUBackward"] == 2


def test_gpt_keeps_at_most_six_tenths_of_native():
    model = gpt(n_layer=4, n_embd=128)  # the experiment's width and depth
    native = tnn.to_torch(model)
    idx = torch.randint(0, 65, (12, 16), generator=torch.Generator().manual_seed(0))

    def kept(net):
        return testing.saved_bytes(lambda: net.loss(idx, idx), exclude=list(net.parameters()))

    assert kept(model) <= 0.6 * kept(native)


def test_gpt_double_backward_through_the_fused_rules_equals_native():
    model = gpt(torch.float64, n_layer=1, n_embd=8, n_head=2, bias=True)
    native = tnn.to_torch(model)
    idx = torch.randint(0, 65, (2, 5), generator=torch.Generator().manual_seed(1))

    def grad_norm(net):
        params = list(net.parameters())
        logits = net(idx)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten()) \
            if net is native else F.cross_entropy(logits.flatten(0, 1), idx.flatten())
        grads = torch.autograd.grad(loss, params, create_graph=True)
        total = sum((g * g).sum() for g in grads)
        return torch.autograd.grad(total, params)

    # native's fused attention kernel has no double backward: its math path does
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        theirs = grad_norm(native)
    for ours_grad, their_grad in zip(grad_norm(model), theirs, strict=True):
        torch.testing.assert_close(ours_grad, their_grad, rtol=1e-8, atol=1e-10)
