"""Whole-batch serving and its distributed-sampler semantics."""

from __future__ import annotations

import pytest
import torch

from trainer.data import batches
from trainer.data.batches import BatchSampler, TensorBatches, batch_loader


def test_tensor_batches_index_whole_batches():
    x, y = torch.arange(10.0).reshape(5, 2), torch.arange(5)
    xb, yb = TensorBatches(x, y)[[4, 0]]
    assert torch.equal(xb, x[[4, 0]]) and torch.equal(yb, torch.tensor([4, 0]))
    with pytest.raises(ValueError):
        TensorBatches(x, torch.arange(4))


def test_loader_serves_every_sample_once_per_epoch_in_batches():
    x, y = torch.arange(103.0)[:, None], torch.arange(103)
    loader = batch_loader(x, y, 10, shuffle=True, seed=3)
    seen = [b for b in loader]
    assert len(seen) == len(loader) == 11
    assert [len(b[1]) for b in seen] == [10] * 10 + [3]
    labels = torch.cat([b[1] for b in seen])
    assert sorted(labels.tolist()) == list(range(103))
    assert not torch.equal(labels, torch.arange(103))  # shuffled
    assert torch.equal(torch.cat([b[0][:, 0] for b in seen]).long(), labels)  # x, y stay paired


def test_shuffle_is_set_by_seed_and_epoch():
    def order(seed, epoch):
        sampler = BatchSampler(50, 50, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return next(iter(sampler))

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)


def test_without_set_epoch_each_pass_reshuffles():
    sampler = BatchSampler(50, 50, shuffle=True, seed=0)
    assert next(iter(sampler)) != next(iter(sampler))


def test_evaluation_order_is_fixed():
    sampler = BatchSampler(7, 3, shuffle=False)
    assert list(sampler) == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("world", [2, 3])
def test_shards_by_rank_like_distributed_sampler(monkeypatch, world):
    shards = []
    for rank in range(world):
        monkeypatch.setattr(batches, "_rank_and_world", lambda rank=rank: (rank, world))
        sampler = BatchSampler(10, 2, shuffle=True, seed=5, pad=True)
        sampler.set_epoch(1)
        shard = [i for batch in sampler for i in batch]
        assert len(sampler) == len(list(sampler))
        shards.append(shard)
    # Padded: every rank gets ceil(10 / world) samples, so ranks step in lockstep...
    assert {len(s) for s in shards} == {-(-10 // world)}
    # ...together they cover every sample, and the shards are disjoint but for the padding.
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(10))
    assert len(flat) - len(set(flat)) == -(-10 // world) * world - 10


def test_evaluation_shards_are_disjoint_without_padding(monkeypatch):
    shards = []
    for rank in range(3):
        monkeypatch.setattr(batches, "_rank_and_world", lambda rank=rank: (rank, 3))
        sampler = BatchSampler(10, 4, shuffle=False, pad=False)
        shards.append([i for batch in sampler for i in batch])
        assert len(sampler) == len(list(sampler))
    assert sorted(i for s in shards for i in s) == list(range(10))
