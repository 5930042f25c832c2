"""Embedding's first-order backward, accumulated in place."""

from __future__ import annotations

from torch import Tensor


def embedding_backward(rows: Tensor, index: Tensor, num_weights: int,
                       padding_idx: int) -> Tensor:
    """Embedding: ∂L/∂W = an index_add of g's ``rows`` at ``index`` into fresh zeros, in
    place, with the padding row zeroed in place (only idx == padding_idx added into it)."""
    grad_weight = rows.new_zeros(num_weights, rows.shape[-1]).index_add_(0, index, rows)
    if padding_idx >= 0:
        grad_weight[padding_idx].zero_()
    return grad_weight
