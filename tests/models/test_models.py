"""Model builders: built only from trainer.nn, sized by the data, refusing what doesn't fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import trainer.nn as tnn
from trainer import config, data, models
from trainer.models.attention import AttentionClassifier

#: Modules that only route data to their children.
CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Identity)


def leaf_classes(model: torch.nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if not list(m.children())}


def assert_only_explicit_layers(model: torch.nn.Module) -> None:
    explicit = set(tnn.TWINS.values())
    for module in model.modules():
        cls = type(module)
        # Composites from trainer.models hold trainer.nn layers, checked on their own.
        if isinstance(module, CONTAINERS) or cls.__module__.startswith("trainer.models"):
            continue
        assert cls in explicit, f"{cls.__module__}.{cls.__name__} is not a trainer.nn layer"


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """Each model and data option as Hydra composes it (plain dicts); data=tensors reads 3x8x8
    images from a file written here, data=text a few lines."""
    folder = tmp_path_factory.mktemp("tensors")
    images, text = folder / "images.npz", folder / "lines.txt"
    np.savez(images, x=np.random.default_rng(0).random((20, 3, 8, 8)), y=np.arange(20) % 4)
    text.write_text("to be or not to be\n" * 50)
    required = {"data=tensors": [f"data.path={images}"], "data=text": [f"data.path={text}"]}

    def composed_option(group: str, name: str) -> dict:
        choice = f"{group}={name}"
        return config.to_plain(compose("config", [choice, *required.get(choice, [])]))[group]

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config.config_dir()), version_base="1.3"):
        options = {group: {name: composed_option(group, name)
                           for name in config.option_names(group)}
                   for group in ("model", "data")}
    GlobalHydra.instance().clear()
    return options


def test_every_model_with_every_compatible_data_set_builds_and_runs(composed, tmp_path):
    built = 0
    for data_name, data_cfg in composed["data"].items():
        if data_cfg["name"] in ("shakespeare_char", "text"):
            continue  # token ids, for model=gpt alone: tests/models/test_gpt.py
        datamodule = data.build({**data_cfg, "root": str(tmp_path)}, seed=0)
        for model_name, model_cfg in composed["model"].items():
            if not models.accepts(model_name, datamodule.input_shape):
                with pytest.raises(models.ModelInputError):
                    models.build(model_cfg, datamodule.input_shape, datamodule.num_classes)
                continue
            model = models.build(model_cfg, datamodule.input_shape, datamodule.num_classes)
            assert_only_explicit_layers(model)
            model.eval()
            logits = model(torch.randn(3, *datamodule.input_shape))
            # an autoencoder gives images back, the others a logit per class
            expected = datamodule.input_shape if model_name == "autoencoder" else \
                (datamodule.num_classes,)
            assert logits.shape == (3, *expected), (data_name, model_name)
            assert torch.isfinite(logits).all()
            built += 1
    # mlp, attention and rnn take all 7 sets of features; cnn and autoencoder the 4 image sets
    # (tensors too); cnn1d mnist1d.
    assert built == 7 + 7 + 7 + 4 + 4 + 1


@pytest.mark.parametrize("name, shape", [
    ("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (3, 28, 28)), ("cnn1d", (1, 40)),
    ("attention", (1, 8, 8)), ("attention", (2, 40)), ("attention", (2,)),
])
def test_gradients_reach_every_parameter(name, shape):
    model = models.build({"name": name}, shape, 5)
    model.train()
    loss = tnn.CrossEntropyLoss()(model(torch.randn(4, *shape)), torch.tensor([0, 1, 2, 4]))
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


def test_mlp_layers_follow_the_options():
    model = models.build({"name": "mlp", "hidden": [7, 5], "norm": "layer", "dropout": 0.5,
                          "activation": "tanh"}, (2, 3), 4)
    classes = leaf_classes(model)
    assert {tnn.Flatten, tnn.Linear, tnn.LayerNorm, tnn.Tanh, tnn.Dropout} <= classes
    widths = [m.out_features for m in model.modules() if isinstance(m, tnn.Linear)]
    assert widths == [7, 5, 4]


def test_cnn_sizes_its_head_from_the_image():
    model = models.build({"name": "cnn", "channels": [4, 8], "hidden": []}, (1, 28, 28), 10)
    classifier = [m for m in model.modules() if isinstance(m, tnn.Linear)][-1]
    assert classifier.in_features == 8 * 7 * 7  # two 2x2 pools: 28 -> 14 -> 7


def test_cnn1d_sizes_its_head_from_the_signal():
    strided = models.build({"name": "cnn1d", "channels": [4, 4], "stride": 2, "kernel_size": 5,
                            "pool_every": 0, "hidden": []}, (1, 40), 10)
    classifier = [m for m in strided.modules() if isinstance(m, tnn.Linear)][-1]
    assert classifier.in_features == 4 * 10  # stride 2 twice: 40 -> 20 -> 10
    pooled = models.build({"name": "cnn1d", "channels": [4, 4, 4], "pool_every": 1,
                           "hidden": []}, (1, 40), 10)
    classifier = [m for m in pooled.modules() if isinstance(m, tnn.Linear)][-1]
    assert classifier.in_features == 4 * 5  # a pool after each conv: 40 -> 20 -> 10 -> 5
    assert pooled(torch.randn(2, 1, 40)).shape == (2, 10)


def test_attention_tokens():
    assert AttentionClassifier.token_layout((1, 8, 8), 4) == (8, 8)  # rows
    assert AttentionClassifier.token_layout((2, 40), 4) == (10, 8)   # chunks
    assert AttentionClassifier.token_layout((2,), 4) == (2, 1)       # coordinates
    model = AttentionClassifier((2, 40), 3, dim=16, heads=2, layers=1, patch=4)
    x = torch.randn(2, 2, 40)
    # Token t holds samples [4t, 4t + 4) of both channels.
    tokens = model.tokenize(x)
    assert torch.equal(tokens[1, 3], torch.cat([x[1, 0, 12:16], x[1, 1, 12:16]]))


@pytest.mark.parametrize("model_cfg, shape, key", [
    ({"name": "cnn"}, (2,), "model"),
    ({"name": "cnn1d"}, (1, 8, 8), "model"),
    ({"name": "attention", "heads": 3}, (1, 8, 8), "model.heads"),
    ({"name": "attention", "patch": 3}, (1, 40), "model.patch"),
    ({"name": "mlp", "activation": "swish"}, (2,), "model.activation"),
    ({"name": "nope"}, (2,), "model.name"),
])
def test_models_refuse_with_the_key_to_fix(model_cfg, shape, key):
    with pytest.raises(models.ModelInputError) as caught:
        models.build(model_cfg, shape, 3)
    assert caught.value.key == key
