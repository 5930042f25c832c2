"""Datamodules: shapes known before loading, deterministic splits, train-only statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer import data
from trainer.data.toy2d import make_spirals

SMALL = {
    "digits": {},
    "moons": {"num_samples": 400},
    "spirals": {"num_samples": 600, "classes": 4},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_splits_and_normalization(name):
    datamodule = data.build({"name": name, **SMALL[name]}, seed=0)
    declared = (tuple(datamodule.input_shape), datamodule.num_classes)
    datamodule.setup()
    assert (tuple(datamodule.input_shape), datamodule.num_classes) == declared
    x_train, y_train = datamodule.train
    assert x_train.shape[1:] == datamodule.input_shape and x_train.dtype == torch.float32
    assert y_train.dtype == torch.int64
    assert set(y_train.unique().tolist()) == set(range(datamodule.num_classes))
    dims = [0, *range(2, x_train.dim())]
    assert torch.allclose(x_train.mean(dim=dims), torch.zeros(1), atol=1e-4)
    assert torch.allclose(x_train.std(dim=dims), torch.ones(1), atol=1e-3)
    total = sum(len(split[0]) for split in (datamodule.train, datamodule.val, datamodule.test))
    assert total == {"digits": 1797}.get(name, SMALL[name].get("num_samples"))


def test_splits_are_deterministic_and_disjoint():
    def splits():
        datamodule = data.build({"name": "digits"}, seed=0)
        datamodule.setup()
        return datamodule

    a, b = splits(), splits()
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.val[1], b.val[1])
    # The run seed leaves the split alone by default; split_seed moves it.
    c = data.build({"name": "digits"}, seed=7)
    c.setup()
    assert torch.equal(a.test[0], c.test[0])
    d = data.build({"name": "digits", "split_seed": 1}, seed=0)
    d.setup()
    assert not torch.equal(a.test[0], d.test[0])
    rows = {tuple(r.tolist()) for r in a.train[0].flatten(1)}
    assert not any(tuple(r.tolist()) in rows for r in a.test[0].flatten(1)[:50])


def test_stratified_split_keeps_class_balance():
    datamodule = data.build({"name": "digits", "test_fraction": 0.2}, seed=0)
    datamodule.setup()
    counts = torch.bincount(datamodule.test[1], minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # about 20% of ~180 per class


def test_statistics_come_from_the_train_split_only():
    raw = data.build({"name": "moons", "num_samples": 400, "normalize": False}, seed=0)
    normalized = data.build({"name": "moons", "num_samples": 400}, seed=0)
    raw.setup(), normalized.setup()
    assert torch.allclose(normalized.mean, raw.train[0].mean(0, keepdim=True)[0])
    assert torch.allclose(normalized.std, raw.train[0].std(0, keepdim=True)[0])
    everything = torch.cat([raw.train[0], raw.val[0], raw.test[0]])
    assert not torch.allclose(normalized.mean, everything.mean(0), atol=1e-4)
    expected_test = (raw.test[0] - normalized.mean) / normalized.std
    assert torch.allclose(normalized.test[0], expected_test, atol=1e-6)


def test_spirals_arms_wind_around_the_origin():
    points, labels = make_spirals(900, classes=3, turns=1.0, noise=0.0, seed=0)
    radius = np.hypot(points[:, 0], points[:, 1])
    assert radius.max() <= 1.0 + 1e-6
    assert np.bincount(labels).tolist() == [300, 300, 300]


def test_mnist1d_is_generated_offline_and_cached(tmp_path, monkeypatch):
    import urllib.request

    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("MNIST-1D must be generated, not downloaded")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    state = np.random.get_state()[1].copy()
    datamodule = data.build({"name": "mnist1d", "root": str(tmp_path)}, seed=0)
    assert datamodule.input_shape == (1, 40) and datamodule.num_classes == 10
    datamodule.setup()
    assert np.array_equal(np.random.get_state()[1], state)  # global NumPy state untouched
    assert datamodule.cache_file.is_file()
    assert len(datamodule.train[0]) + len(datamodule.val[0]) == 4000
    assert datamodule.test[0].shape == (1000, 1, 40)
    again = data.build({"name": "mnist1d", "root": str(tmp_path)}, seed=0)
    again.setup()  # from the cache
    assert torch.equal(again.test[0], datamodule.test[0])


def test_unknown_data_set_is_refused():
    with pytest.raises(ValueError, match="unknown data set"):
        data.build({"name": "cifar"})
