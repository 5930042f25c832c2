"""``nn.Conv1d`` and ``nn.Conv2d``, computed by the explicit rules."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F

from ._check import check_input


class _ZerosPaddingOnly:
    def _refuse_padding_mode(self) -> None:
        # Reflect/replicate/circular padding would need an explicit pad rule of its own.
        if self.padding_mode != "zeros":
            raise NotImplementedError(
                f"{type(self).__name__}: padding_mode={self.padding_mode!r} has no explicit "
                "rule; use padding_mode='zeros'"
            )


class Conv1d(_ZerosPaddingOnly, torch.nn.Conv1d):
    """Same arguments, parameters, initialization and ``state_dict`` as :class:`torch.nn.Conv1d`;
    forward and backward run through :func:`trainer.functional.conv1d`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._refuse_padding_mode()

    def forward(self, input: Tensor) -> Tensor:
        check_input(self, input, {3: 1, 2: 0}, self.in_channels, "(N, C, L) or (C, L)")
        return F.conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class Conv2d(_ZerosPaddingOnly, torch.nn.Conv2d):
    """Same arguments, parameters, initialization and ``state_dict`` as :class:`torch.nn.Conv2d`;
    forward and backward run through :func:`trainer.functional.conv2d`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._refuse_padding_mode()

    def forward(self, input: Tensor) -> Tensor:
        check_input(self, input, {4: 1, 3: 0}, self.in_channels, "(N, C, H, W) or (C, H, W)")
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)
