"""Padding and adaptive pooling modules, computed by the explicit rules."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F


class AdaptiveAvgPool1d(torch.nn.AdaptiveAvgPool1d):
    """:class:`torch.nn.AdaptiveAvgPool1d` through
    :func:`trainer.functional.adaptive_avg_pool1d`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(torch.nn.AdaptiveAvgPool2d):
    """:class:`torch.nn.AdaptiveAvgPool2d` through
    :func:`trainer.functional.adaptive_avg_pool2d`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(input, self.output_size)


class ZeroPad1d(torch.nn.ZeroPad1d):
    """:class:`torch.nn.ZeroPad1d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)


class ZeroPad2d(torch.nn.ZeroPad2d):
    """:class:`torch.nn.ZeroPad2d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)


class ConstantPad1d(torch.nn.ConstantPad1d):
    """:class:`torch.nn.ConstantPad1d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)


class ConstantPad2d(torch.nn.ConstantPad2d):
    """:class:`torch.nn.ConstantPad2d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)


class ReflectionPad1d(torch.nn.ReflectionPad1d):
    """:class:`torch.nn.ReflectionPad1d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "reflect")


class ReflectionPad2d(torch.nn.ReflectionPad2d):
    """:class:`torch.nn.ReflectionPad2d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "reflect")


class ReplicationPad1d(torch.nn.ReplicationPad1d):
    """:class:`torch.nn.ReplicationPad1d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "replicate")


class ReplicationPad2d(torch.nn.ReplicationPad2d):
    """:class:`torch.nn.ReplicationPad2d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "replicate")


class CircularPad1d(torch.nn.CircularPad1d):
    """:class:`torch.nn.CircularPad1d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)  # torch's own: 2-D or 3-D input
        return F.pad(input, self.padding, "circular")


class CircularPad2d(torch.nn.CircularPad2d):
    """:class:`torch.nn.CircularPad2d` through :func:`trainer.functional.pad`."""

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)  # torch's own: 3-D or 4-D input
        return F.pad(input, self.padding, "circular")
