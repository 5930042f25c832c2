"""The table of rules, section: transposed convolution, interpolation, adaptive max pooling,
pixel shuffle (see :mod:`trainer.rules`).

The entry points, as a TorchFunctionMode receives them (checked by experiment, torch 2.13):
``F.conv_transpose1d/2d`` are ``torch.conv_transpose1d/2d`` (builtins, positional arguments
in F's order), called so by ``nn.ConvTranspose1d/2d`` after they turn ``output_size`` into an
output_padding. ``F.interpolate`` arrives as itself, with every option as a keyword, from
``F.upsample``, ``F.upsample_nearest``, ``F.upsample_bilinear`` (align_corners=True),
``nn.Upsample``, ``nn.UpsamplingNearest2d`` and ``nn.UpsamplingBilinear2d`` alike (the mode
sees none of those wrappers, nor the ``torch._C._nn.upsample_*`` kernel interpolate calls).
``F.adaptive_max_pool1d/2d`` arrive as themselves (``return_indices`` a keyword), or as
``F.adaptive_max_pool1d/2d_with_indices`` when ``return_indices=True`` (those always return
the pair); ``torch.adaptive_max_pool1d`` returns the pair too. ``F.pixel_shuffle`` and
``nn.PixelShuffle`` arrive as ``torch.pixel_shuffle`` (the same builtin), and likewise unshuffle.
"""

from __future__ import annotations

from torch import Tensor

from trainer import functional as F
from trainer.functional.adaptive_pool import AdaptiveMaxPool1d, AdaptiveMaxPool2d
from trainer.functional.conv_transpose import ConvTranspose1d, ConvTranspose2d
from trainer.functional.interpolate import Interpolate, PixelShuffle, PixelUnshuffle
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

# -- adapters: torch's calls of these entry points -> the rule, or NotImplemented (native) ----


def interpolate_from_torch(input, size=None, scale_factor=None, mode="nearest",
                           align_corners=None, recompute_scale_factor=None, antialias=False):
    """``F.interpolate``: bicubic, antialiased and 3-D area resampling have no rule and run
    natively (a counted fallback); every other call is the rule's, its errors included."""
    if (mode == "bicubic" or antialias
            or (mode == "area" and isinstance(input, Tensor) and input.dim() == 5)):
        return NotImplemented
    return F.interpolate(input, size, scale_factor, mode, align_corners, recompute_scale_factor)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=False):
    """``F.adaptive_max_pool1d_with_indices`` and ``torch.adaptive_max_pool1d``: always the
    pair (output, indices)."""
    return F.adaptive_max_pool1d(input, output_size, return_indices=True)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=False):
    """``F.adaptive_max_pool2d_with_indices``: always the pair (output, indices)."""
    return F.adaptive_max_pool2d(input, output_size, return_indices=True)


# -- examples ---------------------------------------------------------------------------------


def conv_transpose1d_examples() -> list[Example]:
    return [Example((x(2, 3, 5), x(3, 4, 3), x(4)), {"stride": 2, "padding": 1,
                                                    "output_padding": 1}, "stride 2"),
            Example((x(2, 4, 4), x(4, 1, 2), None), {"groups": 2, "dilation": 3,
                                                    "output_padding": 2},
                    "groups, output_padding >= stride"),
            Example((x(3, 5), x(3, 2, 3), x(2)), label="unbatched")]


def conv_transpose2d_examples() -> list[Example]:
    return [Example((x(2, 3, 4, 3), x(3, 2, 3, 3), x(2)), {"stride": (2, 1), "padding": 1,
                                                          "output_padding": (1, 0)},
                    "stride (2, 1)"),
            Example((x(1, 4, 3, 3), x(4, 1, 2, 2), None), {"groups": 2, "stride": 2,
                                                          "dilation": (1, 2)},
                    "groups, dilation")]


def interpolate_examples() -> list[Example]:
    return [Example((x(2, 3, 4),), {"size": 7}, "nearest 1-D, a size"),
            Example((x(2, 2, 3, 4),), {"scale_factor": (1.5, 0.5), "mode": "nearest-exact"},
                    "nearest-exact 2-D, scale factors"),
            Example((x(2, 3, 5),), {"scale_factor": 1.7, "mode": "linear"}, "linear"),
            Example((x(1, 2, 3, 4),), {"size": (5, 3), "mode": "bilinear",
                                       "align_corners": True}, "bilinear, align_corners"),
            Example((x(1, 2, 3, 4),), {"scale_factor": 1.5, "mode": "bilinear",
                                       "recompute_scale_factor": True},
                    "bilinear, recomputed scale"),
            Example((x(1, 1, 2, 3, 2),), {"size": (3, 2, 4), "mode": "trilinear"}, "trilinear")]


