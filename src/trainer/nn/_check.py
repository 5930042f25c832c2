"""Input checks that name the layer, so a shape mistake deep in a model is easy to place."""

from __future__ import annotations

import torch

from trainer.functional._util import ShapeError, shape_str


def check_input(module: torch.nn.Module, input: torch.Tensor, channel_dim_by_rank: dict[int, int],
                channels: int, layout: str) -> None:
    """Raise ShapeError naming ``module`` when ``input``'s rank or channel count is wrong.

    ``channel_dim_by_rank`` maps each accepted number of dims to where the channels sit.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{module!r}: expected a Tensor input, got {type(input).__name__}")
    dim = channel_dim_by_rank.get(input.dim())
    if dim is None or input.shape[dim] != channels:
        raise ShapeError(f"{module!r}: expected input of shape {layout} with C = {channels}, "
                         f"got {shape_str(input)}")
