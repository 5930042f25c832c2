"""Distance losses with their gradients written out: L1, smooth L1 and Huber of x − y, and the
cosine embedding loss of two batches of vectors; with what the losses of
:mod:`.loss_more` share (the reduction of a gradient, the shape checks).

Forward is torch's own kernel, so values are torch's bit for bit; under autocast the inputs
are computed in float32, as torch's loss kernels are. Each ``backward`` reads as the formula
in its docstring, from differentiable torch ops, so it serves double backward too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import Function, autocast_fp32, check_float, fail, shape_str, sum_to_shape, to_dtype
from .arithmetic import div, mul, sub
from ._loss_checks import _warn, reduction_of
from .reduce import mean as mean_of
from .reduce import sum as sum_of
from .unary import abs as abs_of

__all__ = ["cosine_embedding_loss", "huber_loss", "l1_loss", "smooth_l1_loss"]

ENUM = {"none": 0, "mean": 1, "sum": 2}  # torch's reduction codes, as its kernels take them
COSINE_EPS = 1e-12  # aten's EPSILON in cosine_embedding_loss


def per_element(g: Tensor, reduction: str, count: int) -> Tensor:
    """∂L/∂loss_i from g = ∂L/∂loss: g itself ('none'; for 'sum' a 0-d g, which broadcasts),
    g/count for an average over count elements ('mean', or kl_div's 'batchmean')."""
    return g / count if reduction in ("mean", "batchmean") else g


def check_pair(op: str, input: Tensor, target: Tensor) -> None:
    """x and y broadcastable, as torch's pointwise losses take them (with its warning when
    their shapes differ), and floating."""
    if target.shape != input.shape:
        _warn(f"Using a target size ({target.size()}) that is different to the input size "
              f"({input.size()}). This will likely lead to incorrect results due to "
              "broadcasting. Please ensure they have the same size.", stacklevel=3)
        try:
            torch.broadcast_shapes(input.shape, target.shape)
        except RuntimeError:
            raise fail(op, f"a target broadcastable with input {shape_str(input)}",
                       f"target {shape_str(target)}") from None
    check_float(op, "input", input)
    check_float(op, "target", target)


def check_elementwise_weight(op: str, input: Tensor, weight: Tensor) -> None:
    if weight.shape != input.shape:  # a ValueError, as torch's
        raise fail(op, f"weight of the input's shape {shape_str(input)}",
                   f"weight {shape_str(weight)}")


class L1Loss(Function):
    r"""loss_i = |x_i − y_i|   (x and y broadcast), reduced: 'none' keeps loss_i, 'sum' sums,
    'mean' divides the sum by n, their count.

    Backward, with g = ∂L/∂loss (g_i, g, or g/n by reduction) and s = sign(x − y):
        ∂L/∂x = Σ_broadcast g·s          ∂L/∂y = −Σ_broadcast g·s
    (s = 0 where x = y, and for a NaN difference, as torch's sign.) It is linear in g with s
    a constant step, so double backward gives ∂/∂g and a zero second derivative.

    Saves: s as int8, 1 byte per element, instead of the difference torch keeps (4 bytes in
    float32, 8 in float64): the derivative takes only the values −1, 0 and 1, which one byte
    holds and which multiply g exactly in any dtype.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, reduction: str) -> Tensor:
        input, target = autocast_fp32(input.device.type, input, target)
        return torch._C._nn.l1_loss(*torch.broadcast_tensors(input, target), ENUM[reduction])

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, reduction = inputs
        sign = None
        if any(ctx.needs_input_grad[:2]):
            sign = torch.sign(input - target).to(torch.int8)
        ctx.save_for_backward(sign)
        ctx.input_shape, ctx.target_shape, ctx.reduction = input.shape, target.shape, reduction

    @staticmethod
    def backward(ctx, g: Tensor):
        (s,) = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        grad = per_element(g, ctx.reduction, s.numel()) * s  # ∂L/∂x before un-broadcasting
        grad_x = sum_to_shape(grad, ctx.input_shape) if need_x else None
        grad_y = -sum_to_shape(grad, ctx.target_shape) if need_y else None
        return grad_x, grad_y, None


class Huber(Function):
    r"""With d = x − y (broadcast) and δ = delta:
        huber_loss:      loss_i = ½d²  where |d| ≤ δ,   δ·(|d| − ½δ) elsewhere
        smooth_l1_loss:  loss_i = huber_β(d) / β      (β = beta > 0; beta = 0 is l1_loss)
    reduced: 'none' keeps loss_i, 'sum' sums, 'mean' divides the sum by n, their count.

    Backward, with g = ∂L/∂loss (g_i, g, or g/n), c = clamp(d, −δ, δ) (the derivative of
    huber in d: d inside, ±δ outside) and k = 1 (huber) or 1/β (smooth L1):
        ∂L/∂x = Σ_broadcast g·k·c          ∂L/∂y = −Σ_broadcast g·k·c
    Their derivative in d is g·k·[|d| ≤ δ] (clamp's own, torch's convention at |d| = δ).

    Saves: d only, not x and y (torch keeps both). As in :class:`~.loss.MseLoss`, d is a hidden
    second output, so that autograd knows d depends on x and y: the first gradients are made
    from d, and double backward reaches x and y through d's own gradient, which this backward
    also takes (∂d/∂x = I, ∂d/∂y = −I).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, reduction: str, delta: float,
                smooth_l1: bool) -> tuple[Tensor, Tensor]:
        input, target = autocast_fp32(input.device.type, input, target)
        input, target = torch.broadcast_tensors(input, target)
        kernel = torch._C._nn.smooth_l1_loss if smooth_l1 else torch._C._nn.huber_loss
        return kernel(input, target, ENUM[reduction], delta), input - target

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, reduction, delta, smooth_l1 = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])
        ctx.input_shape, ctx.target_shape = input.shape, target.shape
        ctx.reduction, ctx.delta = reduction, delta
        ctx.k = 1.0 / delta if smooth_l1 else 1.0

    @staticmethod
    def backward(ctx, g: Tensor | None, g_diff: Tensor | None):
        (d,) = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        grad_d = g_diff  # ∂L/∂d, reaching x and y
        if g is not None:
            d = to_dtype(d, g.dtype)
            c = torch.clamp(d, -ctx.delta, ctx.delta)
            grad = per_element(g, ctx.reduction, d.numel()) * ctx.k * c
            grad_d = grad if grad_d is None else grad + grad_d
        if grad_d is None:
            return None, None, None, None, None
        grad_x = sum_to_shape(grad_d, ctx.input_shape) if need_x else None
        grad_y = -sum_to_shape(grad_d, ctx.target_shape) if need_y else None
        return grad_x, grad_y, None, None, None