def adaptive_max_pool1d_examples() -> list[Example]:
    return [Example((x(2, 3, 7), 3), label="overlapping windows"),
            Example((x(3, 5), (4,)), {"return_indices": True}, "unbatched, indices")]


def adaptive_max_pool2d_examples() -> list[Example]:
    return [Example((x(2, 3, 7, 5), (3, 4)), label="overlapping windows"),
            Example((x(2, 5, 6), (None, 2)), {"return_indices": True},
                    "unbatched, None keeps H, indices")]


def pixel_shuffle_examples() -> list[Example]:
    return [Example((x(2, 8, 2, 3), 2)), Example((x(9, 1, 2), 3), label="unbatched")]


def pixel_unshuffle_examples() -> list[Example]:
    return [Example((x(2, 2, 4, 6), 2)), Example((x(1, 3, 3), 3), label="unbatched")]


RULES: tuple[Rule, ...] = (
    Rule(name="conv_transpose1d", function=ConvTranspose1d,
         stands_for=("torch.nn.functional.conv_transpose1d",),
         twins=("trainer.nn.upsampling.ConvTranspose1d",),
         grads=("input: conv1d(g, W)  (the adjoint relation)",
                "weight: conv1d(g_padᵀ, xᵀ)  (conv's ∂W, g as its input, batch and channels "
                "swapped)",
                "bias: Σ_{n,t} g"),
         saves="x for ∂W and W for ∂x, each only when the other side needs a gradient",
         examples=conv_transpose1d_examples),
    Rule(name="conv_transpose2d", function=ConvTranspose2d,
         stands_for=("torch.nn.functional.conv_transpose2d",),
         twins=("trainer.nn.upsampling.ConvTranspose2d",),
         grads=("input: conv2d(g, W)  (the adjoint relation)",
                "weight: conv2d(g_padᵀ, xᵀ)  (conv's ∂W, g as its input, batch and channels "
                "swapped)",
                "bias: Σ_{n,i,j} g"),
         saves="x for ∂W and W for ∂x, each only when the other side needs a gradient",
         examples=conv_transpose2d_examples),
    Rule(name="interpolate", function=Interpolate,
         stands_for=("torch.nn.functional.interpolate",),
         adapters={"torch.nn.functional.interpolate": interpolate_from_torch},
         twins=("trainer.nn.upsampling.Upsample", "trainer.nn.upsampling.UpsamplingNearest2d",
                "trainer.nn.upsampling.UpsamplingBilinear2d"),
         grads=("input: g ×_d A_dᵀ per spatial dim (nearest: index_add of g at src; linear "
                "modes: a matmul with the (out, in) interpolation matrix)",),
         saves="nothing: src and A come back from the sizes, scales and align_corners",
         examples=interpolate_examples),
    Rule(name="adaptive_max_pool1d", function=AdaptiveMaxPool1d,
         stands_for=("torch.nn.functional.adaptive_max_pool1d",
                     "torch.nn.functional.adaptive_max_pool1d_with_indices",
                     "torch.adaptive_max_pool1d"),
         adapters={"torch.nn.functional.adaptive_max_pool1d_with_indices":
                   adaptive_max_pool1d_with_indices,
                   "torch.adaptive_max_pool1d": adaptive_max_pool1d_with_indices},
         twins=("trainer.nn.upsampling.AdaptiveMaxPool1d",),
         grads=("input: scatter_add of g at each window's winner",),
         saves="the window-local argmax as uint8, not x nor int64 indices",
         examples=adaptive_max_pool1d_examples),
    Rule(name="adaptive_max_pool2d", function=AdaptiveMaxPool2d,
         stands_for=("torch.nn.functional.adaptive_max_pool2d",
                     "torch.nn.functional.adaptive_max_pool2d_with_indices"),
         adapters={"torch.nn.functional.adaptive_max_pool2d_with_indices":
                   adaptive_max_pool2d_with_indices},
         twins=("trainer.nn.upsampling.AdaptiveMaxPool2d",),
         grads=("input: scatter_add of g at each window's winner",),
         saves="the window-local argmax as uint8, not x nor int64 indices",
         examples=adaptive_max_pool2d_examples),
    Rule(name="pixel_shuffle", function=PixelShuffle,
         stands_for=("torch.nn.functional.pixel_shuffle",),
         twins=("trainer.nn.upsampling.PixelShuffle",),
         grads=("input: pixel_unshuffle(g, r)",),
         saves="nothing: a permutation",
         examples=pixel_shuffle_examples),
    Rule(name="pixel_unshuffle", function=PixelUnshuffle,
         stands_for=("torch.nn.functional.pixel_unshuffle",),
         twins=("trainer.nn.upsampling.PixelUnshuffle",),
         grads=("input: pixel_shuffle(g, r)",),
         saves="nothing: a permutation",
         examples=pixel_unshuffle_examples),
)
