"""The LightningModule: the recipe's steps, optimizers and schedules, checkpoints, training."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from trainer import data
from trainer.callbacks import HParamsSummary, flatten
from trainer.recipe import Recipe, WarmupCosine, build_optimizer, scores

MLP = {"name": "mlp", "hidden": [32], "norm": None, "dropout": 0.0}


def small_recipe(**overrides) -> Recipe:
    options = dict(model=MLP, optimizer={"name": "sgd", "lr": 0.1},
                   scheduler={"name": "none"}, input_shape=[4], num_classes=3)
    options.update(overrides)
    return Recipe(**options)


def quiet_trainer(tmp_path, **options) -> L.Trainer:
    settings = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0, default_root_dir=tmp_path)
    settings.update(options)
    return L.Trainer(**settings)


class Points(data.TensorDataModule):
    """Three linearly separable blobs in 4-D."""

    name, input_shape, num_classes = "points", (4,), 3

    def load(self):
        generator = torch.Generator().manual_seed(0)
        y = torch.arange(300) % 3
        x = torch.randn(300, 4, generator=generator) * 0.3 + torch.eye(4)[y] * 3
        return (x[:240], y[:240]), (x[240:], y[240:])


def test_training_step_reads_as_the_recipe():
    import inspect

    source = inspect.getsource(Recipe.training_step)
    assert source.index("self.cook(x)") < source.index("self.taste(") < source.index(
        "self.adjust(loss)")
    assert not Recipe(MLP, {"name": "sgd", "lr": 0.1}, input_shape=[4],
                      num_classes=3).automatic_optimization


def test_adjust_steps_the_weights_and_clears_the_gradients(tmp_path):
    recipe = small_recipe(optimizer={"name": "sgd", "lr": 0.5, "grad_clip": 0.0})
    before = [p.detach().clone() for p in recipe.parameters()]
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(recipe, datamodule=Points(batch_size=16))
    assert trainer.global_step == 1
    after = list(recipe.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert all(p.grad is None for p in after)


def test_grad_clip_bounds_the_update(tmp_path):
    # With SGD and lr 1, the step equals the (clipped) gradient: its norm is at most the clip.
    recipe = small_recipe(optimizer={"name": "sgd", "lr": 1.0, "grad_clip": 1e-3})
    before = torch.cat([p.detach().flatten().clone() for p in recipe.parameters()])
    quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(
        recipe, datamodule=Points(batch_size=16))
    after = torch.cat([p.detach().flatten() for p in recipe.parameters()])
    assert (after - before).norm() == pytest.approx(1e-3, rel=1e-3)


class EvenPoints(Points):
    """Points with 256 training samples and no validation split: 16 batches of 16 pair up
    exactly into 8 batches of 32 (each epoch's order is one permutation, cut in order)."""

    def load(self):
        generator = torch.Generator().manual_seed(1)
        y = torch.arange(320) % 3
        x = torch.randn(320, 4, generator=generator) * 0.3 + torch.eye(4)[y] * 3
        return (x[:256], y[:256]), (x[256:], y[256:])


@pytest.mark.parametrize("scheduler", [{"name": "none"},
                                       {"name": "cosine", "warmup_steps": 2}])
def test_accumulating_k_batches_of_b_steps_as_one_batch_of_kb(tmp_path, scheduler):
    def trained(batch_size: int, k: int) -> tuple[list[torch.Tensor], int, float]:
        torch.manual_seed(0)
        recipe = small_recipe(optimizer={"name": "sgd", "lr": 0.5, "momentum": 0.9},
                              scheduler=scheduler, accumulate_grad_batches=k)
        trainer = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
        trainer.fit(recipe, datamodule=EvenPoints(batch_size=batch_size, val_fraction=0.0))
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        return [p.detach() for p in recipe.parameters()], trainer.global_step, lr

    accumulated, steps, lr = trained(batch_size=16, k=2)
    whole, whole_steps, whole_lr = trained(batch_size=32, k=1)
    assert steps == whole_steps == 16  # optimizer steps: 8 an epoch
    assert lr == pytest.approx(whole_lr)  # the schedule counts optimizer steps
    for a, b in zip(accumulated, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    unaccumulated, _, _ = trained(batch_size=16, k=1)
    assert not torch.allclose(unaccumulated[0], whole[0], atol=1e-3)  # the test can fail


def test_warmup_cosine_factor():
    factor = WarmupCosine(total=110, warmup=10, floor=0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert factor(110) == pytest.approx(0.1)
    assert factor(500) == pytest.approx(0.1)


@pytest.mark.parametrize("scheduler, epochs, expected", [
    ({"name": "none"}, 2, 0.1),
    ({"name": "step", "step_size": 1, "gamma": 0.5}, 2, 0.025),
    ({"name": "cosine", "min_lr_ratio": 0.0, "warmup_steps": 0}, 2, 0.0),
])
def test_schedulers_step_per_step_or_per_epoch(tmp_path, scheduler, epochs, expected):
    recipe = small_recipe(optimizer={"name": "sgd", "lr": 0.1}, scheduler=scheduler)
    quiet_trainer(tmp_path, max_epochs=epochs, limit_val_batches=0).fit(
        recipe, datamodule=Points(batch_size=60))
    lr = recipe.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("optimizer, kind", [
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, torch.optim.SGD),
    ({"name": "adam", "lr": 1e-3, "betas": [0.8, 0.9]}, torch.optim.Adam),
    ({"name": "adamw", "lr": 1e-3, "weight_decay": 0.1}, torch.optim.AdamW),
])
def test_build_optimizer(optimizer, kind):
    built = build_optimizer(torch.nn.Linear(2, 2).parameters(), optimizer)
    assert type(built) is kind
    assert built.param_groups[0]["lr"] == optimizer["lr"]


def test_nesterov_without_momentum_names_the_key():
    from trainer.models import ModelInputError

    with pytest.raises(ModelInputError) as caught:
        build_optimizer(torch.nn.Linear(2, 2).parameters(),
                        {"name": "sgd", "lr": 0.1, "nesterov": True, "momentum": 0.0})
    assert caught.value.key == "optimizer.nesterov"


def test_fit_validate_test_predict_log_the_stage_metrics(tmp_path):
    recipe = small_recipe(optimizer={"name": "adam", "lr": 0.05})
    trainer = quiet_trainer(tmp_path, max_epochs=3, log_every_n_steps=1)
    datamodule = Points(batch_size=32)
    trainer.fit(recipe, datamodule=datamodule)
    logged = set(trainer.callback_metrics)
    assert {"train/loss", "train/lr", "train/acc", "train/f1", "val/loss", "val/acc",
            "val/f1"} <= logged
    results = trainer.test(recipe, datamodule=datamodule, verbose=False)[0]
    assert set(results) == {"test/loss", "test/acc", "test/f1"}
    assert results["test/acc"] > 0.95
    probabilities = torch.cat(trainer.predict(recipe, datamodule=datamodule))
    assert probabilities.shape == (60, 3)
    assert torch.allclose(probabilities.sum(-1), torch.ones(60), atol=1e-5)


def test_per_step_values_are_logged_only_on_the_steps_the_logger_writes(tmp_path):
    from lightning.pytorch.loggers import Logger

    class Recording(Logger):
        name, version = "recording", 0
        steps: dict[str, list[int]] = {}

        def log_metrics(self, metrics, step=None):
            for key in metrics:
                self.steps.setdefault(key, []).append(step)

        def log_hyperparams(self, *args, **kwargs):
            pass

    recorder = Recording()
    trainer = quiet_trainer(tmp_path, max_epochs=3, log_every_n_steps=3, logger=recorder)
    datamodule = Points(batch_size=16)
    trainer.fit(small_recipe(), datamodule=datamodule)
    every_third = list(range(2, trainer.global_step, 3))  # steps count from 0
    assert trainer.global_step > 6 and len(every_third) < trainer.global_step / 2
    assert recorder.steps["train/loss"] == every_third
    assert recorder.steps["train/lr"] == every_third
    assert len(recorder.steps["train/acc"]) == 3  # one value an epoch
    assert len(recorder.steps["val/acc"]) == 3


def test_accuracy_is_plain_accuracy_not_a_class_average():
    recipe = small_recipe()
    confusion = recipe.test_confusion
    # 3 of 4 right, but class 1 (one sample) always wrong: plain accuracy 0.75, macro 0.667.
    logits = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [9.0, 0, 0], [0, 0, 9.0]])
    confusion.update(logits, torch.tensor([0, 0, 1, 2]))
    computed = scores(confusion.compute())
    assert computed["acc"] == pytest.approx(0.75)
    # F1: class 0 2·2/(2+3), class 1 0, class 2 1
    assert computed["f1"] == pytest.approx((0.8 + 0.0 + 1.0) / 3)