class CosineEmbeddingLoss(Function):
    r"""With each row's c = a·b / √(n_a·n_b),  n_a = |a|² + ε,  n_b = |b|² + ε  (ε = 1e-12,
    torch's; a and b broadcast, rows along dim 0 unless they are single vectors):
        loss = 1 − c                 where t = 1
               max(0, c − margin)    where t = −1
               0                     for any other t
    reduced: 'none' keeps a loss per row, 'sum' sums, 'mean' divides the sum by N rows.

    Backward, with g = ∂L/∂loss (g_i, g, or g/N), r = √(n_a·n_b) and
    k = −g where t = 1, g where t = −1 and c ≥ margin (torch's clamp passes at c = margin),
    0 elsewhere; from ∂c/∂a = b/r − (a·b)·n_b·a/r³ = b/r − c·a/n_a:
        ∂L/∂a = Σ_broadcast k·(b/r − c·a/n_a)
        ∂L/∂b = Σ_broadcast k·(a/r − c·b/n_b)
    c, n_a and n_b are recomputed from a and b with differentiable ops, so double backward
    is exact too.

    Saves: a, b and t, what the gradients are made of; not the per-row c, n_a, n_b, three
    dot products a row away (torch's composite keeps them, and a·b, besides a and b).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input1: Tensor, input2: Tensor, target: Tensor, margin: float,
                reduction: str) -> Tensor:
        input1, input2 = autocast_fp32(input1.device.type, input1, input2)
        return torch.cosine_embedding_loss(input1, input2, target, margin, ENUM[reduction])

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, target, margin, reduction = inputs
        ctx.save_for_backward(a, b, target)
        ctx.margin, ctx.reduction = margin, reduction
        ctx.rows = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1], target.shape).numel()

    @staticmethod
    def backward(ctx, g: Tensor):
        a, b, t = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        a, b = to_dtype(a, g.dtype), to_dtype(b, g.dtype)
        n_a = (a * a).sum(-1, keepdim=True) + COSINE_EPS
        n_b = (b * b).sum(-1, keepdim=True) + COSINE_EPS
        r = torch.sqrt(n_a * n_b)
        c = (a * b).sum(-1, keepdim=True) / r
        g = per_element(g, ctx.reduction, ctx.rows).unsqueeze(-1)
        t = t.unsqueeze(-1)
        k = torch.where(t == 1, -g, torch.where((t == -1) & (c >= ctx.margin), g, 0.0))
        grad_a = sum_to_shape(k * (b / r - c * a / n_a), a.shape) if need_a else None
        grad_b = sum_to_shape(k * (a / r - c * b / n_b), b.shape) if need_b else None
        return grad_a, grad_b, None, None, None


# -- the functionals ----------------------------------------------------------------------------


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
            reduce: bool | None = None, reduction: str = "mean",
            weight: Tensor | None = None) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.l1_loss`. With a ``weight`` (of the input's
    shape) it is torch's composite, Σ w·|x − y| (over Σ w for 'mean'), built of the pointwise
    and reduction rules as torch builds it of its ops."""
    op = "l1_loss"
    check_pair(op, input, target)
    reduction = reduction_of(op, size_average, reduce, reduction)
    if weight is None:
        return L1Loss.apply(input, target, reduction)
    check_elementwise_weight(op, input, weight)
    weighted = mul(abs_of(sub(input, target)), weight)
    if reduction == "none":
        return weighted
    return sum_of(weighted) if reduction == "sum" else div(sum_of(weighted), sum_of(weight))


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
                   reduce: bool | None = None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.smooth_l1_loss` (beta = 0: l1_loss, as
    torch)."""
    op = "smooth_l1_loss"
    check_pair(op, input, target)
    reduction = reduction_of(op, size_average, reduce, reduction)
    if beta < 0:
        raise fail(op, "beta >= 0", f"beta={beta}")
    if beta == 0:
        return L1Loss.apply(input, target, reduction)
    loss, _ = Huber.apply(input, target, reduction, float(beta), True)
    return loss


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.huber_loss`. With a ``weight`` (of the
    input's shape) it is torch's composite: the loss per element times w, summed or averaged
    over the elements (not over Σ w, unlike l1_loss's)."""
    op = "huber_loss"
    check_pair(op, input, target)
    reduction = reduction_of(op, None, None, reduction)
    if delta <= 0:
        raise fail(op, "delta > 0", f"delta={delta}")
    if weight is None:
        loss, _ = Huber.apply(input, target, reduction, float(delta), False)
        return loss
    check_elementwise_weight(op, input, weight)
    loss, _ = Huber.apply(input, target, "none", float(delta), False)
    weighted = mul(loss, weight)
    if reduction == "none":
        return weighted
    return sum_of(weighted) if reduction == "sum" else mean_of(weighted)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                          size_average: bool | None = None, reduce: bool | None = None,
                          reduction: str = "mean") -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.cosine_embedding_loss`."""
    op = "cosine_embedding_loss"
    reduction = reduction_of(op, size_average, reduce, reduction)
    dims = target.dim() + 1  # (N) targets take (N, D) inputs; a 0-d target, (D) inputs
    if target.dim() > 1 or input1.dim() != dims or input2.dim() != dims:
        raise fail(op, "inputs of shape (N, D) with a target of shape (N), or (D) with a 0-d "
                   "target", f"input1 {shape_str(input1)}, input2 {shape_str(input2)}, "
                   f"target {shape_str(target)}")
    try:
        rows = torch.broadcast_shapes(input1.shape, input2.shape)[:-1]
        torch.broadcast_shapes(rows, target.shape)
    except RuntimeError:
        raise fail(op, "input1 and input2 broadcastable, with a target of one entry per row",
                   f"input1 {shape_str(input1)}, input2 {shape_str(input2)}, "
                   f"target {shape_str(target)}") from None
    check_float(op, "input1", input1)
    check_float(op, "input2", input2)
    return CosineEmbeddingLoss.apply(input1, input2, target, float(margin), reduction)
