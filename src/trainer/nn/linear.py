"""``nn.Linear``, computed by the explicit rule."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F
from trainer.functional._util import ShapeError, shape_str


class Linear(torch.nn.Linear):
    """Same arguments, parameters, initialization and ``state_dict`` as :class:`torch.nn.Linear`;
    forward and backward run through :func:`trainer.functional.linear`."""

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() == 0 or input.shape[-1] != self.in_features:
            raise ShapeError(f"{self!r}: expected input of shape (*, {self.in_features}), "
                             f"got {shape_str(input)}")
        return F.linear(input, self.weight, self.bias)
