"""Pictures of the validation set in TensorBoard's IMAGES tab, drawn at the end of every
``every_n_epochs``-th validation epoch and the last (skipped without a TensorBoard logger)::

    pictures/confusion_matrix     true class (rows) against predicted class (columns)
    pictures/worst_examples       the misclassified inputs the model was most sure about, each
                                  titled with its true and predicted class (image data only)
    pictures/decision_boundary    the class the model predicts over the plane, with the
                                  validation points on top (2-D data only: moons, spirals)

The logits come from a forward hook on the network, attached only while a drawn validation
epoch runs, so nothing is computed twice; the decision boundary costs one forward over a grid.
Drawing costs ~30 ms a figure (matplotlib), hence not every epoch by default.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix


class Pictures(Callback):
    """Draws the confusion matrix, the worst mistakes and the decision boundary.

    Args:
        every_n_epochs: draw on the epochs that are a multiple of this (0, N, 2N, ...) and
            on the last one.
        worst_examples: how many misclassified images to show (0: none).
        network: the LightningModule's attribute holding the network (the hook's target).
    """

    def __init__(self, every_n_epochs: int = 5, worst_examples: int = 16,
                 network: str = "model"):
        if every_n_epochs < 1:
            raise ValueError(f"Pictures: every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.worst_examples = worst_examples
        self.network = network
        self.drawn: list[str] = []  # tags drawn at the last drawn epoch
        self.matrix: Tensor | None = None  # its confusion matrix (true class, predicted class)
        #: its worst mistakes, most confident first: (p(true class), input, true, predicted)
        self.worst: list[tuple[float, Tensor, int, int]] = []
        self._active = False
        self._hook = None
        self._logits: Tensor | None = None
        self._confusion: MulticlassConfusionMatrix | None = None

    # -- collecting ----------------------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule
                                  ) -> None:
        epoch = trainer.current_epoch
        last = (trainer.max_epochs or 0) > 0 and epoch + 1 >= trainer.max_epochs  # -1: no end
        self._active = (not trainer.sanity_checking and _tensorboard(trainer) is not None
                        and getattr(pl_module, "task", "classify") == "classify"
                        and (epoch % self.every_n_epochs == 0 or last))
        if not self._active:
            return
        num_classes = _num_classes(trainer, pl_module)
        if self._confusion is None or self._confusion.num_classes != num_classes:
            self._confusion = MulticlassConfusionMatrix(num_classes)
        self._confusion = self._confusion.to(pl_module.device)
        self._confusion.reset()
        self.worst, self._logits = [], None
        self._points: list[tuple[Tensor, Tensor]] = []
        self._hook = getattr(pl_module, self.network).register_forward_hook(self._capture)

    def _capture(self, module, inputs, output: Tensor) -> None:
        self._logits = output.detach()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._active or self._logits is None:
            return
        x, y = batch[0], batch[1]
        logits, self._logits = self._logits, None
        self._confusion.update(logits, y)
        if x.dim() == 2 and x.shape[1] == 2:  # points in the plane: keep them for the boundary
            self._points.append((x.detach().cpu(), y.detach().cpu()))
        if self.worst_examples > 0 and x.dim() == 4:  # images (N, C, H, W)
            self._keep_worst(x, y, logits)

    def _keep_worst(self, x: Tensor, y: Tensor, logits: Tensor) -> None:
        probability = logits.float().softmax(dim=-1)
        predicted = probability.argmax(dim=-1)
        p_true = probability.gather(1, y[:, None])[:, 0]
        wrong = (predicted != y).nonzero().flatten()
        # Only the batch's k least likely (by the true class) can join the running worst k.
        chosen = wrong[p_true[wrong].argsort()[: self.worst_examples]].tolist()
        self.worst += [(float(p_true[i]), x[i].detach().cpu().clone(), int(y[i]),
                         int(predicted[i])) for i in chosen]
        self.worst = sorted(self.worst, key=lambda item: item[0])[: self.worst_examples]

    # -- drawing -------------------------------------------------------------------------------

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if not self._active:
            return
        self._active = False
        matrix = self._confusion.compute().cpu()  # every rank calls it: it syncs under DDP
        self.matrix = matrix
        if not trainer.is_global_zero:
            return
        experiment, step = _tensorboard(trainer).experiment, trainer.global_step
        names = _class_names(trainer, matrix.shape[0])
        figures = {"pictures/confusion_matrix": confusion_figure(matrix, names)}
        if self.worst:
            figures["pictures/worst_examples"] = worst_examples_figure(self.worst, names)
        if self._points:
            x = torch.cat([p[0] for p in self._points])
            y = torch.cat([p[1] for p in self._points])
            figures["pictures/decision_boundary"] = boundary_figure(
                getattr(pl_module, self.network), x, y, names, trainer.current_epoch)
        for tag, figure in figures.items():
            experiment.add_figure(tag, figure, global_step=step, close=True)
        self.drawn = list(figures)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _tensorboard(trainer: L.Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def _num_classes(trainer: L.Trainer, pl_module: L.LightningModule) -> int:
    datamodule = getattr(trainer, "datamodule", None)
    if getattr(datamodule, "num_classes", None):
        return int(datamodule.num_classes)
    return int(pl_module.hparams["num_classes"])


def _class_names(trainer: L.Trainer, count: int) -> list[str]:
    names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
    return list(names) if names and len(names) == count else [str(i) for i in range(count)]


def _figure(width: float, height: float):
    # The object-oriented API: no pyplot state, no GUI backend. Fixed margins rather than a
    # layout engine, which would take most of the drawing time.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=80)


def confusion_figure(matrix: Tensor, names: list[str]):
    """Counts, true class down the rows, predicted across; the diagonal is right."""
    count = matrix.shape[0]
    figure = _figure(3.6, 3.6)
    axes = figure.add_axes((0.2, 0.2, 0.75, 0.7))
    axes.imshow(matrix.numpy(), cmap="Blues")
    axes.axis("off")  # class names as plain text: matplotlib's ticks cost more than the rest
    short = [name[:8] for name in names]
    for index, name in enumerate(short):
        axes.text(index, count - 0.4, name, ha="center", va="top", fontsize=6,
                  rotation=90 if len(name) > 2 else 0)
        axes.text(-0.7, index, name, ha="right", va="center", fontsize=6)
    axes.text((count - 1) / 2, count + (1.4 if max(map(len, short)) > 2 else 0.4), "predicted",
              ha="center", va="top", fontsize=8)
    axes.text(-0.7 - 0.25 * max(map(len, short)) - 0.6, (count - 1) / 2, "true", ha="right",
              va="center", rotation=90, fontsize=8)
    if count <= 12:  # the counts stay legible
        top = float(matrix.max()) or 1.0
        for row, column in torch.nonzero(matrix).tolist():
            value = int(matrix[row, column])
            axes.text(column, row, str(value), ha="center", va="center", fontsize=6,
                      color="white" if value > top / 2 else "black")
    accuracy = float(matrix.diag().sum() / matrix.sum().clamp_min(1))
    axes.set_title(f"confusion matrix (accuracy {accuracy:.3f})", fontsize=9)
    return figure


def mosaic(images: list[Tensor], columns: int, pad: int = 2, band: int = 0) -> Tensor:
    """Images ``(C, H, W)`` side by side, ``columns`` to a row, each scaled into [0, 1], on 0;
    ``band`` empty pixel rows above each image leave room for a caption."""
    channels, height, width = images[0].shape
    rows = math.ceil(len(images) / columns)
    sheet = torch.zeros(channels, rows * (band + height + pad) + pad,
                        columns * (width + pad) + pad)
    for index, image in enumerate(images):
        image = image.float()
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-8)
        top = pad + band + (index // columns) * (band + height + pad)
        left = pad + (index % columns) * (width + pad)
        sheet[:, top:top + height, left:left + width] = image
    return sheet


def worst_examples_figure(worst: list[tuple[float, Tensor, int, int]], names: list[str]):
    """A grid of images, each captioned ``true→predicted`` and the probability the model gave
    the true class. One picture for the whole grid: subplots would cost 10x the time."""
    tile_inches, caption_inches, pad = 1.0, 0.3, 2
    columns = min(len(worst), 8)
    channels, height, width = worst[0][1].shape
    pixels_per_inch = (width + pad) / tile_inches
    band = math.ceil(caption_inches * pixels_per_inch)
    sheet = mosaic([x for _, x, _, _ in worst], columns, pad, band)
    sheet_width, sheet_height = sheet.shape[2] / pixels_per_inch, sheet.shape[1] / pixels_per_inch
    figure_width = max(sheet_width, 3.2)  # room for the title over a short row
    figure = _figure(figure_width, sheet_height + 0.25)
    axes = figure.add_axes(((figure_width - sheet_width) / 2 / figure_width, 0.0,
                            sheet_width / figure_width, sheet_height / (sheet_height + 0.25)))
    picture = sheet[0] if channels == 1 else sheet.permute(1, 2, 0)
    axes.imshow(picture.numpy(), cmap="gray_r" if channels == 1 else None, aspect="auto",
                interpolation="nearest")
    for index, (p_true, _, true, predicted) in enumerate(worst):
        center = pad + (index % columns) * (width + pad) + width / 2
        bottom = pad + band + (index // columns) * (band + height + pad) - 1
        axes.text(center, bottom, f"{names[true][:7]}→{names[predicted][:7]}\np={p_true:.2f}",
                  ha="center", va="bottom", fontsize=6, color="tab:red", linespacing=1.0)
    axes.axis("off")
    figure.suptitle("worst mistakes: true→predicted, p(true)", fontsize=8, y=0.995,
                    va="top")
    return figure


def boundary_figure(network: torch.nn.Module, x: Tensor, y: Tensor, names: list[str],
                    epoch: int, resolution: int = 120):
    """The predicted class over a grid spanning the points, the points on top."""
    low, high = x.min(dim=0).values, x.max(dim=0).values
    margin = 0.1 * (high - low)
    low, high = low - margin, high + margin
    xs = torch.linspace(float(low[0]), float(high[0]), resolution)
    ys = torch.linspace(float(low[1]), float(high[1]), resolution)
    grid = torch.cartesian_prod(ys, xs).flip(1)  # (x, y) pairs, row by row
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    was_training = network.training
    network.eval()
    with torch.no_grad():
        predicted = network(grid.to(device, dtype)).argmax(dim=-1).cpu()
    network.train(was_training)
    figure = _figure(4.0, 3.6)
    axes = figure.add_axes((0.03, 0.03, 0.94, 0.87))
    classes = len(names)
    extent = (float(low[0]), float(high[0]), float(low[1]), float(high[1]))
    axes.imshow(predicted.reshape(resolution, resolution).numpy(), origin="lower", extent=extent,
                cmap="tab10", vmin=0, vmax=9, alpha=0.35, aspect="auto", interpolation="nearest")
    axes.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), cmap="tab10", vmin=0, vmax=9,
                 s=6, edgecolors="none")
    axes.set_title(f"decision boundary, epoch {epoch} ({classes} classes)", fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    return figure
