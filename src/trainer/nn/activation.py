"""Activation modules, computed by the explicit rules."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F


class ReLU(torch.nn.ReLU):
    """:class:`torch.nn.ReLU` through :func:`trainer.functional.relu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input, inplace=self.inplace)


class LeakyReLU(torch.nn.LeakyReLU):
    """:class:`torch.nn.LeakyReLU` through :func:`trainer.functional.leaky_relu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope, self.inplace)


class GELU(torch.nn.GELU):
    """:class:`torch.nn.GELU` through :func:`trainer.functional.gelu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)


class SiLU(torch.nn.SiLU):
    """:class:`torch.nn.SiLU` through :func:`trainer.functional.silu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.silu(input, inplace=self.inplace)


class Sigmoid(torch.nn.Sigmoid):
    """:class:`torch.nn.Sigmoid` through :func:`trainer.functional.sigmoid`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(torch.nn.Tanh):
    """:class:`torch.nn.Tanh` through :func:`trainer.functional.tanh`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class Softmax(torch.nn.Softmax):
    """:class:`torch.nn.Softmax` through :func:`trainer.functional.softmax`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(torch.nn.LogSoftmax):
    """:class:`torch.nn.LogSoftmax` through :func:`trainer.functional.log_softmax`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim, _stacklevel=5)
