"""``nn.Dropout``, computed by the explicit rule."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F


class Dropout(torch.nn.Dropout):
    """:class:`torch.nn.Dropout` through :func:`trainer.functional.dropout`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)
