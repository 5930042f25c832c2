"""GradientFlow: per-layer norms, update ratios and dead ReLUs, on the steps asked for only."""

from __future__ import annotations

import copy

import pytest
import torch
from callback_helpers import (
    Blobs,
    RecordingLogger,
    quiet_trainer,
    read_events,
    recipe,
    tensorboard_logger,
)
from lightning.pytorch.callbacks import Callback

from trainer.callbacks import GradientFlow
from trainer.callbacks.gradient_flow import dead_fraction, histogram, layers_with_parameters

LAYERS = ["model.head.dense0.linear", "model.head.classifier"]


class FirstBatch(Callback):
    """Keeps the first training batch and the weights it met."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.batch = batch
            self.model = copy.deepcopy(pl_module.model)
            self.loss = copy.deepcopy(pl_module.loss)


def test_logs_each_layer_on_every_nth_step_with_the_tags_named_by_module_path(tmp_path):
    logger = RecordingLogger()
    trainer = quiet_trainer(tmp_path, [GradientFlow(every_n_steps=3)], logger, max_steps=7,
                            limit_val_batches=0)
    trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    flow = logger.tags("grad_flow/")
    expected = {f"grad_flow/{kind}/{layer}" for kind in ("grad_norm", "weight_norm",
                                                         "update_ratio") for layer in LAYERS}
    expected.add("grad_flow/dead_relu/model.head.dense0.activation")
    assert set(flow) == expected
    assert all(sorted(steps) == [0, 3, 6] for steps in flow.values())
    assert all(value > 0 for tag, steps in flow.items() for value in steps.values()
               if "dead_relu" not in tag)


def test_update_ratio_is_lr_times_grad_norm_over_weight_norm_for_plain_sgd(tmp_path):
    lr = 0.1
    logger, first = RecordingLogger(), FirstBatch()
    trainer = quiet_trainer(tmp_path, [first, GradientFlow(every_n_steps=2)], logger,
                            max_steps=5, limit_val_batches=0)
    trainer.fit(recipe(optimizer={"name": "sgd", "lr": lr}), datamodule=Blobs(batch_size=16))
    for layer in LAYERS:
        for step in (0, 2, 4):
            grad = logger.steps[f"grad_flow/grad_norm/{layer}"][step]
            weight = logger.steps[f"grad_flow/weight_norm/{layer}"][step]
            ratio = logger.steps[f"grad_flow/update_ratio/{layer}"][step]
            assert ratio == pytest.approx(lr * grad / weight, rel=1e-4)
    # The step-0 norms, recomputed by hand from the first batch and the initial weights.
    x, y = first.batch
    first.loss(first.model(x), y).backward()
    for name, layer in layers_with_parameters(first.model).items():
        params = list(layer.parameters())
        grad = torch.cat([p.grad.flatten() for p in params]).norm()
        weight = torch.cat([p.detach().flatten() for p in params]).norm()
        assert logger.steps[f"grad_flow/grad_norm/model.{name}"][0] == pytest.approx(
            float(grad), rel=1e-5)
        assert logger.steps[f"grad_flow/weight_norm/model.{name}"][0] == pytest.approx(
            float(weight), rel=1e-6)


def test_dead_relu_fraction_on_a_layer_with_half_its_units_dead(tmp_path):
    model = recipe(model={"name": "mlp", "hidden": [8], "norm": None, "dropout": 0.0})
    linear = model.model.head.dense0.linear
    with torch.no_grad():
        # Units 0-3 get -1 whatever the input: ReLU outputs 0 for every sample, forever (their
        # gradient is 0 too). Units 4-7 get +50 plus a small slope: positive for any sample.
        linear.weight[:4] = 0
        linear.bias[:4] = -1
        linear.weight[4:] *= 0.01
        linear.bias[4:] = 50
    logger = RecordingLogger()
    trainer = quiet_trainer(tmp_path, [GradientFlow(every_n_steps=2)], logger, max_steps=4,
                            limit_val_batches=0)
    trainer.fit(model, datamodule=Blobs(batch_size=16))
    assert logger.steps["grad_flow/dead_relu/model.head.dense0.activation"] == {0: 0.5, 2: 0.5}


def test_dead_fraction_counts_units_zero_for_every_sample():
    output = torch.tensor([[0.0, 1.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 2.0]])
    assert dead_fraction(output) == 0.5  # units 0 and 2 never fire
    feature_maps = torch.zeros(3, 2, 4, 4)
    feature_maps[1, 0] = 1.0  # channel 0 fires everywhere for one sample; channel 1 never
    assert dead_fraction(feature_maps) == 0.5


class HookCount(Callback):
    """How many forward hooks the ReLUs carry during each step's backward."""

    def __init__(self):
        self.counts: dict[int, int] = {}

    def on_after_backward(self, trainer, pl_module):
        self.counts[trainer.global_step] = sum(
            len(m._forward_hooks) for m in pl_module.modules() if isinstance(m, torch.nn.ReLU))


