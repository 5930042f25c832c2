"""A convolutional autoencoder for images ``(C, H, W)``, built only from :mod:`trainer.nn`.

Down: [Conv2d 3x3 stride 2 -> BatchNorm2d -> activation] per channel count, each halving the
map (``H -> ceil(H / 2)``). The code: Flatten -> Linear to ``latent`` values, and back
(Linear -> activation, reshaped to the smallest map); ``latent: null`` keeps the conv map as the
code. Up, the same sizes in reverse, by one of:

- ``up: transposed``: ConvTranspose2d 3x3 stride 2, its ``output_padding`` (0 or 1) chosen so
  each map regains the size it had on the way down (28 -> 14 -> 7 -> 14 -> 28; 7 -> 4 -> 7);
- ``up: upsample``: Upsample to that size (``upsample_mode`` nearest or bilinear), then a 3x3
  Conv2d.

Each up step but the last is followed by BatchNorm2d and the activation; the last gives C
channels with no norm nor activation: the standardized image itself (``loss: mse``) or each
pixel's logit of being lit (``loss: bce_with_logits``, trained against the image rescaled to
[0, 1]; see :mod:`trainer.reconstruction`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor

import trainer.nn as nn
from trainer.functional.shape import reshape

from .common import ModelInputError
from .common import activation as make_activation

UPS = ("transposed", "upsample")
UPSAMPLE_MODES = ("nearest", "bilinear")
LOSSES = ("mse", "bce_with_logits")


def halved(size: int) -> int:
    """The size a 3x3, stride 2, padding 1 convolution gives: ``ceil(size / 2)``."""
    return (size - 1) // 2 + 1


class Autoencoder(nn.Module):
    """image -> encoder (strided convs) -> code -> decoder (transposed convs or upsampling) ->
    reconstruction of the image's shape. ``num_classes`` is taken, for the builders' common
    signature, and ignored: the labels play no part."""

    #: What it learns: the recipe for it is :class:`trainer.reconstruction.ReconstructionRecipe`.
    task = "reconstruct"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 0, *,
                 channels: Sequence[int] = (16, 32), latent: int | None = 32,
                 up: str = "transposed", upsample_mode: str = "nearest",
                 activation: str = "relu", norm: str | None = "batch", loss: str = "mse"):
        super().__init__()
        if len(input_shape) != 3:
            raise ModelInputError("model", f"autoencoder needs images shaped (C, H, W); the data "
                                  f"gives {tuple(input_shape)} (an image data set: data=digits, "
                                  "fashion_mnist, mnist)")
        for key, value, known in (("up", up, UPS), ("upsample_mode", upsample_mode,
                                                     UPSAMPLE_MODES), ("loss", loss, LOSSES),
                                  ("norm", norm, (None, "batch"))):
            if value not in known:
                raise ModelInputError(f"model.{key}", f"unknown {key} {value!r}; known: "
                                      f"{', '.join(str(k) for k in known)}")
        if not channels or min(channels) < 1:
            raise ModelInputError("model.channels", f"autoencoder needs one or more channel "
                                  f"counts, each >= 1, got {list(channels)}")
        if latent is not None and latent < 1:
            raise ModelInputError("model.latent", f"must be >= 1 or null, got {latent}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.loss = loss
        # The map's size after each down step: sizes[0] is the image's, sizes[-1] the code's.
        sizes = [self.input_shape[1:]]
        for _ in channels:
            sizes.append(tuple(halved(s) for s in sizes[-1]))
        self.code_shape = (int(channels[-1]), *sizes[-1])

        def block(layer: nn.Module, width: int) -> nn.Sequential:
            parts = {"conv": layer}
            if norm == "batch":
                parts["norm"] = nn.BatchNorm2d(width)
            parts["activation"] = make_activation(activation)
            return nn.Sequential(OrderedDict(parts))

        widths = [self.input_shape[0], *channels]
        self.encoder = nn.Sequential(OrderedDict(
            (f"down{i}", block(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1,
                                         bias=norm is None), widths[i + 1]))
            for i in range(len(channels))))
        flat = self.code_shape[0] * self.code_shape[1] * self.code_shape[2]
        self.to_code = nn.Linear(flat, latent) if latent is not None else None
        self.from_code = nn.Sequential(OrderedDict(
            [("linear", nn.Linear(latent, flat)), ("activation", make_activation(activation))])
        ) if latent is not None else None
        steps = {}
        for step, i in enumerate(reversed(range(len(channels)))):
            last = i == 0
            width_in, width_out = widths[i + 1], widths[i]
            small, size = sizes[i + 1], sizes[i]
            if up == "transposed":
                # out = (in - 1)·2 - 2·1 + 3 + output_padding = 2·in - 1 + output_padding
                padding_out = tuple(s - (2 * t - 1) for s, t in zip(size, small))
                layer = nn.ConvTranspose2d(width_in, width_out, 3, stride=2, padding=1,
                                           output_padding=padding_out,
                                           bias=last or norm is None)
            else:
                layer = nn.Sequential(OrderedDict([
                    ("upsample", nn.Upsample(size=size, mode=upsample_mode)),
                    ("conv", nn.Conv2d(width_in, width_out, 3, padding=1,
                                       bias=last or norm is None))]))
            steps[f"up{step}"] = layer if last else block(layer, width_out)
        self.decoder = nn.Sequential(OrderedDict(steps))

    def encode(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` to their codes: ``(B, latent)``, or the last conv map."""
        h = self.encoder(x)
        return self.to_code(reshape(h, (h.shape[0], -1))) if self.to_code is not None else h

    def decode(self, code: Tensor) -> Tensor:
        """Codes back to ``(B, C, H, W)``: values (mse) or logits (bce_with_logits)."""
        if self.from_code is not None:
            code = reshape(self.from_code(code), (code.shape[0], *self.code_shape))
        return self.decoder(code)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ModelInputError("model", f"autoencoder built for images {self.input_shape} "
                                  f"got a batch of shape {tuple(x.shape)}, expected "
                                  f"(B, {', '.join(map(str, self.input_shape))})")
        return self.decode(self.encode(x))

