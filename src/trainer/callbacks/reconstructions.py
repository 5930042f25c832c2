"""An autoencoder's reconstructions in TensorBoard's IMAGES tab, beside the inputs they came
from, at the end of every ``every_n_epochs``-th validation epoch and the last (skipped without a
TensorBoard logger, or for a recipe that does not reconstruct)::

    reconstructions     one grid: the first ``count`` validation inputs in the top row, their
                        reconstructions below, as [0, 1] pixels (the recipe's ``pixels`` and
                        ``output_pixels``), enlarged to at least 32 pixels high

The inputs are the first validation batch's, so every drawing shows the same images: the
reconstructions sharpen from one drawing to the next. One forward pass of ``count`` images.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from .pictures import _tensorboard

#: Drawn images are enlarged (nearest pixel) to at least this many pixels high.
MIN_HEIGHT = 32


class Reconstructions(Callback):
    """Draws inputs over their reconstructions for a recipe whose ``task`` is "reconstruct".

    Args:
        every_n_epochs: draw on the epochs that are a multiple of this (0, N, 2N, ...) and
            on the last one.
        count: how many validation inputs to show.
    """

    def __init__(self, every_n_epochs: int = 5, count: int = 8):
        if every_n_epochs < 1:
            raise ValueError(f"Reconstructions: every_n_epochs must be >= 1, got "
                             f"{every_n_epochs}")
        if count < 1:
            raise ValueError(f"Reconstructions: count must be >= 1, got {count}")
        self.every_n_epochs = every_n_epochs
        self.count = count
        self.grid: Tensor | None = None  # the last grid drawn, (C, H, W) in [0, 1]
        self._inputs: Tensor | None = None

    def _draws(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        epoch = trainer.current_epoch
        last = (trainer.max_epochs or 0) > 0 and epoch + 1 >= trainer.max_epochs  # -1: no end
        return (not trainer.sanity_checking and trainer.is_global_zero
                and getattr(pl_module, "task", "classify") == "reconstruct"
                and _tensorboard(trainer) is not None
                and (epoch % self.every_n_epochs == 0 or last))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and self._draws(trainer, pl_module):
            self._inputs = batch[0][: self.count].detach()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._inputs is None:
            return
        x, self._inputs = self._inputs, None
        with torch.no_grad():  # the model is in eval mode here, as validation left it
            shown = pl_module.pixels(x)
            made = pl_module.output_pixels(pl_module.cook(x))
        self.grid = grid([shown, made])
        _tensorboard(trainer).experiment.add_image("reconstructions", self.grid,
                                                   global_step=trainer.global_step)


def grid(rows: list[Tensor], pad: int = 2) -> Tensor:
    """Batches of images ``(N, C, H, W)`` in [0, 1], one batch to a row, on a gray ground;
    grayscale or RGB (other channel counts show their first channel), enlarged to at least
    :data:`MIN_HEIGHT` pixels high."""
    count, channels, height, width = rows[0].shape
    scale = max(1, -(-MIN_HEIGHT // height))
    if channels not in (1, 3):
        channels = 1
    height, width = height * scale, width * scale
    sheet = torch.full((channels, len(rows) * (height + pad) + pad, count * (width + pad) + pad),
                       0.5)
    for r, images in enumerate(rows):
        images = images[:, :channels].float().cpu()
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        for c, image in enumerate(images):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            sheet[:, top:top + height, left:left + width] = image
    return sheet


__all__ = ["Reconstructions", "grid"]
