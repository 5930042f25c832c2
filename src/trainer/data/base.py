"""The shared shape of every datamodule: load arrays, split, normalize, serve whole batches."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from .batches import batch_loader


class DataError(RuntimeError):
    """Data that cannot be found or read; the message says what to do about it."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def random_split(x: Tensor, y: Tensor, fraction: float, generator: torch.Generator
                 ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Split off ``round(len(x) * fraction)`` samples at random, stratified by class so that
    both parts keep the class balance: returns ``(rest, part)``."""
    count = round(len(x) * fraction)
    shuffled = torch.randperm(len(x), generator=generator)
    by_class = shuffled[torch.sort(y[shuffled], stable=True).indices]  # random within a class
    # Evenly spaced picks along the class-sorted order take each class in proportion.
    picks = ((torch.arange(count) + 0.5) * len(x) / max(count, 1)).long()
    taken = torch.zeros(len(x), dtype=torch.bool)
    taken[by_class[picks]] = True
    keep, part = shuffled[~taken[shuffled]], shuffled[taken[shuffled]]
    return (x[keep], y[keep]), (x[part], y[part])


class TensorDataModule(L.LightningDataModule):
    """A data set small enough to hold in memory as tensors.

    Subclasses say what the samples look like (``input_shape``, ``num_classes``) without
    loading anything, so a model can be built first, and implement :meth:`load`, returning the
    train and test sets (``x`` float, ``y`` int64). This class carves the validation split out
    of the train set (:meth:`split_val`), normalizes all three with the train split's
    statistics, and serves whole batches (see :mod:`trainer.data.batches`). The splits depend
    only on ``split_seed``: fixed by default, so runs with different ``seed`` (initialization,
    batch order) share one test set; ``split_seed=None`` takes ``seed``.
    """

    name: str = "tensors"
    #: What one sample's input looks like, without the batch dimension.
    input_shape: tuple[int, ...]
    num_classes: int
    #: The config key that refusals of the data name: the one to change to fix it.
    data_key: str = "data"

    def __init__(self, *, root: str | Path = "data", batch_size: int = 64,
                 eval_batch_size: int = 1024, val_fraction: float = 0.1, normalize: bool = True,
                 seed: int = 0, split_seed: int | None = 0):
        super().__init__()
        self.root = Path(root)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.normalize = normalize
        self.seed = seed
        self.split_seed = seed if split_seed is None else split_seed
        self.train: tuple[Tensor, Tensor] | None = None
        self.val: tuple[Tensor, Tensor] | None = None
        self.test: tuple[Tensor, Tensor] | None = None
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    # -- what subclasses provide ---------------------------------------------------------------

    def load(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Return ``((x_train, y_train), (x_test, y_test))``; inputs ``(N, *input_shape)``."""
        raise NotImplementedError

    @property
    def source(self) -> str:
        """The data as refusals name it: the set's name, or the file it comes from."""
        return self.name

    # -- splitting and normalizing ---------------------------------------------------------------

    def generator(self, salt: int = 0) -> torch.Generator:
        """Random numbers for splitting (and generating) the data: from ``split_seed``."""
        return torch.Generator().manual_seed(self.split_seed * 1_000_003 + salt)

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        (x_train, y_train), test = self.load()
        self.check_split("train", x_train, y_train)
        self.check_split("test", *test)
        train, val = self.split_val(x_train, y_train)
        if self.normalize:
            # Statistics of the train split only: validation and test stay unseen.
            dims = [0, *range(2, train[0].dim())]  # all but the channel (or feature) dim
            self.mean = train[0].mean(dim=dims, keepdim=True)[0]
            self.std = train[0].std(dim=dims, keepdim=True)[0].clamp_min(1e-6)
            train, val, test = (((x - self.mean) / self.std, y) for x, y in (train, val, test))
        self.train, self.val, self.test = (
            (x.float().contiguous(), y.long().contiguous()) for x, y in (train, val, test))

    def split_val(self, x: Tensor, y: Tensor
                  ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Split the validation set off the train set ``(x, y)``: returns ``(train, val)``.

        Here ``val_fraction`` of it, stratified (an empty val split when 0); a data set that
        comes with its own validation split returns that instead."""
        if self.val_fraction > 0:
            return random_split(x, y, self.val_fraction, self.generator(1))
        return (x, y), (x[:0], y[:0])

    def check_split(self, split: str, x: Tensor, y: Tensor) -> None:
        """Refuse, naming the problem, what would otherwise fail deep inside training (or
        train on nonsense): an empty split, inputs of another shape than ``input_shape``,
        labels that are not whole numbers in ``[0, num_classes)``."""
        key, where = self.data_key, f"{self.source}: the {split} split"
        if len(x) == 0:
            raise DataError(key, f"{where} is empty: nothing to train or test on")
        if len(y) != len(x):
            raise DataError(key, f"{where} has {len(x)} inputs but {len(y)} labels")
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise DataError(key, f"{where} holds inputs of shape {tuple(x.shape[1:])}, "
                            f"expected {tuple(self.input_shape)}")
        if y.dim() != 1 or y.is_complex() or y.dtype == torch.bool:
            raise DataError(key, f"{where}: expected one class number per sample, got labels "
                            f"of shape {tuple(y.shape)} and dtype {y.dtype}")
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise DataError(key, f"{where}: labels must be whole class numbers, got "
                            f"{y[y != y.round()][0].item()!r} (dtype {y.dtype})")
        low, high = y.min().item(), y.max().item()
        if low < 0 or high >= self.num_classes:
            raise DataError(key, f"{where}: labels must lie in [0, {self.num_classes}) for "
                            f"{self.num_classes} classes, found labels from {low:g} to {high:g}")

    @property
    def class_names(self) -> list[str]:
        return [str(i) for i in range(self.num_classes)]

    # -- loaders ---------------------------------------------------------------------------------

    def _loader(self, split: tuple[Tensor, Tensor], batch_size: int, shuffle: bool):
        pin = torch.cuda.is_available() and self.trainer is not None and \
            self.trainer.strategy.root_device.type == "cuda"
        return batch_loader(split[0], split[1], batch_size, shuffle=shuffle, seed=self.seed,
                            pin_memory=pin)

    def train_dataloader(self):
        self.setup()
        return self._loader(self.train, self.batch_size, shuffle=True)

    def val_dataloader(self):
        self.setup()
        return self._loader(self.val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        self.setup()
        return self._loader(self.test, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self):
        self.setup()
        return self._loader(self.test, self.eval_batch_size, shuffle=False)

    def describe(self) -> str:
        sizes = ", ".join(f"{name} {len(split[0])}" for name, split in
                          (("train", self.train), ("val", self.val), ("test", self.test))
                          if split is not None)
        return f"{self.name}: inputs {tuple(self.input_shape)}, {self.num_classes} classes; {sizes}"


def as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
    """Float32 inputs and int64 labels, copied only where needed (IDX arrays are read-only).

    Float labels stay float, for :meth:`TensorDataModule.check_split` to refuse 1.5 rather than
    have it silently become class 1."""
    labels = np.require(y, None if np.issubdtype(y.dtype, np.floating) else np.int64, ["C", "W"])
    return torch.from_numpy(np.require(x, np.float32, ["C", "W"])), torch.from_numpy(labels)
