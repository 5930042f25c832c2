"""Transposed convolution: the adjoint of convolution, with its gradient written out.

conv_transpose(·, W) is the adjoint of conv(·, W): ⟨conv_transpose(x, W), g⟩ = ⟨x, conv(g, W)⟩
for every g of the output's shape (same stride, padding, dilation, groups). So ∂L/∂x is a
convolution of g with W, and ∂L/∂W is the weight gradient of that convolution with x in the
role of its output gradient: the swapped convolution of :mod:`trainer.functional.conv`, with
g as its input (its first-order CPU shortcuts too, one named call away).
"""

from __future__ import annotations

from torch import Tensor

from ._util import (
    Function,
    check_float,
    check_same_dtype,
    fail,
    ntuple,
    shape_str,
    to_dtype,
)
from .conv import _CONV, _CONV_TRANSPOSE, _Params, _weight_grad
from .conv import _setup_context as conv_setup_context

__all__ = ["conv_transpose1d", "conv_transpose2d"]


def _forward(input: Tensor, weight: Tensor, bias: Tensor | None, p: _Params,
             output_padding: tuple[int, ...]) -> Tensor:
    rank = weight.dim() - 2
    return _CONV_TRANSPOSE[rank](input, weight, bias, p.stride, p.pad_lo, output_padding,
                                 p.groups, p.dilation)


def _setup_context(ctx, inputs, output) -> None:
    """What convolution keeps, for the same reasons: x for ∂W, W for ∂x, each only when the
    other side needs a gradient (output_padding, the fifth input, only shapes the output)."""
    conv_setup_context(ctx, inputs[:4], output)


def _backward(ctx, g: Tensor):
    input, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.has_bias
    p, weight_shape = ctx.params, ctx.weight_shape
    rank = len(weight_shape) - 2
    unbatched = len(ctx.input_shape) == rank + 1
    if unbatched:
        g = g.unsqueeze(0)
    grad_input = grad_weight = grad_bias = None
    if need_x:  # conv(g, W): the adjoint; extra positions (output_padding >= stride) cut
        grad_input = _CONV[rank](g, to_dtype(weight, g.dtype), None, p.stride, p.pad_lo,
                                 p.dilation, p.groups)
        size = ctx.input_shape[-rank:]
        if tuple(grad_input.shape[2:]) != tuple(size):
            grad_input = grad_input[(..., *(slice(0, n) for n in size))]
        if unbatched:
            grad_input = grad_input.squeeze(0)
    if need_w:  # conv's weight gradient, with g as conv's input and x as its output gradient
        x = to_dtype(input, g.dtype)
        x = x.unsqueeze(0) if unbatched else x
        grad_weight, _ = _weight_grad(g, x, weight_shape, p, False)
    if need_b:
        grad_bias = g.sum([0, *range(2, rank + 2)])
    return grad_input, grad_weight, grad_bias, None, None


