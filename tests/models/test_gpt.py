"""nanoGPT's GPT from trainer.nn: its layout and init, every gradient a rule and equal to the
same model on torch's autograd (``trainer.nn.to_torch``), the causal mask, the fused loss,
sampling, AdamW groups and the config."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.functional as F
import trainer.nn as tnn
from trainer import config, models, testing
from trainer.functional import ShapeError
from trainer.models.gpt import GPT, gpt_param_groups
from trainer.sample import generate

VOCAB = 65


def small(dtype=torch.float32, **options) -> GPT:
    torch.manual_seed(0)
    options = {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0, **options}
    return models.build({"name": "gpt", **options}, (16,), VOCAB).to(dtype)


def tokens(batch=3, length=16, seed=1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_build_gives_nanogpts_layout_tied_head_and_init():
    model = models.build({"name": "gpt", "n_layer": 3, "n_head": 4, "n_embd": 64, "bias": True},
                         (32,), VOCAB)
    assert model.block_size == 32 and model.vocab_size == VOCAB
    assert model.lm_head.weight is model.transformer.wte.weight
    keys = set(model.state_dict())
    for key in ["transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight",
                "transformer.h.2.ln_1.weight", "transformer.h.2.attn.c_attn.weight",
                "transformer.h.2.attn.c_proj.bias", "transformer.h.2.ln_2.bias",
                "transformer.h.2.mlp.c_fc.weight", "transformer.h.2.mlp.c_proj.weight",
                "transformer.ln_f.weight"]:
        assert key in keys, key
    assert model.transformer.wpe.weight.shape == (32, 64)
    assert model.transformer.h[0].attn.c_attn.weight.shape == (3 * 64, 64)
    assert model.transformer.h[0].mlp.c_fc.weight.shape == (4 * 64, 64)
    assert isinstance(model.transformer.h[0].mlp.gelu, tnn.GELU)
    assert model.transformer.h[0].mlp.gelu.approximate == "none"
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(0.02 / math.sqrt(2 * 3), rel=0.1), name
        elif name.endswith(("attn.weight", "c_fc.weight", "wte.weight", "wpe.weight")):
            assert p.std().item() == pytest.approx(0.02, rel=0.1), name
        elif name.endswith("bias"):
            assert not p.any(), name
        else:  # LayerNorm weights
            assert torch.equal(p, torch.ones_like(p)), name


def test_without_bias_no_linear_or_layernorm_has_one():
    model = small(bias=False)
    assert all(m.bias is None for m in model.modules()
               if isinstance(m, (tnn.Linear, tnn.LayerNorm)))
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]


@pytest.mark.parametrize("model_cfg, shape, key, words", [
    ({"name": "gpt", "block_size": 64}, (32,), "model.block_size", ["64", "32"]),
    ({"name": "gpt", "n_head": 3, "n_embd": 32}, (16,), "model.n_head", ["32", "3"]),
    ({"name": "gpt"}, (1, 8, 8), "model", ["(T,)", "(1, 8, 8)"]),
])
def test_build_refuses_with_the_key_to_fix(model_cfg, shape, key, words):
    with pytest.raises(models.ModelInputError) as caught:
        models.build(model_cfg, shape, VOCAB)
    assert caught.value.key == key
    assert all(w in str(caught.value) for w in words), str(caught.value)


def test_block_size_equal_to_the_datas_or_null_builds():
    assert models.build({"name": "gpt", "block_size": 16}, (16,), VOCAB).block_size == 16
    assert models.build({"name": "gpt", "block_size": None}, (24,), VOCAB).block_size == 24


def test_only_token_data_is_accepted():
    assert models.accepts("gpt", (64,), tokens=True)
    assert not models.accepts("gpt", (64,))  # float features of 64 values
    assert not models.accepts("gpt", (1, 64), tokens=True)
    assert not models.accepts("mlp", (64,), tokens=True)
    assert models.accepts("mlp", (64,))


def test_shapes_and_the_block_size_limit():
    model = small()
    assert model(tokens(3, 16)).shape == (3, 16, VOCAB)
    assert model(tokens(2, 5)).shape == (2, 5, VOCAB)
    assert model.hidden(tokens(2, 5)).shape == (2, 5, 32)
    with pytest.raises(ShapeError, match=r"block_size=16.*T=17 > block_size=16"):
        model(tokens(2, 17))
    with pytest.raises(ShapeError, match=r"GPT: .*integer"):
        model(torch.randn(2, 4))
    with pytest.raises(ShapeError, match=r"GPT: .*\(B, T\).*got idx \(4\)"):
        model(tokens(1, 4)[0])


def test_a_future_token_changes_no_earlier_logit():
    model = small(torch.float64).eval()
    idx = tokens(2, 16)
    t = 9
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % VOCAB
    before, after = model(idx), model(changed)
    assert torch.equal(before[:, :t], after[:, :t])
    assert not torch.allclose(before[:, t:], after[:, t:])  # the mask hides the future only


@pytest.mark.parametrize("bias", [False, True])
def test_every_compute_node_is_a_rule(bias):
    model = small(torch.float64, bias=bias, dropout=0.1).train()
    idx = tokens()
    for out in (model.loss(idx, idx), F.cross_entropy(model(idx).flatten(0, 1), idx.flatten())):
        nodes = testing.graph_node_counts(out)
        assert not nodes["builtin"], nodes["builtin"]
        assert {"ScaledDotProductAttentionBackward", "LayerNormBackward", "EmbeddingBackward",
                "GELUBackward", "AddBackward", "DropoutBackward"} <= set(nodes["explicit"])


def test_to_torch_is_the_same_model_on_torchs_autograd():
    model = small(torch.float64)
    native = tnn.to_torch(model)
    nodes = testing.graph_node_counts(native(tokens()))
    assert not nodes["explicit"] and "ScaledDotProductFlashAttentionForCpuBackward0" in str(nodes)
    assert native.lm_head.weight is native.transformer.wte.weight
    assert native.state_dict().keys() == model.state_dict().keys()


def loss_and_grads(model, idx, targets, fused):
    if fused:
        loss = model.loss(idx, targets)
    else:
        ce = F.cross_entropy if isinstance(model.lm_head, tnn.Linear) else \
            torch.nn.functional.cross_entropy
        loss = ce(model(idx).flatten(0, 1), targets.flatten())
    params = list(model.parameters())
    return loss, torch.autograd.grad(loss, params)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_gradients_equal_native_autograds(dtype, tolerance, fused):
    model = small(dtype, bias=True)
    native = tnn.to_torch(model)
    idx, targets = tokens(seed=1), tokens(seed=2)
    loss, grads = loss_and_grads(model, idx, targets, fused)
    native_loss, native_grads = loss_and_grads(native, idx, targets, fused)
    assert abs(loss.item() - native_loss.item()) <= tolerance * native_loss.item()
    largest = max(g.abs().max() for g in native_grads)
    names = [n for n, _ in model.named_parameters()]
    for name, ours, theirs in zip(names, grads, native_grads, strict=True):
        assert ((ours - theirs).abs().max() / largest).item() < tolerance, name


def test_fused_loss_equals_cross_entropy_of_the_logits():
    model = small(torch.float64)
    idx, targets = tokens(seed=3), tokens(seed=4)
    targets[0, :5] = -100  # ignored positions
    expected = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
    torch.testing.assert_close(model.loss(idx, targets), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ShapeError, match=r"GPT.loss: .*targets \(3, 15\)"):
        model.loss(idx, targets[:, 1:])


@settings(max_examples=8, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 8), heads=st.sampled_from([1, 2, 4]),
       width=st.sampled_from([8, 16]))
def test_any_size_runs_and_the_fused_loss_agrees(batch, length, heads, width):
    model = GPT(11, 8, n_layer=1, n_head=heads, n_embd=width).double()
    idx = torch.randint(0, 11, (batch, length))
    logits = model(idx)
    assert logits.shape == (batch, length, 11)
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten())
    torch.testing.assert_close(model.loss(idx, idx), expected, rtol=1e-12, atol=1e-12)


def test_dropout_draws_in_training_only():
    model = small(dropout=0.5)
    idx = tokens()
    model.train()
    assert not torch.equal(model(idx), model(idx))
    model.eval()
    assert torch.equal(model(idx), model(idx))


# -- generate ----------------------------------------------------------------------------------


def test_generate_is_deterministic_under_a_seeded_generator():
    model = small().train()
    prompt = tokens(2, 3)
    runs = [generate(model, prompt, 20, temperature=0.8, top_k=10,
                     generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (2, 23) and torch.equal(runs[0][:, :3], prompt)
    assert model.training  # the mode is restored
    other = generate(model, prompt, 20, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other, runs[0])


def test_generate_crops_the_context_to_block_size():
    model = small()  # block_size 16
    out = generate(model, tokens(1, 16), 10, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 26)
    # A long prompt works too: only its last 16 ids are read.
    long = torch.cat([tokens(1, 30, seed=5), out[:, :16]], dim=1)
    again = generate(model, long, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[:, -10:], out[:, -10:])


def test_generate_samples_from_the_tempered_top_k_distribution():
    model = small(torch.float64).eval()
    prompt = tokens(4, 5)
    out = generate(model, prompt, 1, temperature=0.5, top_k=3,
                   generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(prompt)[:, -1] / 0.5
    top = torch.topk(logits, 3)
    probs = torch.zeros_like(logits).scatter_(1, top.indices, torch.softmax(top.values, -1))
    expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out[:, -1:], expected)
    greedy = generate(model, prompt, 4, top_k=1)  # top_k=1: always the likeliest id
    for step in range(4):
        with torch.no_grad():
            best = model(greedy[:, : 5 + step])[:, -1].argmax(-1)
        assert torch.equal(greedy[:, 5 + step], best)


def test_generate_needs_no_graph_and_refuses_bad_options():
    model = small()
    out = generate(model, tokens(1, 2), 2)
    assert not out.requires_grad and all(p.grad is None for p in model.parameters())
    for kwargs, words in [({"temperature": 0.0}, "temperature > 0"), ({"top_k": 0}, "top_k"),
                          ({"max_new_tokens": -1}, "max_new_tokens")]:
        with pytest.raises(ShapeError, match=words):
            generate(model, tokens(1, 2), **{"max_new_tokens": 2, **kwargs})
    with pytest.raises(ShapeError, match=r"generate: .*\(B, T\)"):
        generate(model, torch.randn(1, 2), 2)


# -- AdamW groups --------------------------------------------------------------------------------


def test_param_groups_decay_linear_weights_only_each_parameter_once():
    model = small(bias=True)
    decay, no_decay = gpt_param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for group in (decay, no_decay) for p in group["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    linears = {f"{n}.weight" for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    assert decayed == linears and len(decayed) == 2 * 4  # c_attn, c_proj, c_fc, c_proj a block
    assert id(model.lm_head.weight) in {id(p) for p in no_decay["params"]}  # wte's, tied
    torch.optim.AdamW(gpt_param_groups(model, 0.1), lr=1e-3)  # AdamW takes them as they are


# -- config ----------------------------------------------------------------------------------------


def test_config_composes_and_checks_the_keys():
    assert config.check_overrides(["model=gpt", "model.n_layer=2", "model.block_size=null"]) == 1
    for override, key in [("model.n_layer=0", "model.n_layer"), ("model.dropout=1.0",
                          "model.dropout"), ("model.block_size=0", "model.block_size"),
                          ("+model.vocab=3", "model.vocab")]:
        with pytest.raises(config.ConfigError) as caught:
            config.check_overrides(["model=gpt", override])
        assert caught.value.key == key, override
