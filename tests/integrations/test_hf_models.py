"""Hugging Face transformers models, converted with one call: loss and every parameter's
gradient equal native autograd's, and every compute node of the backward graph is a
hand-written rule (shape ops counted apart).

Small configs, random init, nothing downloaded (HF_HUB_OFFLINE=1); dropout off so that the
native and explicit runs draw nothing. ``transformers`` is a test dependency (the dev extra).
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="pip install -e '.[dev]'")

import trainer.functional as F  # noqa: E402
import trainer.nn as nn  # noqa: E402
from trainer import testing  # noqa: E402


def gpt2():
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64,
                                     n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    ids = torch.randint(0, 64, (2, 8))
    return transformers.GPT2LMHeadModel(config), {"input_ids": ids, "labels": ids}


def llama():
    config = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=2,
                                      num_key_value_heads=1, hidden_size=32,
                                      intermediate_size=64, vocab_size=64,
                                      max_position_embeddings=32, bos_token_id=0,
                                      eos_token_id=0, pad_token_id=0)
    ids = torch.randint(0, 64, (2, 8))
    return transformers.LlamaForCausalLM(config), {"input_ids": ids, "labels": ids}


def bert():
    config = transformers.BertConfig(num_hidden_layers=2, num_attention_heads=2,
                                     hidden_size=32, intermediate_size=64, vocab_size=64,
                                     max_position_embeddings=32, num_labels=3,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids = torch.randint(0, 64, (2, 8))
    return (transformers.BertForSequenceClassification(config),
            {"input_ids": ids, "labels": torch.tensor([0, 2])})


def resnet():
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                       num_labels=3)
    return (transformers.ResNetForImageClassification(config),
            {"pixel_values": torch.randn(2, 3, 32, 32), "labels": torch.tensor([0, 2])})


MODELS = {"gpt2": gpt2, "llama": llama, "bert": bert, "resnet": resnet}


def prepared(name: str, dtype: torch.dtype):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model = model.to(dtype).train()
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    return model, inputs


def loss_and_grads(model, inputs, cross_entropy=None):
    """The model's own loss, or (``cross_entropy`` given) that function of its logits: the
    language models' own loss casts the logits to float32 (``logits.float()``), which would
    cap a float64 comparison at float32's precision."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cross_entropy is None:
        loss = model(**inputs).loss
    else:
        labels = inputs["labels"]
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        if logits.dim() == 3:  # next-token prediction: position t predicts token t + 1
            logits, labels = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
        loss = cross_entropy(logits, labels)
    return loss, torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name", list(MODELS))
def test_converted_model_gives_native_loss_and_gradients(name, dtype, tolerance):
    model, inputs = prepared(name, dtype)
    explicit, report = nn.convert(model)
    own_loss = dtype == torch.float32  # float64: a float64 loss of the logits (see above)
    native_loss, native_grads = loss_and_grads(
        model, inputs, None if own_loss else torch.nn.functional.cross_entropy)
    loss, grads = loss_and_grads(explicit, inputs, None if own_loss else F.cross_entropy)
    torch.testing.assert_close(loss, native_loss, rtol=tolerance, atol=tolerance)
    largest = max(g.abs().max() for g in native_grads if g is not None)
    for ours, theirs in zip(grads, native_grads, strict=True):
        if theirs is None:
            assert ours is None or not ours.any()
            continue
        assert (ours - theirs).abs().max() / largest < tolerance


@pytest.mark.parametrize("name", list(MODELS))
def test_every_compute_node_is_a_hand_written_rule(name):
    model, inputs = prepared(name, torch.float64)
    explicit, report = nn.convert(model)
    loss = explicit(**inputs).loss
    nodes = testing.graph_node_counts(loss)
    assert not nodes["builtin"], f"{name}: built-in backward nodes {nodes['builtin']}"
    assert nodes["explicit"], name
    assert report.calls.complete, f"{name}: {report.calls}"


def test_converted_model_generates_as_the_native_one():
    model, inputs = prepared("gpt2", torch.float32)
    explicit, report = nn.convert(model)
    prompt = inputs["input_ids"][:, :4]
    with torch.no_grad():
        native = model.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
        ours = explicit.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, native)
    assert report.calls.explicit["addmm"] and report.calls.complete


@pytest.mark.parametrize("name", ["gpt2", "resnet"])
def test_a_compiled_training_step_matches_eager(name):
    """torch.compile traces the converted model (dynamo sees through the mode, so the
    compiled graph runs torch's own ops: see trainer.explicit's docstring)."""
    model, inputs = prepared(name, torch.float32)
    explicit, _ = nn.convert(model)
    eager_loss, eager_grads = loss_and_grads(explicit, inputs)
    torch._dynamo.reset()
    compiled = torch.compile(explicit, backend="aot_eager")
    loss, grads = loss_and_grads(compiled, inputs)
    torch.testing.assert_close(loss, eager_loss)
    for ours, theirs in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# -- beyond the four: other architectures, tried the same way -----------------------------------

