"""Bad numbers: a NaN or inf stops the run at once, names the step and the first layer (in
backward order) whose gradient went non-finite, and leaves the last good checkpoint alone."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from fault_helpers import error_lines, explain, run_trainer

from trainer.callbacks.checkpointing import load_checkpoint
from trainer.callbacks.nan_guard import NanGuard, NonFiniteError
from trainer.recipe import Recipe


def test_huge_learning_rate_stops_with_step_layer_and_a_finite_last_checkpoint(tmp_path):
    # One batch per epoch, so each step ends an epoch and refreshes last.ckpt: the weights grow
    # ~1e6-fold per step until the logits overflow, at step 3, to a NaN loss.
    run_dir = tmp_path / "run"
    result = run_trainer("optimizer=sgd", "optimizer.lr=1e6", "scheduler=none", "model.norm=null",
                         "data.batch_size=4096", "trainer.max_epochs=20",
                         f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 3, explain(result)
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: training diverged at step 3: the loss was nan; ")
    # Forward overflowed somewhere below; the loss's gradient is NaN, so the layer nearest the
    # loss is the first one, in backward order, whose gradient is non-finite.
    assert "the forward pass first went non-finite at the output of model.head." in errors[0]
    assert ("in backward order (from the loss towards the input) the first layer with a "
            "non-finite gradient is model.head.classifier (Linear(in_features=128, "
            "out_features=10, bias=True)): the gradient arriving at its output, as the backward "
            "of loss (CrossEntropyLoss()) computed it") in errors[0]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"last good checkpoint: {last}" in result.stderr
    checkpoint = load_checkpoint(last)
    assert checkpoint["global_step"] == 2  # the steps before the bad one, not the bad one
    assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values())
    assert not (run_dir / "metrics.json").exists()


# -- in process: where in the network the trouble starts ---------------------------------------


class NanBackward(torch.autograd.Function):
    """Identity forward; a backward that returns NaN: a broken rule in the middle of a net."""

    @staticmethod
    def forward(x):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return torch.full_like(g, float("nan"))


class BrokenRule(torch.nn.Module):
    def forward(self, x):
        return NanBackward.apply(x)


class Blobs(L.LightningDataModule):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        y = torch.arange(64) % 3
        x = (torch.randn(64, 4, generator=generator) + torch.eye(4)[y] * 3) * self.scale
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def fit_with_guard(recipe: Recipe, tmp_path, scale: float = 1.0) -> L.Trainer:
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[NanGuard()], default_root_dir=tmp_path)
    trainer.fit(recipe, datamodule=Blobs(scale))
    return trainer


def small_recipe(lr: float = 0.1) -> Recipe:
    return Recipe({"name": "mlp", "hidden": [8, 8], "norm": None, "dropout": 0.0},
                  {"name": "sgd", "lr": lr}, input_shape=[4], num_classes=3)


def test_names_the_broken_layer_not_the_layers_below_it(tmp_path):
    recipe = small_recipe()
    # After dense1's activation: in backward order, classifier and the loss come before it and
    # stay finite; dense1.linear and everything below inherit its NaN.
    recipe.model.head.dense1.add_module("broken", BrokenRule())
    before = [p.detach().clone() for p in recipe.parameters()]
    with pytest.raises(NonFiniteError) as caught:
        fit_with_guard(recipe, tmp_path)
    error = caught.value
    assert error.step == 1
    # The first layer with a non-finite gradient is the activation below the broken rule, and
    # the message says whose backward computed that gradient.
    assert ("first layer with a non-finite gradient is model.head.dense1.activation (ReLU()): "
            "the gradient arriving at its output, as the backward of model.head.dense1.broken "
            "(BrokenRule()) computed it") in str(error)
    assert str(error).startswith("step 1: the loss was 1.")  # a finite loss
    assert "forward pass" not in str(error)  # forward stayed finite
    # The bad step was not taken.
    assert all(torch.equal(b, p) for b, p in zip(before, recipe.parameters(), strict=True))


def test_a_clean_run_passes_and_leaves_no_hooks(tmp_path):
    recipe = small_recipe()
    trainer = fit_with_guard(recipe, tmp_path)
    assert trainer.global_step == 4
    assert all(not module._forward_hooks for module in recipe.modules())


def test_an_update_that_overflows_the_weights_stops_at_the_next_step(tmp_path):
    # Inputs ~1e3 give gradients ~1e3: finite, but times lr 1e38 beyond float32's range. The
    # next forward meets the infinite weights and its gradients are NaN.
    recipe = small_recipe(lr=1e38)
    with pytest.raises(NonFiniteError, match=r"^step 2: the loss was (nan|inf); the forward "
                                             r"pass first went non-finite"):
        fit_with_guard(recipe, tmp_path, scale=1e3)


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    recipe = small_recipe()
    trainer = fit_with_guard(recipe, tmp_path)
    trainer.save_checkpoint(tmp_path / "good.ckpt")
    with torch.no_grad():
        recipe.model.head.dense0.linear.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"step 4: model\.head\.dense0\.linear\.weight is "
                                             r"non-finite, so it was not checkpointed"):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()
    assert load_checkpoint(tmp_path / "good.ckpt")["global_step"] == 4
