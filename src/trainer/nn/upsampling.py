"""Transposed convolutions, upsampling, adaptive max pooling and pixel shuffle modules,
computed by the explicit rules. Each subclasses its ``torch.nn`` namesake and overrides only
``forward``."""

from __future__ import annotations

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from trainer import functional as F

from ._check import check_input

__all__ = ["AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "ConvTranspose1d", "ConvTranspose2d",
           "PixelShuffle", "PixelUnshuffle", "Upsample", "UpsamplingBilinear2d",
           "UpsamplingNearest2d"]


class ConvTranspose1d(torch.nn.ConvTranspose1d):
    """:class:`torch.nn.ConvTranspose1d` through :func:`trainer.functional.conv_transpose1d`;
    ``output_size`` picks the output_padding, as torch's does."""

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose1d")
        check_input(self, input, {3: 1, 2: 0}, self.in_channels, "(N, C, L) or (C, L)")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 1, self.dilation)
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)


class ConvTranspose2d(torch.nn.ConvTranspose2d):
    """:class:`torch.nn.ConvTranspose2d` through :func:`trainer.functional.conv_transpose2d`;
    ``output_size`` picks the output_padding, as torch's does."""

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        check_input(self, input, {4: 1, 3: 0}, self.in_channels, "(N, C, H, W) or (C, H, W)")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)


def _upsample(module: torch.nn.Upsample, input: Tensor) -> Tensor:
    """torch's Upsample.forward through the rule; bicubic (no rule) runs natively, which
    trainer.explicit() and a converted model's report count as a fallback."""
    interpolate = torch_F.interpolate if module.mode == "bicubic" else F.interpolate
    return interpolate(input, module.size, module.scale_factor, module.mode,
                       module.align_corners, recompute_scale_factor=module.recompute_scale_factor)


class Upsample(torch.nn.Upsample):
    """:class:`torch.nn.Upsample` through :func:`trainer.functional.interpolate`."""

    def forward(self, input: Tensor) -> Tensor:
        return _upsample(self, input)


class UpsamplingNearest2d(torch.nn.UpsamplingNearest2d):
    """:class:`torch.nn.UpsamplingNearest2d` through :func:`trainer.functional.interpolate`."""

    def forward(self, input: Tensor) -> Tensor:
        return _upsample(self, input)


class UpsamplingBilinear2d(torch.nn.UpsamplingBilinear2d):
    """:class:`torch.nn.UpsamplingBilinear2d` (align_corners=True) through
    :func:`trainer.functional.interpolate`."""

    def forward(self, input: Tensor) -> Tensor:
        return _upsample(self, input)


class AdaptiveMaxPool1d(torch.nn.AdaptiveMaxPool1d):
    """:class:`torch.nn.AdaptiveMaxPool1d` through
    :func:`trainer.functional.adaptive_max_pool1d`."""

    def forward(self, input: Tensor):
        return F.adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(torch.nn.AdaptiveMaxPool2d):
    """:class:`torch.nn.AdaptiveMaxPool2d` through
    :func:`trainer.functional.adaptive_max_pool2d`."""

    def forward(self, input: Tensor):
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class PixelShuffle(torch.nn.PixelShuffle):
    """:class:`torch.nn.PixelShuffle` through :func:`trainer.functional.pixel_shuffle`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pixel_shuffle(input, self.upscale_factor)


class PixelUnshuffle(torch.nn.PixelUnshuffle):
    """:class:`torch.nn.PixelUnshuffle` through :func:`trainer.functional.pixel_unshuffle`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.pixel_unshuffle(input, self.downscale_factor)
