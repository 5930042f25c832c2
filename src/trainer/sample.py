"""Text from a trained language model: ``generate`` continues token ids one sampled token at a
time, as nanoGPT's ``GPT.generate`` does.

(The ``python -m trainer.sample`` command line, which loads a checkpoint and decodes the ids
to text, waits for the language-model recipe and its checkpoints.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainer.functional._util import fail, shape_str


def generate(model: torch.nn.Module, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """``idx`` (B, T) followed by ``max_new_tokens`` sampled ids: (B, T + max_new_tokens).

    Each step feeds the last ``model.block_size`` ids (the context is cropped to what the
    model was built for), takes the logits of the last position, divides them by
    ``temperature`` (lower: surer, higher: more varied), keeps only the ``top_k`` largest
    (others get probability 0) and draws the next id with :func:`torch.multinomial` from
    ``generator`` (the global RNG if None): the same seeded generator gives the same ids.
    The model runs in eval mode (no dropout) under ``torch.no_grad``; its mode is restored.
    """
    op = "generate"
    if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.shape[1] == 0 \
            or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        got = f"idx {shape_str(idx)} of dtype {idx.dtype}" if isinstance(idx, Tensor) \
            else type(idx).__name__
        raise fail(op, "token ids idx of shape (B, T), T >= 1, an integer tensor", got)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise fail(op, "max_new_tokens a whole number >= 0", f"{max_new_tokens!r}")
    if not temperature > 0:
        raise fail(op, "temperature > 0", f"temperature={temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise fail(op, "top_k None or a whole number >= 1", f"top_k={top_k!r}")
    block_size = model.block_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = model(idx[:, -block_size:])[:, -1, :] / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)
                idx = torch.cat((idx, next_id.to(idx.dtype)), dim=1)
    finally:
        model.train(was_training)
    return idx


__all__ = ["generate"]
