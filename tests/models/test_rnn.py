"""model=rnn: a GRU, LSTM or plain-RNN classifier from trainer.nn, reading samples as
sequences; it builds, trains a step through explicit rules only, and its config is checked."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import trainer.functional as F
import trainer.nn as tnn
from trainer import config, models, testing


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("shape", [(1, 40), (40,), (2, 6, 5)])
def test_builds_and_trains_a_step(cell, shape):
    torch.manual_seed(0)
    model = models.build({"name": "rnn", "cell": cell, "hidden": 8, "layers": 2,
                          "bidirectional": True}, shape, 10)
    recurrent = {tnn.GRU: "gru", tnn.LSTM: "lstm", tnn.RNN: "rnn"}[type(model.recurrent)]
    assert recurrent == cell and model.recurrent.batch_first
    x, y = torch.randn(6, *shape), torch.arange(6) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = F.cross_entropy(model(x), y)
    builtin = testing.graph_node_counts(loss)["builtin"]
    assert not builtin, builtin  # every computation a rule (shape moves aside)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    optimizer.step()
    assert F.cross_entropy(model(x), y) < loss


def test_refuses_a_sample_it_cannot_read_as_a_sequence():
    with pytest.raises(models.ModelInputError, match="rnn takes points"):
        models.build({"name": "rnn"}, (1, 2, 3, 4), 10)
    with pytest.raises(models.ModelInputError, match="model.cell"):
        models.build({"name": "rnn", "cell": "transformer"}, (1, 40), 10)


@pytest.fixture
def composed():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config.config_dir()), version_base="1.3"):
        yield lambda *overrides: compose("config", list(overrides))
    GlobalHydra.instance().clear()


def test_the_experiment_composes_to_a_gru(composed):
    cfg = composed("experiment=mnist1d_gru")
    config.validate(cfg)
    assert cfg.model.name == "rnn" and cfg.model.cell == "gru" and cfg.data.name == "mnist1d"


@pytest.mark.parametrize("override, key, words", [
    ("model.cell=transformer", "model.cell", "one of"),
    ("model.hidden=0", "model.hidden", ">= 1"),
    ("model.dropout=1.0", "model.dropout", "[0.0, 1.0)"),
    ("+model.width=3", "model.width", "unknown key"),
])
def test_bad_config_values_name_their_key(composed, override, key, words):
    with pytest.raises(config.ConfigError) as caught:
        config.validate(composed("model=rnn", override))
    assert caught.value.key == key and words in caught.value.problem
