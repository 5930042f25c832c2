"""Normalization modules, computed by the explicit rules."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F
from trainer.functional._util import ShapeError, shape_str

from ._check import check_input


class _BatchNormForward:
    """The running-statistics bookkeeping of ``torch.nn.modules.batchnorm._BatchNorm``,
    kept line for line so that buffers evolve exactly as torch's do."""

    _channel_dim_by_rank: dict[int, int]
    _layout: str

    def forward(self, input: Tensor) -> Tensor:
        check_input(self, input, self._channel_dim_by_rank, self.num_features, self._layout)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            # momentum=None means a cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )


class BatchNorm1d(_BatchNormForward, torch.nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` through :func:`trainer.functional.batch_norm`."""

    _channel_dim_by_rank, _layout = {2: 1, 3: 1}, "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNormForward, torch.nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` through :func:`trainer.functional.batch_norm`."""

    _channel_dim_by_rank, _layout = {4: 1}, "(N, C, H, W)"


class LayerNorm(torch.nn.LayerNorm):
    """:class:`torch.nn.LayerNorm` through :func:`trainer.functional.layer_norm`."""

    def forward(self, input: Tensor) -> Tensor:
        n = len(self.normalized_shape)
        if tuple(input.shape[input.dim() - n:]) != tuple(self.normalized_shape) or input.dim() < n:
            raise ShapeError(f"{self!r}: expected input of shape (*, "
                             f"{', '.join(map(str, self.normalized_shape))}), got {shape_str(input)}")
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)