def test_relu_hooks_exist_only_on_logged_steps(tmp_path):
    flow, count = GradientFlow(every_n_steps=3), HookCount()
    model = recipe()
    trainer = quiet_trainer(tmp_path, [flow, count], RecordingLogger(), max_steps=7,
                            limit_val_batches=0)
    trainer.fit(model, datamodule=Blobs(batch_size=16))
    assert count.counts == {0: 1, 1: 0, 2: 0, 3: 1, 4: 0, 5: 0, 6: 1}
    assert not any(m._forward_hooks for m in model.modules())


def test_histograms_go_to_tensorboard_on_their_own_schedule(tmp_path):
    trainer = quiet_trainer(tmp_path, [GradientFlow(every_n_steps=2,
                                                    histograms_every_n_steps=3)],
                            tensorboard_logger(tmp_path), max_steps=7, limit_val_batches=0)
    trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    events = read_events(tmp_path)
    histograms = events.Tags()["histograms"]
    for layer in LAYERS:
        for parameter in ("weight", "bias"):
            for kind in ("weights", "grads"):
                tag = f"{kind}/{layer}.{parameter}"
                assert tag in histograms
                assert [e.step for e in events.Histograms(tag)] == [0, 3, 6]
    steps = [e.step for e in events.Scalars("grad_flow/update_ratio/model.head.classifier")]
    assert steps == [0, 2, 4, 6]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_histogram_counts_what_numpy_counts_for_tensorboard(dtype):
    """The buckets add_histogram(values, bins=64) would write (numpy's even bins from min to
    max), and the same summary statistics."""
    np = pytest.importorskip("numpy")
    values = torch.randn(64, 64, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    got = histogram(values)
    as_numpy = values.double().numpy().reshape(-1)
    counts, edges = np.histogram(as_numpy, bins=64)
    assert got["bucket_counts"] == counts.tolist()
    assert got["bucket_limits"] == pytest.approx(edges[1:].tolist(), rel=1e-6)
    assert (got["min"], got["max"], got["num"]) == (as_numpy.min(), as_numpy.max(), 20480)
    assert got["sum"] == pytest.approx(as_numpy.sum(), rel=1e-9, abs=1e-9)
    assert got["sum_squares"] == pytest.approx(as_numpy @ as_numpy, rel=1e-9)


def test_histogram_of_a_constant_puts_every_value_in_one_bucket():
    got = histogram(torch.full((10,), 3.0), bins=4)
    assert got["bucket_counts"] == [0, 0, 10, 0]  # buckets from 2 to 4, as torch.histc's
    assert got["bucket_limits"] == [2.5, 3.0, 3.5, 4.0]
    assert (got["min"], got["max"], got["sum"], got["sum_squares"]) == (3.0, 3.0, 30.0, 90.0)


def test_no_histograms_when_asked_for_none(tmp_path):
    trainer = quiet_trainer(tmp_path, [GradientFlow(every_n_steps=1,
                                                    histograms_every_n_steps=0)],
                            tensorboard_logger(tmp_path), max_steps=2, limit_val_batches=0)
    trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    events = read_events(tmp_path)
    assert not events.Tags()["histograms"]
    assert "grad_flow/grad_norm/model.head.classifier" in events.Tags()["scalars"]


@pytest.mark.parametrize("options", [{"every_n_steps": 0}, {"histograms_every_n_steps": -1}])
def test_refuses_bad_frequencies(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        GradientFlow(**options)
