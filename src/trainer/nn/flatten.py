"""``nn.Flatten``, as an explicit reshape."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F


class Flatten(torch.nn.Flatten):
    """:class:`torch.nn.Flatten` through :func:`trainer.functional.flatten`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.flatten(input, self.start_dim, self.end_dim)
