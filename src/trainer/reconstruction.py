"""The recipe for an autoencoder: cook, taste, adjust, on reconstructing the input.

The same three moves as the classifier's (:class:`trainer.recipe.Recipe`), on batches of images
``x, y`` whose labels ``y`` play no part:

- **cook**: the autoencoder (``model=autoencoder``), images ``(B, C, H, W)`` to reconstructions
  of the same shape;
- **taste**: the reconstruction against the input it came from, by the model's ``loss``:

  ``mse``: mean((x̂ - x)²) on the images as the datamodule gives them (standardized: each
  channel's train-split mean 0 and standard deviation 1);

  ``bce_with_logits``: x̂ is each pixel's logit, and the target must lie in [0, 1], which
  standardized images do not: the target is the image mapped back to its pixel range,
  t = clamp((x - lo) / (hi - lo), 0, 1), where lo and hi are each channel's smallest and
  largest value over the training split (the datamodule standardizes with the train split's
  statistics, so lo and hi are where raw 0 and the brightest raw pixel land: t is the raw image
  over its largest value, e.g. digits / 16, Fashion-MNIST's 0..255 / 255);

- **adjust**: backward through the rules, then the optimizer step, as the classifier's.

lo and hi are buffers (saved in the checkpoint) set from the datamodule's train split when the
Trainer sets the recipe up; they also map reconstructions to pixels for the metrics and the
pictures: x̂ itself (mse) or sigmoid(x̂) (bce_with_logits). Logged per epoch for train, val and
test: ``loss`` (per logged step in training) and ``psnr`` = 10 log₁₀(1 / MSE) in those [0, 1]
pixels, over the epoch's squared errors. The pictures (inputs over their reconstructions) are
:class:`trainer.callbacks.Reconstructions`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.image import PeakSignalNoiseRatio

import trainer.nn as nn
from trainer import models
from trainer.recipe import Recipe

#: The model's ``loss`` option -> the trainer.nn loss module that computes it.
LOSSES = {"mse": nn.MSELoss, "bce_with_logits": nn.BCEWithLogitsLoss}


class ReconstructionRecipe(Recipe):
    """Trains an autoencoder (``model=autoencoder``) on an image data set; takes
    :class:`~trainer.recipe.Recipe`'s arguments (``num_classes`` is kept, unused)."""

    task = "reconstruct"
    monitor = ("val/loss", "min")

    def __init__(self, model: Mapping[str, Any], optimizer: Mapping[str, Any],
                 scheduler: Mapping[str, Any] | None = None, *, input_shape: Sequence[int],
                 num_classes: int, config: Mapping[str, Any] | None = None,
                 accumulate_grad_batches: int = 1):
        super().__init__(model, optimizer, scheduler, input_shape=input_shape,
                         num_classes=num_classes, config=config,
                         accumulate_grad_batches=accumulate_grad_batches)
        if getattr(self.model, "task", "classify") != "reconstruct":
            raise models.ModelInputError("model.name", f"{model['name']} does not reconstruct "
                                         "its input: the reconstruction recipe needs "
                                         "model=autoencoder")
        self.logits = self.model.loss == "bce_with_logits"
        self.loss = LOSSES[self.model.loss]()  # (reconstruction, target): the gradient check's
        channels = (int(input_shape[0]), 1, 1)
        # Each channel's pixel range as the data gives it, [0, 1] until setup() reads the data.
        self.register_buffer("pixel_low", torch.zeros(channels))
        self.register_buffer("pixel_high", torch.ones(channels))

    def build_metrics(self, num_classes: int) -> None:
        """PSNR per stage, over the epoch's squared errors in [0, 1] pixels. Attributes, not a
        ModuleDict: "train" is a Module method name."""
        self.train_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.test_psnr = PeakSignalNoiseRatio(data_range=1.0)

    def setup(self, stage: str) -> None:
        """Read the pixel range off the datamodule's train split (set up just before)."""
        train = getattr(getattr(self.trainer, "datamodule", None), "train", None)
        if train is not None:
            self.fit_pixel_range(train[0])

    def fit_pixel_range(self, images: Tensor) -> None:
        """lo, hi: each channel's smallest and largest value over ``images`` ``(N, C, H, W)``."""
        dims = [0, *range(2, images.dim())]
        self.pixel_low.copy_(images.amin(dim=dims).reshape(self.pixel_low.shape))
        self.pixel_high.copy_(images.amax(dim=dims).reshape(self.pixel_high.shape))

    # -- pixels ----------------------------------------------------------------------------------

    def pixels(self, x: Tensor) -> Tensor:
        """Images as the data gives them, to pixel intensities in [0, 1]."""
        span = (self.pixel_high - self.pixel_low).clamp_min(1e-12)
        return ((x - self.pixel_low) / span).clamp(0.0, 1.0)

    def output_pixels(self, dish: Tensor) -> Tensor:
        """Reconstructions to pixel intensities in [0, 1]: sigmoid of the logits, or mapped as
        the inputs are."""
        return torch.sigmoid(dish) if self.logits else self.pixels(dish)

    def loss_target(self, x: Tensor, y: Tensor) -> Tensor:
        """What the loss compares the reconstruction with: the input itself (mse), or the
        input in [0, 1] pixels (bce_with_logits). The labels ``y`` are unused. The gradient
        check calls this too."""
        return self.pixels(x) if self.logits else x

    # -- the recipe ------------------------------------------------------------------------------

    def taste(self, dish: Tensor, target: Tensor, stage: str) -> Tensor:
        """The loss against the target; update the stage's PSNR and log the loss."""
        loss = self.loss(dish, target)
        truth = target if self.logits else self.pixels(target)
        getattr(self, f"{stage}_psnr").update(self.output_pixels(dish.detach()), truth)
        if stage != "train":  # val/loss and test/loss: averaged over the epoch
            self.log(f"{stage}/loss", loss.detach(), on_step=False, on_epoch=True,
                     prog_bar=True, batch_size=len(target), sync_dist=True)
        elif self._step_is_logged():
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=len(target))
        return loss

    # -- Lightning hooks -------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        dish = self.cook(x)                                       # the reconstruction
        loss = self.taste(dish, self.loss_target(x, y), "train")  # against the input
        self.adjust(loss)                                         # backward, then the update
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.taste(self.cook(x), self.loss_target(x, y), "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.taste(self.cook(x), self.loss_target(x, y), "test")

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        """Each input's reconstruction, in [0, 1] pixels."""
        return self.output_pixels(self.cook(batch[0]))

    def _log_metrics(self, stage: str) -> None:
        """The epoch's PSNR; ``compute`` sums the squared errors over all processes."""
        psnr = getattr(self, f"{stage}_psnr")
        if not psnr.update_called:  # an epoch of no batches
            return
        value = psnr.compute()
        psnr.reset()
        self.log(f"{stage}/psnr", value, on_step=False, on_epoch=True,
                 prog_bar=stage == "val", sync_dist=True)


__all__ = ["LOSSES", "ReconstructionRecipe"]
