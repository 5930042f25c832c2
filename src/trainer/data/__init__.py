"""LightningDataModules for small classification sets, served as whole batches from tensors,
and for character-level text (:mod:`trainer.data.text`).

``build(data_config, seed)`` picks the module by ``data_config["name"]``. Every module exposes
``input_shape`` and ``num_classes`` before ``setup``, so models size themselves from it: all but
``tensors`` without loading anything, ``tensors`` by reading its (small) file when built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import DataError, TensorDataModule
from .batches import BatchSampler, TensorBatches, batch_loader
from .corpora import corpus
from .digits import DigitsDataModule
from .idx import FashionMNISTDataModule, IDXDataModule, IDXError, MNISTDataModule, read_idx
from .mnist1d import MNIST1DDataModule
from .tensors import TensorsDataModule
from .text import CharVocab, ShakespeareCharDataModule, TextDataModule, vocab_from_checkpoint
from .toy2d import MoonsDataModule, SpiralsDataModule

DATAMODULES: dict[str, type[TensorDataModule] | type[TextDataModule]] = {
    "digits": DigitsDataModule,
    "mnist1d": MNIST1DDataModule,
    "moons": MoonsDataModule,
    "spirals": SpiralsDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "mnist": MNISTDataModule,
    "tensors": TensorsDataModule,
    "shakespeare_char": ShakespeareCharDataModule,
    "text": TextDataModule,
}


def build(data: Mapping[str, Any], seed: int = 0) -> TensorDataModule | TextDataModule:
    """The datamodule that ``data`` (a ``data/`` config: ``name`` plus its options) describes."""
    options = dict(data)
    name = options.pop("name")
    if name not in DATAMODULES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATAMODULES)}")
    return DATAMODULES[name](seed=seed, **options)


__all__ = [
    "DATAMODULES", "BatchSampler", "CharVocab", "DataError", "DigitsDataModule",
    "FashionMNISTDataModule", "IDXDataModule", "IDXError", "MNIST1DDataModule", "MNISTDataModule",
    "MoonsDataModule", "ShakespeareCharDataModule", "SpiralsDataModule", "TensorBatches",
    "TensorDataModule", "TensorsDataModule", "TextDataModule", "batch_loader", "build", "corpus",
    "read_idx", "vocab_from_checkpoint",
]