@pytest.mark.parametrize("seed", range(6))
def test_scores_equal_torchmetrics_accuracy_and_macro_f1(seed):
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
    )

    gen = torch.Generator().manual_seed(seed)
    classes = 7
    # some classes never occur as labels, some never as predictions, some neither
    labels = torch.randint(0, 4, (50,), generator=gen)
    logits = torch.randn(50, classes, generator=gen)
    logits[:, 5] += 3.0 * (seed % 2)  # on odd seeds, class 5 is predicted but never a label
    confusion = MulticlassConfusionMatrix(classes)
    accuracy = MulticlassAccuracy(classes, average="micro")
    f1 = MulticlassF1Score(classes, average="macro")
    for part in range(0, 50, 20):  # several batches, as in an epoch
        for metric in (confusion, accuracy, f1):
            metric.update(logits[part:part + 20], labels[part:part + 20])
    computed = scores(confusion.compute())
    assert computed["acc"].item() == pytest.approx(accuracy.compute().item(), abs=1e-7)
    assert computed["f1"].item() == pytest.approx(f1.compute().item(), abs=1e-7)


def test_metrics_restart_every_epoch(tmp_path):
    recipe = small_recipe(optimizer={"name": "adam", "lr": 0.05})
    trainer = quiet_trainer(tmp_path, max_epochs=2)
    trainer.fit(recipe, datamodule=Points(batch_size=32))
    assert not recipe.train_confusion.update_called  # reset at the epoch's end
    assert not recipe.val_confusion.update_called


