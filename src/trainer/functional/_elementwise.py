"""What the elementwise activations with an in-place form share (:mod:`.activation_piecewise`
and :mod:`.activation_smooth`): their vmap rule, and the skeleton of those whose backward
needs x itself, which run in place only where autograd does not record through x.

Plain Python around ``Function``: none of it builds autograd graph of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import LOW_PRECISION, Function


def opmath(t: Tensor) -> Tensor:
    """``t`` in the dtype torch's kernels compute in: float32 for half and bfloat16."""
    return t.float() if t.dtype in LOW_PRECISION else t


def in_place_if_free(input: Tensor, inplace: bool) -> bool:
    """Whether an activation that needs x in its backward may overwrite x: only when asked
    and autograd does not record through x (then nothing will need x)."""
    return inplace and not (torch.is_grad_enabled() and input.requires_grad)


class Elementwise(Function):
    """An elementwise Function of ``(input, *options)``, its last option ``inplace``.

    Under vmap the batched dim is one more dim of the physical tensor, so the Function
    applied to it is its own vmap rule. (The generated rule would not keep an in-place
    input's identity, which ``mark_dirty`` needs.)
    """

    @classmethod
    def vmap(cls, info, in_dims, input, *options):
        return cls.apply(input, *options), in_dims[0]


class KeepsX(Elementwise):
    """An elementwise ``forward(input, inplace)`` whose derivative needs x itself: it saves x
    when x needs a gradient. Its functional passes ``inplace`` through
    :func:`in_place_if_free`, so an in-place call never overwrites an x that backward needs
    (torch would keep a full copy of x to do the same)."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)
