"""The multilayer perceptron."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import trainer.nn as nn

from .common import head, product


def mlp(input_shape: tuple[int, ...], num_classes: int, *, hidden: Sequence[int] = (256, 128),
        activation: str = "relu", dropout: float = 0.0, norm: str | None = None
        ) -> nn.Sequential:
    """Flatten -> [Linear -> norm -> activation -> Dropout] per ``hidden`` width -> Linear."""
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(),
        head=head(product(input_shape), hidden, num_classes, activation, dropout, norm),
    ))