def test_checkpoint_loads_with_weights_only_and_rebuilds(tmp_path):
    recipe = small_recipe(config={"seed": 1, "model": MLP, "notes": [1, "two", None]})
    trainer = quiet_trainer(tmp_path, max_epochs=1, enable_checkpointing=True)
    trainer.fit(recipe, datamodule=Points(batch_size=32))
    path = tmp_path / "manual.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["model"] == MLP
    assert checkpoint["hyper_parameters"]["input_shape"] == [4]
    restored = Recipe.load_from_checkpoint(path)
    x = torch.randn(5, 4)
    recipe.eval(), restored.eval()
    assert torch.equal(recipe(x), restored(x))


def test_digits_training_reaches_095(tmp_path):
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    datamodule = data.build({"name": "digits"}, seed=0)
    recipe = Recipe({"name": "mlp", "hidden": [256, 128], "norm": "batch", "dropout": 0.1},
                    {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
                    {"name": "cosine"}, input_shape=list(datamodule.input_shape),
                    num_classes=datamodule.num_classes)
    trainer = quiet_trainer(tmp_path, max_epochs=8)
    trainer.fit(recipe, datamodule=datamodule)
    accuracy = trainer.test(recipe, datamodule=datamodule, verbose=False)[0]["test/acc"]
    assert accuracy >= 0.95


def test_hparams_are_flattened_for_tensorboard():
    flat = flatten({"model": {"hidden": [256, 128], "norm": None}, "seed": 3, "ok": True})
    assert flat == {"model/hidden": "[256, 128]", "model/norm": "None", "seed": 3, "ok": True}
    assert HParamsSummary({"a": {"b": 1}}).params == {"a/b": 1}


def test_cosine_needs_a_finite_run(tmp_path):
    from trainer.models import ModelInputError

    recipe = small_recipe(scheduler={"name": "cosine"})
    trainer = quiet_trainer(tmp_path, max_epochs=-1, max_steps=-1, limit_val_batches=0)
    with pytest.raises(ModelInputError, match="finite"):
        trainer.fit(recipe, datamodule=Points(batch_size=32))
    assert math.isinf(trainer.estimated_stepping_batches)


def test_seed_controls_initialization_and_batch_order(tmp_path):
    def trained(seed: int) -> torch.Tensor:
        L.seed_everything(seed, workers=True, verbose=False)
        recipe = small_recipe(model={**MLP, "dropout": 0.2})
        quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(
            recipe, datamodule=Points(batch_size=16, seed=seed))
        return torch.cat([p.detach().flatten() for p in recipe.parameters()])

    assert torch.equal(trained(1), trained(1))
    assert not torch.equal(trained(1), trained(2))
