"""The LightningModule: cook, taste, adjust; the Trainer's epochs repeat.

Optimization is manual, so each training step shows every move: the forward pass through the
explicit layers (:meth:`Recipe.cook`), the loss and metrics (:meth:`Recipe.taste`), and the
backward pass through the hand-written rules followed by the update (:meth:`Recipe.adjust`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

import trainer.functional as F
import trainer.nn as nn
from trainer import models

STAGES = ("train", "val", "test")


class WarmupCosine:
    """Learning-rate factor: linear warmup over ``warmup`` steps, then cosine decay to
    ``floor`` at step ``total``. A class (not a closure) so the scheduler's state is saved."""

    def __init__(self, total: int, warmup: int = 0, floor: float = 0.0):
        self.total, self.warmup, self.floor = int(total), int(warmup), float(floor)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(params, optimizer: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer an ``optimizer/`` config describes."""
    name, lr, decay = optimizer["name"], optimizer["lr"], optimizer.get("weight_decay", 0.0)
    if name == "sgd":
        momentum, nesterov = optimizer.get("momentum", 0.0), optimizer.get("nesterov", False)
        if nesterov and momentum <= 0:
            raise models.ModelInputError("optimizer.nesterov", "needs optimizer.momentum > 0")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=decay)
    if name in ("adam", "adamw"):
        kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return kind(params, lr=lr, betas=tuple(optimizer.get("betas", (0.9, 0.999))),
                    eps=optimizer.get("eps", 1e-8), weight_decay=decay)
    raise models.ModelInputError("optimizer.name", f"unknown optimizer {name!r}")


def scores(confusion: Tensor) -> dict[str, Tensor]:
    """Accuracy and macro F1 from a confusion matrix C (true class by row, predicted by column),
    the values torchmetrics' ``MulticlassAccuracy(average="micro")`` and
    ``MulticlassF1Score(average="macro")`` give for the same predictions:

        acc = Σ_i C_ii / Σ C
        F1  = mean over the classes i seen (as a label or a prediction) of
              2 C_ii / (Σ_j C_ij + Σ_j C_ji)        (= 2 tp / (2 tp + fp + fn))

    One ``MulticlassConfusionMatrix`` update per step costs a fifth of updating both metrics
    (~15 against ~80 µs a batch on CPU): a few percent of a small model's training step.
    """
    counts = confusion.double()
    total = counts.sum()
    hits = counts.diagonal()
    seen = counts.sum(0) + counts.sum(1)  # 2 tp + fp + fn, per class
    f1 = torch.where(seen > 0, 2 * hits / seen.clamp_min(1), 0.0)
    accuracy = hits.sum() / total if total > 0 else total
    macro_f1 = f1.sum() / (seen > 0).sum().clamp_min(1)
    return {"acc": accuracy.float(), "f1": macro_f1.float()}


class Recipe(L.LightningModule):
    """Trains a classifier built from :mod:`trainer.nn` with the cross-entropy loss.

    Every argument is a plain container (dicts, lists, numbers, strings), so the checkpoint's
    hyperparameters load with ``torch.load(path, weights_only=True)`` and
    ``Recipe.load_from_checkpoint(path)`` rebuilds the same model.

    Args:
        model: a ``model/`` config, e.g. ``{"name": "mlp", "hidden": [256, 128]}``.
        optimizer: an ``optimizer/`` config, e.g. ``{"name": "adam", "lr": 1e-3}``;
            ``grad_clip > 0`` clips the gradient norm before each step.
        scheduler: a ``scheduler/`` config (``none``, ``cosine`` per step, ``step`` per epoch).
        input_shape, num_classes: from the datamodule.
        accumulate_grad_batches: step the optimizer once every k batches, on the gradient of
            the mean of their k losses: k batches of B give the update one batch of kB would.
            (Lightning's own ``accumulate_grad_batches`` does not apply under manual
            optimization.) A shorter last group of an epoch is scaled by 1/k too, as
            Lightning scales it.
        config: the whole run's config, kept in the checkpoint for the record.
    """

    #: What it learns (callbacks that draw a classifier's pictures look for "classify").
    task = "classify"
    #: The validation metric that picks the best checkpoint, and which way is better, unless
    #: callbacks.checkpoint.monitor says otherwise.
    monitor = ("val/acc", "max")

    def __init__(self, model: Mapping[str, Any], optimizer: Mapping[str, Any],
                 scheduler: Mapping[str, Any] | None = None, *, input_shape: Sequence[int],
                 num_classes: int, config: Mapping[str, Any] | None = None,
                 accumulate_grad_batches: int = 1):
        super().__init__()
        # logger=False: the hyperparameters go to TensorBoard once, with the final metrics.
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        self.model = models.build(model, input_shape, num_classes)
        self.loss = nn.CrossEntropyLoss()
        self.build_metrics(num_classes)
        self._accumulated = 0  # batches whose gradients wait for the next optimizer step

    def build_metrics(self, num_classes: int) -> None:
        """One confusion matrix per stage; accuracy and F1 are read off it at the epoch's end
        (see :func:`scores`). Attributes, not a ModuleDict: "train" is a Module method name."""
        self.train_confusion = MulticlassConfusionMatrix(num_classes)
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    # -- the recipe ------------------------------------------------------------------------------

    def cook(self, x: Tensor) -> Tensor:
        """Forward pass through the explicit layers: the logits."""
        return self.model(x)

    def taste(self, dish: Tensor, y: Tensor, stage: str) -> Tensor:
        """The loss against the labels; update the stage's metrics and log the loss."""
        loss = self.loss(dish, y)
        getattr(self, f"{stage}_confusion").update(dish.detach(), y)
        if stage != "train":  # val/loss and test/loss: averaged over the epoch
            self.log(f"{stage}/loss", loss.detach(), on_step=False, on_epoch=True,
                     prog_bar=True, batch_size=len(y), sync_dist=True)
        elif self._step_is_logged():  # train/loss: a curve, one point per logged step
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=len(y))
        return loss

    def adjust(self, loss: Tensor) -> None:
        """Backward through our rules, then one optimizer (and per-step scheduler) step; with
        ``accumulate_grad_batches`` = k, the step waits until k batches have added their
        gradients (or the epoch ends)."""
        optimizer = self.optimizers()
        k = self.hparams.accumulate_grad_batches
        self.manual_backward(loss / k if k > 1 else loss)
        self._accumulated += 1
        if self._accumulated < k and not self.trainer.is_last_batch:
            return
        self._accumulated = 0
        clip = self.hparams.optimizer.get("grad_clip", 0.0)
        if clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=clip,
                                gradient_clip_algorithm="norm")
        if self._step_is_logged():  # the rate this step used, before the scheduler moves it
            self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False,
                     batch_size=1)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self._scheduler_interval() == "step":
            self.lr_schedulers().step()

    # -- Lightning hooks -------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        return self.cook(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        dish = self.cook(x)                  # forward pass through explicit layers
        loss = self.taste(dish, y, "train")  # loss against the labels + metrics
        self.adjust(loss)                    # backward through our rules, then the update
        return loss                          # the Trainer's epochs are the 'repeat'

    def on_train_start(self) -> None:
        # A resumed run may be longer than the one that saved the schedule: stretch the cosine
        # over this run's steps rather than sitting at its floor after the old end.
        for scheduler_config in self.trainer.lr_scheduler_configs:
            for factor in getattr(scheduler_config.scheduler, "lr_lambdas", []):
                if isinstance(factor, WarmupCosine):
                    factor.total = int(self.optimizer_steps())

    def on_train_epoch_start(self) -> None:
        self._accumulated = 0

    def optimizer_steps(self) -> float:
        """How many optimizer steps the whole fit takes (``inf`` when it has no end): Lightning's
        ``estimated_stepping_batches``, counted in groups of ``accumulate_grad_batches``."""
        estimate = self.trainer.estimated_stepping_batches  # also sets up the train loader
        k = self.hparams.accumulate_grad_batches
        if k == 1:
            return estimate
        steps = math.ceil(self.trainer.num_training_batches / k) * self.trainer.max_epochs \
            if self.trainer.max_epochs not in (None, -1) else math.inf
        return min(steps, self.trainer.max_steps) if self.trainer.max_steps != -1 else steps

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")
        if self._scheduler_interval() == "epoch":
            self.lr_schedulers().step()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.taste(self.cook(x), y, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.taste(self.cook(x), y, "test")

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        """Class probabilities for each input."""
        return F.softmax(self.cook(batch[0]), dim=-1)

    def parameter_groups(self):
        """What the optimizer steps: every parameter, one group."""
        return self.parameters()

    def configure_optimizers(self):
        optimizer = build_optimizer(self.parameter_groups(), self.hparams.optimizer)
        scheduler = dict(self.hparams.scheduler or {"name": "none"})
        name = scheduler["name"]
        if name == "none":
            return optimizer
        if name == "cosine":
            total = self.optimizer_steps()
            if not math.isfinite(total):
                raise models.ModelInputError(
                    "scheduler", "cosine needs a finite trainer.max_epochs or trainer.max_steps")
            factor = WarmupCosine(total, scheduler.get("warmup_steps", 0),
                                  scheduler.get("min_lr_ratio", 0.0))
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            interval = "step"
        elif name == "step":
            schedule = torch.optim.lr_scheduler.StepLR(optimizer, scheduler["step_size"],
                                                       scheduler.get("gamma", 0.1))
            interval = "epoch"
        else:
            raise models.ModelInputError("scheduler.name", f"unknown scheduler {name!r}")
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": interval}}

    def _scheduler_interval(self) -> str | None:
        configs = self.trainer.lr_scheduler_configs if self._trainer is not None else []
        return configs[0].interval if configs else None

    def _step_is_logged(self) -> bool:
        """Whether the Trainer writes this training step's on-step values to the logger (every
        ``log_every_n_steps``-th step). ``self.log`` costs ~0.3 ms a call on CPU, a fifth of a
        small model's step, so per-step values are logged only on the steps that are written."""
        if self._trainer is None:
            return True
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def _log_metrics(self, stage: str) -> None:
        """The epoch's accuracy and F1, from the stage's confusion matrix, which then starts
        over. ``compute`` sums the matrix over all processes under DDP, so every rank logs
        the same values."""
        confusion = getattr(self, f"{stage}_confusion")
        if not confusion.update_called:  # an epoch of no batches
            return
        counts = confusion.compute()
        confusion.reset()
        self.log_dict({f"{stage}/{name}": value for name, value in scores(counts).items()},
                      on_step=False, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
