"""Pieces the model builders share."""

from __future__ import annotations

from collections.abc import Sequence

import trainer.nn as nn


class ModelInputError(ValueError):
    """A model that cannot be built for this data, or from these options; names the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def activation(name: str) -> nn.Module:
    layers = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
              "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    if name not in layers:
        raise ModelInputError("model.activation", f"unknown activation {name!r}; known: "
                              f"{', '.join(layers)}")
    return layers[name]()


def dense_block(width_in: int, width_out: int, act: str, dropout: float, norm: str | None
                ) -> nn.Sequential:
    """Linear -> (BatchNorm1d | LayerNorm) -> activation -> (Dropout)."""
    layers: dict[str, nn.Module] = {"linear": nn.Linear(width_in, width_out)}
    if norm == "batch":
        layers["norm"] = nn.BatchNorm1d(width_out)
    elif norm == "layer":
        layers["norm"] = nn.LayerNorm(width_out)
    elif norm is not None:
        raise ModelInputError("model.norm", f"unknown norm {norm!r}; known: batch, layer, null")
    layers["activation"] = activation(act)
    if dropout > 0:
        layers["dropout"] = nn.Dropout(dropout)
    return nn.Sequential(_ordered(layers))


def head(width_in: int, hidden: Sequence[int], num_classes: int, act: str, dropout: float,
         norm: str | None = None) -> nn.Sequential:
    """Dense blocks of the ``hidden`` widths, then the classifier (one logit per class)."""
    layers: dict[str, nn.Module] = {}
    for i, width in enumerate(hidden):
        layers[f"dense{i}"] = dense_block(width_in, width, act, dropout, norm)
        width_in = width
    layers["classifier"] = nn.Linear(width_in, num_classes)
    return nn.Sequential(_ordered(layers))


def _ordered(layers: dict[str, nn.Module]):
    from collections import OrderedDict

    return OrderedDict(layers)


def product(values: Sequence[int]) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result
