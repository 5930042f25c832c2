"""Tiny data sets, recipes and Trainers for the callback tests, and ways to read what they log.

(A plain module, not a conftest: the test folders have no ``__init__.py``, so pytest puts this
folder on ``sys.path`` and the tests import it by name.)"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from trainer import data
from trainer.recipe import Recipe

MLP = {"name": "mlp", "hidden": [16], "norm": None, "dropout": 0.0}


class Blobs(data.TensorDataModule):
    """Linearly separable classes, as points of ``input_shape`` (images, signals, 2-D...)."""

    name = "blobs"

    def __init__(self, input_shape=(4,), num_classes=3, samples=240, separation=2.0,
                 **options):
        super().__init__(**options)
        self.input_shape, self.num_classes, self.samples = tuple(input_shape), num_classes, samples
        self.separation = separation  # spread of the class centers; noise has spread 1

    def load(self):
        generator = torch.Generator().manual_seed(0)
        y = torch.arange(self.samples) % self.num_classes
        features = torch.Size(self.input_shape).numel()
        centers = torch.randn(self.num_classes, features, generator=generator) * self.separation
        x = centers[y] + torch.randn(self.samples, features, generator=generator)
        x = x.reshape(self.samples, *self.input_shape)
        split = self.samples * 4 // 5
        return (x[:split], y[:split]), (x[split:], y[split:])


class RecordingLogger(Logger):
    """Keeps every ``log_metrics`` call: ``steps[tag] == {step: value}``."""

    def __init__(self):
        super().__init__()
        self.steps: dict[str, dict[int, float]] = {}

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        for tag, value in metrics.items():
            self.steps.setdefault(tag, {})[step] = float(value)

    def tags(self, prefix: str) -> dict[str, dict[int, float]]:
        return {tag: steps for tag, steps in self.steps.items() if tag.startswith(prefix)}


def recipe(model=None, optimizer=None, *, input_shape=(4,), num_classes=3) -> Recipe:
    return Recipe(model or MLP, optimizer or {"name": "sgd", "lr": 0.1},
                  {"name": "none"}, input_shape=list(input_shape), num_classes=num_classes)


def quiet_trainer(tmp_path: Path, callbacks, logger=None, **options) -> L.Trainer:
    settings = dict(accelerator="cpu", devices=1, logger=logger or False,
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0,
                    default_root_dir=tmp_path, callbacks=callbacks, log_every_n_steps=1)
    settings.update(options)
    return L.Trainer(**settings)


def tensorboard_logger(tmp_path: Path) -> TensorBoardLogger:
    return TensorBoardLogger(tmp_path, name="", version="", default_hp_metric=False)


def read_events(folder: Path):
    """An EventAccumulator over the event files in ``folder``, loaded with every sample."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0,
                                                              "histograms": 0})
    return accumulator.Reload()
