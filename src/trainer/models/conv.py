"""Convolutional stacks: 2-D for images, 1-D for signals."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import trainer.nn as nn

from .common import ModelInputError, head
from .common import activation as make_activation


def cnn(input_shape: tuple[int, ...], num_classes: int, *, channels: Sequence[int] = (32, 64),
        kernel_size: int = 3, pool_every: int = 1, hidden: Sequence[int] = (128,),
        activation: str = "relu", dropout: float = 0.0, norm: str | None = "batch"
        ) -> nn.Sequential:
    """[Conv2d -> BatchNorm2d -> activation (-> MaxPool2d 2x2)] per channel count, then an MLP.

    'Same' padding keeps the map's size through each conv; each pool halves it (pools stop once
    the map is down to one pixel).
    """
    if len(input_shape) != 3:
        raise ModelInputError("model", f"cnn needs images shaped (C, H, W); the data gives "
                              f"{input_shape} (use model=mlp, cnn1d or attention)")
    width, height_px, width_px = input_shape
    layers: dict[str, nn.Module] = {}
    for i, out in enumerate(channels):
        block: dict[str, nn.Module] = {
            "conv": nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2,
                              bias=norm is None)}
        height_px, width_px = _same_size(height_px, kernel_size), _same_size(width_px, kernel_size)
        if norm == "batch":
            block["norm"] = nn.BatchNorm2d(out)
        block["activation"] = make_activation(activation)
        if (i + 1) % pool_every == 0 and min(height_px, width_px) >= 2:
            block["pool"] = nn.MaxPool2d(2)
            height_px, width_px = height_px // 2, width_px // 2
        layers[f"conv{i}"] = nn.Sequential(OrderedDict(block))
        width = out
    layers["flatten"] = nn.Flatten()
    if dropout > 0:
        layers["dropout"] = nn.Dropout(dropout)
    layers["head"] = head(width * height_px * width_px, hidden, num_classes, activation, dropout)
    return nn.Sequential(OrderedDict(layers))


def cnn1d(input_shape: tuple[int, ...], num_classes: int, *, channels: Sequence[int] = (64, 64, 64),
          kernel_size: int = 5, stride: int = 1, pool_every: int = 1, hidden: Sequence[int] = (),
          activation: str = "relu", dropout: float = 0.0, norm: str | None = "batch"
          ) -> nn.Sequential:
    """[Conv1d -> BatchNorm1d -> activation (-> MaxPool1d 2)] per channel count, then an MLP.

    Padding ``kernel_size // 2`` with ``stride`` s maps length L to ``(L - 1) // s + 1``.
    """
    if len(input_shape) != 2:
        raise ModelInputError("model", f"cnn1d needs signals shaped (C, L); the data gives "
                              f"{input_shape} (use model=mlp, cnn or attention)")
    width, length = input_shape
    layers: dict[str, nn.Module] = {}
    for i, out in enumerate(channels):
        block: dict[str, nn.Module] = {
            "conv": nn.Conv1d(width, out, kernel_size, stride=stride, padding=kernel_size // 2,
                              bias=norm is None)}
        length = (length + 2 * (kernel_size // 2) - kernel_size) // stride + 1
        if norm == "batch":
            block["norm"] = nn.BatchNorm1d(out)
        block["activation"] = make_activation(activation)
        if pool_every and (i + 1) % pool_every == 0 and length >= 2:
            block["pool"] = nn.MaxPool1d(2)
            length //= 2
        if length < 1:
            raise ModelInputError("model.channels", f"cnn1d: {i + 1} convs of stride {stride} "
                                  f"shrink the signal of length {input_shape[1]} to nothing")
        layers[f"conv{i}"] = nn.Sequential(OrderedDict(block))
        width = out
    layers["flatten"] = nn.Flatten()
    if dropout > 0:
        layers["dropout"] = nn.Dropout(dropout)
    layers["head"] = head(width * length, hidden, num_classes, activation, dropout)
    return nn.Sequential(OrderedDict(layers))


def _same_size(size: int, kernel_size: int) -> int:
    # Padding k // 2 keeps odd kernels' output size; even kernels add one.
    return size + 2 * (kernel_size // 2) - kernel_size + 1
