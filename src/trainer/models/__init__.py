"""Classifiers built only from :mod:`trainer.nn`, sized by the data they will see.

``build(model_config, input_shape, num_classes)`` picks a builder by ``model_config["name"]``:

=========  =====================================  =======================================
name       inputs                                  layers
=========  =====================================  =======================================
mlp        any shape (flattened)                   Linear, norm, activation, Dropout
cnn        images ``(C, H, W)``                    Conv2d, BatchNorm2d, MaxPool2d, MLP head
cnn1d      signals ``(C, L)``                      Conv1d, BatchNorm1d, MaxPool1d, MLP head
attention  images (rows), signals (chunks), points  multi-head self-attention blocks
gpt        token ids ``(T,)``, num_classes = vocab     nanoGPT: causal blocks, tied LM head
rnn        signals (L steps), images (rows), points  GRU, LSTM or RNN, LayerNorm, Linear head
=========  =====================================  =======================================

and one that is not a classifier: ``autoencoder`` takes images ``(C, H, W)`` and reconstructs
them (strided Conv2d down, ConvTranspose2d or Upsample + Conv2d up; the labels are unused).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .attention import attention
from .autoencoder import Autoencoder
from .common import ModelInputError
from .conv import cnn, cnn1d
from .gpt import gpt
from .mlp import mlp
from .rnn import rnn

MODELS: dict[str, Callable[..., torch.nn.Module]] = {
    "mlp": mlp,
    "cnn": cnn,
    "cnn1d": cnn1d,
    "attention": attention,
    "gpt": gpt,
    "rnn": rnn,
    "autoencoder": Autoencoder,  # a class: its `task` says which recipe trains it
}


def build(model: Mapping[str, Any], input_shape: Sequence[int], num_classes: int
          ) -> torch.nn.Module:
    """The model that ``model`` (a ``model/`` config: ``name`` plus its options) describes."""
    options = dict(model)
    name = options.pop("name")
    if name not in MODELS:
        raise ModelInputError("model.name", f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](tuple(int(s) for s in input_shape), int(num_classes), **options)


def accepts(name: str, input_shape: Sequence[int], tokens: bool = False) -> bool:
    """Whether model ``name`` can take samples of ``input_shape``: with ``tokens``, integer
    token ids (only gpt takes them), otherwise float features (gpt takes none)."""
    ranks = {"mlp": (1, 2, 3), "cnn": (3,), "cnn1d": (2,), "attention": (1, 2, 3), "gpt": (1,),
             "rnn": (1, 2, 3), "autoencoder": (3,)}
    return (name == "gpt") == bool(tokens) and len(input_shape) in ranks[name]


__all__ = ["MODELS", "Autoencoder", "ModelInputError", "accepts", "attention", "build", "cnn",
           "cnn1d", "gpt", "mlp", "rnn"]
