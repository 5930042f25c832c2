"""Dropout's first-order backward, in the mask's buffer."""

from __future__ import annotations

from torch import Tensor


def dropout_backward(g: Tensor, keep: Tensor, p: float) -> Tensor:
    """Dropout: g · m / (1 − p), in the fresh buffer of the 0/1 mask ``keep``."""
    return keep.mul_(g).mul_(1.0 / (1.0 - p))
