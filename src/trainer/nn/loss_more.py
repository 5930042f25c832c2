"""More loss modules, computed by the explicit rules of :mod:`trainer.functional.loss_more`
and :mod:`trainer.functional.loss_distance`. Each subclasses its ``torch.nn`` namesake: the
constructor, the registered ``weight`` and ``pos_weight`` buffers and ``state_dict`` are
torch's own."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CosineEmbeddingLoss", "HuberLoss", "KLDivLoss",
           "L1Loss", "SmoothL1Loss"]


class BCELoss(torch.nn.BCELoss):
    """:class:`torch.nn.BCELoss` through :func:`trainer.functional.binary_cross_entropy`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """:class:`torch.nn.BCEWithLogitsLoss` through
    :func:`trainer.functional.binary_cross_entropy_with_logits`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  pos_weight=self.pos_weight,
                                                  reduction=self.reduction)


class L1Loss(torch.nn.L1Loss):
    """:class:`torch.nn.L1Loss` through :func:`trainer.functional.l1_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(torch.nn.SmoothL1Loss):
    """:class:`torch.nn.SmoothL1Loss` through :func:`trainer.functional.smooth_l1_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(torch.nn.HuberLoss):
    """:class:`torch.nn.HuberLoss` through :func:`trainer.functional.huber_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(torch.nn.KLDivLoss):
    """:class:`torch.nn.KLDivLoss` through :func:`trainer.functional.kl_div`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class CosineEmbeddingLoss(torch.nn.CosineEmbeddingLoss):
    """:class:`torch.nn.CosineEmbeddingLoss` through
    :func:`trainer.functional.cosine_embedding_loss`."""

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return F.cosine_embedding_loss(input1, input2, target, margin=self.margin,
                                       reduction=self.reduction)