class ConvTranspose1d(Function):
    r"""y = conv_transpose1d(x, W) + b: the adjoint of y' = conv1d(y', W) in its first argument,
        y[n, o, t] = b[o] + Σ_{c ∈ group(o)} Σ_k W[c, o', k] · x[n, c, i]  over t + p = i·s + k·d

    x: (N, C, L) or (C, L),  W: (C, O/groups, K) (o' = o's index in its group),  s = stride,
    p = padding, d = dilation; L_out = (L-1)·s − 2p + d·(K-1) + output_padding + 1. Each input
    position scatters W's taps into the output, s apart; output_padding lengthens the far end.
    Backward, with g = ∂L/∂y of shape (N, O, L_out):
        ∂L/∂x = conv1d(g, W, stride=s, padding=p, dilation=d, groups)   -> (N, C, L)
                (the adjoint relation; cut to L where output_padding >= s added positions)
        ∂L/∂W = conv's ∂W with g as its input and x as its output gradient: conv1d(g_padᵀ, xᵀ,
                stride=d, dilation=s) per group, ᵀ swapping batch and channels     (first
                order on CPU: the same sum by trainer.functional._fast.conv)
        ∂L/∂b = Σ_{n,t} g
    Saves: x (for ∂L/∂W) and W (for ∂L/∂x), each only when the other side needs a gradient.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None, params: _Params,
                output_padding: tuple[int, ...]) -> Tensor:
        return _forward(input, weight, bias, params, output_padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _backward(ctx, g)


class ConvTranspose2d(Function):
    r"""y = conv_transpose2d(x, W) + b: the adjoint of y' = conv2d(y', W) in its first argument,
        y[n,o,i,j] = b[o] + Σ_{c∈group(o)} Σ_{p,q} W[c,o',p,q] · x[n,c,u,v]
                     over i + p₀ = u·s₀ + p·d₀,  j + p₁ = v·s₁ + q·d₁

    x: (N, C, H, W) or (C, H, W),  W: (C, O/groups, KH, KW),  s = stride, p = padding,
    d = dilation; H_out = (H-1)·s₀ − 2p₀ + d₀·(KH-1) + output_padding₀ + 1, W_out likewise.
    Backward, with g = ∂L/∂y of shape (N, O, H_out, W_out):
        ∂L/∂x = conv2d(g, W, stride=s, padding=p, dilation=d, groups)   -> (N, C, H, W)
                (the adjoint relation; cut to H, W where output_padding >= s added positions)
        ∂L/∂W = conv's ∂W with g as its input and x as its output gradient: conv2d(g_padᵀ, xᵀ,
                stride=d, dilation=s) per group, ᵀ swapping batch and channels     (first
                order on CPU: the same sum by trainer.functional._fast.conv)
        ∂L/∂b = Σ_{n,i,j} g
    Saves: x (for ∂L/∂W) and W (for ∂L/∂x), each only when the other side needs a gradient.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Tensor | None, params: _Params,
                output_padding: tuple[int, ...]) -> Tensor:
        return _forward(input, weight, bias, params, output_padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _backward(ctx, g)


def _params(op: str, rank: int, input: Tensor, weight: Tensor, bias: Tensor | None, stride,
            padding, output_padding, groups, dilation) -> tuple[_Params, tuple[int, ...]]:
    """Validate the arguments where torch would refuse them; expand them to rank-tuples."""
    if input.dim() not in (rank + 1, rank + 2):
        raise fail(op, f"{rank + 1}-D (unbatched) or {rank + 2}-D (batched) input",
                   f"input {shape_str(input)}")
    if weight.dim() != rank + 2:
        raise fail(op, f"{rank + 2}-D weight (in, out/groups, *kernel)",
                   f"weight {shape_str(weight)}")
    if not isinstance(groups, int) or groups < 1:
        raise fail(op, "groups a positive int", f"groups={groups}")
    if isinstance(padding, str):
        raise fail(op, "padding as an int or a tuple (no 'same' or 'valid' for a transposed "
                   "convolution)", f"padding={padding!r}")
    stride = ntuple(op, "stride", stride, rank)
    padding = ntuple(op, "padding", padding, rank)
    output_padding = ntuple(op, "output_padding", output_padding, rank)
    dilation = ntuple(op, "dilation", dilation, rank)
    if any(s < 1 for s in stride):
        raise fail(op, "positive stride", f"stride={stride}")
    if any(d < 1 for d in dilation):
        raise fail(op, "positive dilation", f"dilation={dilation}")
    if any(pad < 0 for pad in padding):
        raise fail(op, "non-negative padding", f"padding={padding}")
    if any(o < 0 or (o >= s and o >= d) for o, s, d in zip(output_padding, stride, dilation)):
        raise fail(op, "output_padding >= 0 and smaller than stride or dilation",
                   f"output_padding={output_padding} with stride={stride}, "
                   f"dilation={dilation}")
    kernel = weight.shape[2:]
    if 0 in kernel:
        raise fail(op, "a kernel of size >= 1 in every spatial dim", f"weight {shape_str(weight)}")
    in_channels, out_per_group = weight.shape[:2]
    if in_channels < groups or in_channels % groups:
        raise fail(op, f"weight's in channels divisible by groups={groups} (and at least it)",
                   f"weight {shape_str(weight)}")
    channels = input.shape[-rank - 1]
    if channels != in_channels:
        raise fail(op, f"input with {in_channels} channels for weight {shape_str(weight)}",
                   f"input {shape_str(input)} with {channels} channels")
    out_channels = out_per_group * groups
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_channels):
        raise fail(op, f"bias of shape ({out_channels},) for weight {shape_str(weight)} and "
                   f"groups={groups}", f"bias {shape_str(bias)}")
    spatial = input.shape[-rank:]
    if 0 in spatial and 0 not in input.shape[:-rank]:
        raise fail(op, "non-empty spatial dims (only the batch or channels may be empty)",
                   f"input {shape_str(input)}")
    out = tuple((n - 1) * s - 2 * pad + d * (k - 1) + o + 1 for n, s, pad, d, k, o in
                zip(spatial, stride, padding, dilation, kernel, output_padding))
    if any(size < 1 for size in out):
        raise fail(op, "an output of size >= 1 in every spatial dim",
                   f"output size {out} for input {shape_str(input)}, weight "
                   f"{shape_str(weight)} and padding={padding}")
    check_float(op, "input", input)
    check_same_dtype(op, input, weight=weight, bias=bias)
    return _Params(stride, padding, padding, dilation, groups), output_padding


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups=1, dilation=1) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.conv_transpose1d`."""
    params, output_padding = _params("conv_transpose1d", 1, input, weight, bias, stride,
                                     padding, output_padding, groups, dilation)
    return ConvTranspose1d.apply(input, weight, bias, params, output_padding)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups=1, dilation=1) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.conv_transpose2d`."""
    params, output_padding = _params("conv_transpose2d", 2, input, weight, bias, stride,
                                     padding, output_padding, groups, dilation)
    return ConvTranspose2d.apply(input, weight, bias, params, output_padding)
