"""Pooling modules, computed by the explicit rules."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F


class MaxPool1d(torch.nn.MaxPool1d):
    """:class:`torch.nn.MaxPool1d` through :func:`trainer.functional.max_pool1d`."""

    def forward(self, input: Tensor):
        return F.max_pool1d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class MaxPool2d(torch.nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` through :func:`trainer.functional.max_pool2d`."""

    def forward(self, input: Tensor):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool1d(torch.nn.AvgPool1d):
    """:class:`torch.nn.AvgPool1d` through :func:`trainer.functional.avg_pool1d`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class AvgPool2d(torch.nn.AvgPool2d):
    """:class:`torch.nn.AvgPool2d` through :func:`trainer.functional.avg_pool2d`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)
