"""``nn.Embedding``, computed by the explicit rule."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F


class Embedding(torch.nn.Embedding):
    """:class:`torch.nn.Embedding` through :func:`trainer.functional.embedding`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)
