"""RMS, group and instance normalization modules, computed by the explicit rules."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from trainer import functional as F
from trainer.functional._util import ShapeError, shape_str
from trainer.functional.shape import Reshape


class RMSNorm(torch.nn.RMSNorm):
    """:class:`torch.nn.RMSNorm` through :func:`trainer.functional.rms_norm`."""

    def forward(self, input: Tensor) -> Tensor:
        shape = tuple(self.normalized_shape)
        if input.dim() < len(shape) or tuple(input.shape[input.dim() - len(shape):]) != shape:
            raise ShapeError(f"{self!r}: expected input of shape (*, "
                             f"{', '.join(map(str, shape))}), got {shape_str(input)}")
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)


class GroupNorm(torch.nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` through :func:`trainer.functional.group_norm`."""

    def forward(self, input: Tensor) -> Tensor:
        # without affine parameters torch takes any channel count that num_groups divides
        if input.dim() < 2 or (self.affine and input.shape[1] != self.num_channels):
            raise ShapeError(f"{self!r}: expected input of shape (N, C, *) with "
                             f"C = {self.num_channels}, got {shape_str(input)}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


class _InstanceNormForward:
    """``torch.nn.modules.instancenorm._InstanceNorm.forward`` without running statistics:
    instance norm is group norm with a group per channel. With ``track_running_stats`` (eval
    normalizes by the running statistics, training updates them) it is not, and the call is
    left to torch's own forward."""

    def forward(self, input: Tensor) -> Tensor:
        if self.track_running_stats:  # not a group norm: torch's forward, built-in autograd
            return super().forward(input)
        self._check_input_dim(input)  # torch's rank check and message
        unbatched = input.dim() == self._get_no_batch_dim()
        feature_dim = input.dim() - self._get_no_batch_dim()
        channels = input.shape[feature_dim]
        if channels != self.num_features:  # torch's messages
            if self.affine:
                raise ValueError(
                    f"expected input's size at dim={feature_dim} to match num_features"
                    f" ({self.num_features}), but got: {channels}.")
            warnings.warn(
                f"input's size at dim={feature_dim} does not match num_features. "
                "You can silence this warning by not passing in num_features, "
                "which is not used because affine=False", stacklevel=2)
        batched = Reshape.apply(input, (1, *input.shape)) if unbatched else input
        if math.prod(batched.shape[2:]) == 1:  # as F.instance_norm
            raise ShapeError(f"{self!r}: expected more than 1 spatial element, "
                             f"got input {shape_str(input)}")
        output = F.group_norm(batched, channels, self.weight, self.bias, self.eps)
        return Reshape.apply(output, tuple(input.shape)) if unbatched else output


class InstanceNorm1d(_InstanceNormForward, torch.nn.InstanceNorm1d):
    """:class:`torch.nn.InstanceNorm1d` through :func:`trainer.functional.group_norm`, one
    group per channel; with ``track_running_stats=True``, torch's own."""


class InstanceNorm2d(_InstanceNormForward, torch.nn.InstanceNorm2d):
    """:class:`torch.nn.InstanceNorm2d` through :func:`trainer.functional.group_norm`, one
    group per channel; with ``track_running_stats=True``, torch's own."""


class LocalResponseNorm(torch.nn.LocalResponseNorm):
    r""":class:`torch.nn.LocalResponseNorm` as a composition of explicit rules, no Function of
    its own:

        b_c = a_c / (k + α · mean_{c′ ∈ W(c)} a_{c′}²)^β,   W(c) = c − ⌊n/2⌋ … c + ⌊(n−1)/2⌋

    over the channels (dim 1) of a (N, C, *) input, the window zero-padded at the ends (the
    mean still divides by n, as torch's). mul (a²), pad and avg_pool2d with an (n, 1) window
    over the (N, 1, C, ∏*) view, mul and add (α·m + k), pow (^β) and div: each gradient is
    that rule's, and what is saved is theirs: a (for a² and for div, no copy), pow's base
    α·m + k and div's divisor, two buffers of a's size (torch's own composition keeps more).
    """

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() < 3:
            raise ShapeError(f"{self!r}: expected input of shape (N, C, *) with 3 or more "
                             f"dims, got {shape_str(input)}")
        if input.numel() == 0:  # as torch's
            return input
        size = self.size
        squares = F.mul(input, input).reshape(input.shape[0], 1, input.shape[1], -1)
        padded = F.pad(squares, (0, 0, size // 2, (size - 1) // 2))
        mean = F.avg_pool2d(padded, (size, 1), stride=1).reshape(input.shape)
        return F.div(input, F.pow(F.add(F.mul(mean, self.alpha), self.k), self.beta))
