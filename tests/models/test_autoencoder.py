"""model=autoencoder: sizes for digits and Fashion-MNIST images, every up path, an explicit graph,
torch's gradients, and refusals naming the key to fix."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.nn as tnn
from trainer import models, testing
from trainer.models.autoencoder import Autoencoder

DIGITS, FASHION = (1, 8, 8), (1, 28, 28)
UPS = [{"up": "transposed"}, {"up": "upsample", "upsample_mode": "nearest"},
       {"up": "upsample", "upsample_mode": "bilinear"}]


def leaves(model: torch.nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if not list(m.children())]


@pytest.mark.parametrize("shape, code", [(DIGITS, (32, 2, 2)), (FASHION, (32, 7, 7))])
@pytest.mark.parametrize("options", UPS)
def test_reconstructions_have_the_image_shape(shape, code, options):
    model = models.build({"name": "autoencoder", **options}, shape, 10)
    x = torch.randn(5, *shape)
    assert model.code_shape == code  # two stride-2 convs: 8 -> 4 -> 2, 28 -> 14 -> 7
    assert model.encode(x).shape == (5, 32)  # latent: 32 by default
    assert model(x).shape == (5, *shape)
    maps = models.build({"name": "autoencoder", "latent": None, **options}, shape, 10)
    assert maps.encode(x).shape == (5, *code) and maps(x).shape == (5, *shape)


def test_the_layers_follow_the_options():
    transposed = Autoencoder(FASHION, channels=[4, 8, 12], norm=None, activation="tanh")
    kinds = leaves(transposed)
    assert kinds.count(tnn.Conv2d) == 3 and kinds.count(tnn.ConvTranspose2d) == 3
    assert tnn.BatchNorm2d not in kinds and tnn.Tanh in kinds
    ups = [m for m in transposed.modules() if isinstance(m, tnn.ConvTranspose2d)]
    # 28 -> 14 -> 7 -> 4 down; back up 4 -> 7 (output_padding 0), 7 -> 14, 14 -> 28 (1)
    assert [m.output_padding for m in ups] == [(0, 0), (1, 1), (1, 1)]
    assert [m.out_channels for m in ups] == [8, 4, 1] and ups[-1].bias is not None
    upsampled = Autoencoder(DIGITS, up="upsample", upsample_mode="bilinear")
    kinds = leaves(upsampled)
    assert kinds.count(tnn.Upsample) == 2 and tnn.ConvTranspose2d not in kinds
    assert kinds.count(tnn.Conv2d) == 4 and kinds.count(tnn.BatchNorm2d) == 3  # not the last
    assert [m.size for m in upsampled.modules() if isinstance(m, tnn.Upsample)] == [(4, 4),
                                                                                   (8, 8)]


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 3), height=st.integers(2, 30), width=st.integers(2, 30),
       depth=st.integers(1, 3), up=st.sampled_from(["transposed", "upsample"]),
       latent=st.sampled_from([None, 3]))
def test_any_image_size_comes_back_whole(channels, height, width, depth, up, latent):
    model = Autoencoder((channels, height, width), channels=[2] * depth, up=up, latent=latent)
    assert model(torch.randn(2, channels, height, width)).shape == (2, channels, height, width)


@pytest.mark.parametrize("options", [*UPS, {"loss": "bce_with_logits", "norm": None}])
def test_every_node_is_an_explicit_rule(options):
    model = Autoencoder(FASHION, channels=[4, 8], latent=6, **options)
    x = torch.randn(3, *FASHION)
    out = model(x)
    loss = tnn.MSELoss()(out, x) if model.loss == "mse" else \
        tnn.BCEWithLogitsLoss()(out, torch.rand_like(x))
    counts = testing.graph_node_counts(loss)
    assert counts["builtin"] == {} and counts["shape"] == {}, counts
    up = {"upsample": {"InterpolateBackward": 2, "Conv2dBackward": 4}}.get(
        options.get("up"), {"ConvTranspose2dBackward": 2, "Conv2dBackward": 2})
    assert up.items() <= counts["explicit"].items(), counts["explicit"]


@pytest.mark.parametrize("shape", [DIGITS, FASHION])
@pytest.mark.parametrize("options", [*UPS, {"loss": "bce_with_logits"}])
def test_gradients_equal_the_torch_twins(shape, options):
    torch.manual_seed(0)
    model = Autoencoder(shape, channels=[4, 8], latent=6, **options).double().train()
    twin = tnn.to_torch(model)
    assert not any(type(m).__module__.startswith("trainer.nn") for m in twin.modules())
    x = torch.randn(4, *shape, dtype=torch.float64)
    target = torch.rand_like(x)
    for net, loss_fn in ((model, tnn.MSELoss() if model.loss == "mse" else
                          tnn.BCEWithLogitsLoss()),
                         (twin, torch.nn.MSELoss() if model.loss == "mse" else
                          torch.nn.BCEWithLogitsLoss())):
        loss_fn(net(x), target).backward()
    for (name, ours), theirs in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert ours.grad is not None and ours.grad.abs().sum() > 0, name
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_labels_are_ignored_and_the_task_says_so():
    assert Autoencoder.task == models.MODELS["autoencoder"].task == "reconstruct"
    assert models.accepts("autoencoder", FASHION) and not models.accepts("autoencoder", (1, 40))
    ten, three = (models.build({"name": "autoencoder"}, DIGITS, n) for n in (10, 3))
    assert [p.shape for p in ten.parameters()] == [p.shape for p in three.parameters()]


@pytest.mark.parametrize("options, shape, key, words", [
    ({}, (1, 40), "model", "autoencoder needs images shaped (C, H, W); the data gives (1, 40)"),
    ({}, (2,), "model", "the data gives (2,)"),
    ({"up": "pixel_shuffle"}, DIGITS, "model.up", "unknown up 'pixel_shuffle'"),
    ({"up": "upsample", "upsample_mode": "bicubic"}, DIGITS, "model.upsample_mode",
     "known: nearest, bilinear"),
    ({"loss": "l1"}, DIGITS, "model.loss", "unknown loss 'l1'"),
    ({"channels": []}, DIGITS, "model.channels", "got []"),
    ({"latent": 0}, DIGITS, "model.latent", "must be >= 1 or null, got 0"),
])
def test_refusals_name_the_key(options, shape, key, words):
    with pytest.raises(models.ModelInputError) as caught:
        models.build({"name": "autoencoder", **options}, shape, 10)
    assert caught.value.key == key and words in caught.value.problem, caught.value


def test_a_batch_of_other_images_is_refused_with_both_shapes():
    model = Autoencoder(DIGITS)
    with pytest.raises(models.ModelInputError, match=r"built for images \(1, 8, 8\) got a batch "
                       r"of shape \(2, 1, 28, 28\), expected \(B, 1, 8, 8\)"):
        model(torch.randn(2, *FASHION))
