"""The affine map, with its gradient written out."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._util import Function, check_same_dtype, fail, shape_str, sum_to_shape, to_dtype


class Linear(Function):
    r"""y = x Wᵀ + b,   x: (*, in),  W: (out, in),  b: (out,)

    Backward, with g = ∂L/∂y of shape (*, out), and rows = all leading dims flattened:
        ∂L/∂x = g W                  (*, out) @ (out, in) -> (*, in)
        ∂L/∂W = gᵀ x                 Σ_rows g[r]ᵀ x[r]    -> (out, in)
        ∂L/∂b = Σ_rows g             -> (out,)
    A 1-D weight (in,) gives y = x·w of shape (*), as in torch:
        ∂L/∂x = g w,   ∂L/∂w = Σ_rows g x.

    Saves: x (for ∂L/∂W) and W (for ∂L/∂x), each only when the other side needs a gradient.
    The bias is not needed by any gradient, so it is not saved.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return torch.nn.functional.linear(input, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias = inputs
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(input if need_w else None, weight if need_x else None)
        ctx.weight_shape = weight.shape
        ctx.bias_shape = None if bias is None else bias.shape

    @staticmethod
    def backward(ctx, g: Tensor):
        input, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        if (g.dim() == 2 and len(ctx.weight_shape) == 2
                and (ctx.bias_shape is None or len(ctx.bias_shape) == 1)
                and (input is None or input.dtype == g.dtype)
                and (weight is None or weight.dtype == g.dtype)):
            # (rows, in) @ (out, in)ᵀ in one dtype, the common case: the products as they are
            return (g.mm(weight) if need_x else None,
                    g.t().mm(input) if need_w else None,
                    g.sum(0) if need_b and ctx.bias_shape is not None else None)
        grad_input = grad_weight = grad_bias = None
        if len(ctx.weight_shape) == 1:
            g = g.unsqueeze(-1)  # a 1-D weight is a (1, in) weight whose out dim was dropped
        rows = math.prod(g.shape[:-1])
        rows_g = g.reshape(rows, g.shape[-1])  # not reshape(-1, ...): ambiguous when empty
        if need_x:
            w = to_dtype(weight, g.dtype)
            grad_input = g.matmul(w.unsqueeze(0) if w.dim() == 1 else w)
        if need_w:
            rows_x = to_dtype(input, g.dtype).reshape(rows, input.shape[-1])
            grad_weight = rows_g.t().matmul(rows_x).reshape(ctx.weight_shape)
        if need_b and ctx.bias_shape is not None:
            grad_bias = sum_to_shape(rows_g.sum(0), ctx.bias_shape)
        return grad_input, grad_weight, grad_bias


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.linear`."""
    if weight.dim() not in (1, 2):
        raise fail("linear", "weight of shape (out, in) or (in,)", f"weight {shape_str(weight)}")
    in_features = weight.shape[-1]
    if input.dim() == 0 or input.shape[-1] != in_features:
        raise fail(
            "linear",
            f"input of shape (*, {in_features}) for weight {shape_str(weight)}",
            f"input {shape_str(input)}",
        )
    out_features = weight.shape[0] if weight.dim() == 2 else None
    if bias is not None and out_features is not None and bias.numel() != out_features:
        raise fail("linear", f"bias of shape ({out_features},)", f"bias {shape_str(bias)}")
    if weight.dim() == 1 and bias is not None and (bias.dim() != 0 or input.dim() == 2):
        raise fail("linear", "a 1-D weight with no bias, or with a 0-d bias and an input of 1 "
                   "or 3+ dims (what torch's kernel takes)",
                   f"bias {shape_str(bias)} and input {shape_str(input)}")
    if input.dtype == torch.bool:
        raise fail("linear", "a numeric input", "input of dtype torch.bool")
    check_same_dtype("linear", input, weight=weight, bias=bias)
    return Linear.apply(input, weight, bias)