def _ids():
    return torch.randint(1, 64, (2, 8))


def _decoder(config_class, model_class, **options):
    def build():
        config = config_class(vocab_size=64, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=32, **options)
        ids = _ids()
        return model_class(config), {"input_ids": ids, "labels": ids}
    return build


def _image_classifier(model_class, config):
    def build():
        return model_class(config()), {"pixel_values": torch.randn(2, 3, 32, 32),
                                       "labels": torch.tensor([0, 1])}
    return build


def _text_classifier(model_class, config):
    def build():
        return model_class(config()), {"input_ids": _ids(), "labels": torch.tensor([0, 2])}
    return build


def _seq2seq(model_class, config):
    def build():
        return model_class(config()), {"input_ids": _ids(), "labels": _ids()}
    return build


T = transformers
#: Architectures the rules were not written against: rotary embeddings (Mistral, Qwen2, Phi-3,
#: Gemma, GPT-NeoX), learned positions (OPT, BART), encoders (RoBERTa, DistilBERT), relative
#: position buckets (T5), patches (ViT), windows (Swin), depthwise convs and ReLU6
#: (MobileNetV2), channels-last LayerNorm (ConvNeXt). Dropout off throughout.
OTHER_MODELS = {
    "mistral": _decoder(T.MistralConfig, T.MistralForCausalLM, num_key_value_heads=2),
    "qwen2": _decoder(T.Qwen2Config, T.Qwen2ForCausalLM, num_key_value_heads=2),
    "phi3": _decoder(T.Phi3Config, T.Phi3ForCausalLM, num_key_value_heads=2, pad_token_id=0,
                     eos_token_id=0, bos_token_id=0),
    "gemma": _decoder(T.GemmaConfig, T.GemmaForCausalLM, num_key_value_heads=2, head_dim=8),
    "gpt_neox": _decoder(T.GPTNeoXConfig, T.GPTNeoXForCausalLM),
    "opt": _seq2seq(T.OPTForCausalLM, lambda: T.OPTConfig(
        vocab_size=64, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=32, word_embed_proj_dim=32, dropout=0.0)),
    "roberta": _text_classifier(T.RobertaForSequenceClassification, lambda: T.RobertaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=40, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
    "distilbert": _text_classifier(T.DistilBertForSequenceClassification, lambda: T.DistilBertConfig(
        vocab_size=64, dim=32, hidden_dim=64, n_layers=2, n_heads=4, max_position_embeddings=32,
        num_labels=3, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)),
    "t5": _seq2seq(T.T5ForConditionalGeneration, lambda: T.T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        dropout_rate=0.0, decoder_start_token_id=0)),
    "bart": _seq2seq(T.BartForConditionalGeneration, lambda: T.BartConfig(
        vocab_size=64, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=32, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0)),
    "vit": _image_classifier(T.ViTForImageClassification, lambda: T.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_labels=3, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)),
    "swin": _image_classifier(T.SwinForImageClassification, lambda: T.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
        window_size=4, num_labels=3, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, drop_path_rate=0.0)),
    "mobilenet_v2": _image_classifier(T.MobileNetV2ForImageClassification, lambda: T.MobileNetV2Config(
        depth_multiplier=0.25, num_labels=3, image_size=32, classifier_dropout_prob=0.0)),
    "convnext": _image_classifier(T.ConvNextForImageClassification, lambda: T.ConvNextConfig(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3)),
}


@pytest.mark.parametrize("name", list(OTHER_MODELS))
def test_other_architectures_are_explicit_and_equal_to_native(name):
    """One call of convert, nothing fitted to the model: every compute node of the backward
    graph is a rule, nothing falls back, and the loss and every gradient equal native's
    (float32, the models' own loss)."""
    torch.manual_seed(0)
    model, inputs = OTHER_MODELS[name]()
    model.train()
    native_loss, native_grads = loss_and_grads(model, inputs)
    explicit, report = nn.convert(model)
    loss = explicit(**inputs).loss
    nodes = testing.graph_node_counts(loss)
    assert not nodes["builtin"], f"{name}: built-in backward nodes {nodes['builtin']}"
    assert report.calls.complete, f"{name}: {report.calls}"
    grads = torch.autograd.grad(loss, [p for p in explicit.parameters() if p.requires_grad],
                                allow_unused=True)
    torch.testing.assert_close(loss, native_loss, rtol=1e-5, atol=1e-6)
    largest = max(g.abs().max() for g in native_grads if g is not None)
    for ours, theirs in zip(grads, native_grads, strict=True):
        assert (ours is None) == (theirs is None)
        if theirs is not None:
            assert (ours - theirs).abs().max() / largest < 1e-4
