"""More losses, with their gradients written out: here the losses of probabilities (binary
cross-entropy, on probabilities and on logits, and the KL divergence); the distance losses
(L1, smooth L1, Huber, cosine embedding) live in :mod:`.loss_distance`, listed here too.

Forward is torch's own kernel, so values are torch's bit for bit; under autocast the inputs
are computed in float32, as torch's loss kernels are. Each ``backward`` reads as the formula
in its docstring, from differentiable torch ops, so it serves double backward too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import Function, autocast_fp32, check_float, fail, shape_str, sum_to_shape, to_dtype
from ._loss_checks import _warn, reduction_of
from .loss_distance import (
    ENUM,
    cosine_embedding_loss,
    huber_loss,
    l1_loss,
    per_element,
    smooth_l1_loss,
)

__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "cosine_embedding_loss",
           "huber_loss", "kl_div", "l1_loss", "smooth_l1_loss"]

BCE_EPS = 1e-12  # aten's EPSILON in binary_cross_entropy_backward


class BinaryCrossEntropy(Function):
    r"""loss_i = −w_i·(y_i·log x_i + (1 − y_i)·log(1 − x_i)),  each log clamped at −100 as
    torch's (x: probabilities in [0, 1]; w broadcast to x's shape, 1 if absent), reduced:
    'none' keeps loss_i, 'sum' sums, 'mean' divides the sum by n, their count.

    Backward, with g = ∂L/∂loss (g_i, g, or g/n by reduction); from
    ∂/∂x of −(y log x + (1 − y) log(1 − x)) = −y/x + (1 − y)/(1 − x) = (x − y)/(x(1 − x)):
        ∂L/∂x = g·w·(x − y) / max(x(1 − x), ε)     (ε = 1e-12, torch's: finite at x = 0, 1)
        ∂L/∂y = −g·w·logit(x) = g·w·(log(1 − x) − log x)     (±∞ at x = 0 and 1, as torch's)
    Built from differentiable ops of the saved x and y, so double backward is exact too
    (away from x = 0 and 1, where the clamps hold). w gets no gradient, as in torch.

    Saves: x and w, and y only for ∂L/∂x (x − y), as torch keeps them: x enters both
    gradients through a quotient and a logit that no smaller tensor gives back.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
        input, target, weight = autocast_fp32(input.device.type, input, target, weight)
        if weight is not None:
            weight = weight.expand(target.shape)  # as torch's F.binary_cross_entropy
        return torch._C._nn.binary_cross_entropy(input, target, weight, ENUM[reduction])

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction = inputs
        need_x = ctx.needs_input_grad[0]
        ctx.save_for_backward(input, target if need_x else None, weight)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y, w = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        x, y, w = to_dtype(x, g.dtype), to_dtype(y, g.dtype), to_dtype(w, g.dtype)
        g = per_element(g, ctx.reduction, x.numel())
        if w is not None:
            g = g * w
        grad_x = g * (x - y) / torch.clamp_min(x * (1 - x), BCE_EPS) if need_x else None
        grad_y = -g * torch.logit(x) if need_y else None
        return grad_x, grad_y, None, None


class BinaryCrossEntropyWithLogits(Function):
    r"""With σ the sigmoid, p = pos_weight and w = weight (each broadcast to x's shape, 1 if
    absent) and l = 1 + (p − 1)·y:
        loss_i = −w·(p·y·log σ(x) + (1 − y)·log(1 − σ(x))) = w·((1 − y)·x + l·softplus(−x))
    as log σ(x) = −softplus(−x) and log(1 − σ(x)) = −x − softplus(−x): no exponential of a
    large x overflows. Reduced: 'none', 'sum', or 'mean' (the sum over n, their count).

    Backward, with g = ∂L/∂loss (g_i, g, or g/n); softplus(−x)′ = −σ(−x) = σ(x) − 1, so
    ∂loss/∂x = w·((1 − y) + l·(σ(x) − 1)) = w·(l·σ(x) − p·y):
        ∂L/∂x = g·w·(l·σ(x) − p·y)                (= g·w·(σ(x) − y) without pos_weight)
        ∂L/∂y = g·w·((p − 1)·softplus(−x) − x)    (= −g·w·x without pos_weight)
    Built from differentiable ops of the saved x and y, so double backward is exact too.
    w and p get no gradient, as in torch.

    Saves: x, w and p, and y only for ∂L/∂x, as torch keeps them: σ(x) and softplus(−x) are
    functions of x that no smaller tensor gives back.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, weight: Tensor | None,
                pos_weight: Tensor | None, reduction: str) -> Tensor:
        input, target, weight, pos_weight = autocast_fp32(
            input.device.type, input, target, weight, pos_weight)
        return torch.binary_cross_entropy_with_logits(input, target, weight, pos_weight,
                                                      ENUM[reduction])

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, pos_weight, reduction = inputs
        need_x = ctx.needs_input_grad[0]
        ctx.save_for_backward(input, target if need_x else None, weight, pos_weight)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y, w, p = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        x, y, w, p = (to_dtype(t, g.dtype) for t in (x, y, w, p))
        g = per_element(g, ctx.reduction, x.numel())
        if w is not None:
            g = g * w
        grad_x = grad_y = None
        if need_x:
            s = torch.sigmoid(x)
            slope = s - y if p is None else (1 + (p - 1) * y) * s - p * y
            grad_x = sum_to_shape(g * slope, x.shape)
        if need_y:
            slope = -x if p is None else (p - 1) * torch.nn.functional.softplus(-x) - x
            grad_y = sum_to_shape(g * slope, x.shape)
        return grad_x, grad_y, None, None, None


class KLDiv(Function):
    r"""x: log-probabilities; y: probabilities (log_target=False) or their logs (True):
        loss_i = y·(log y − x)     (0 where y = 0, as xlogy)     log_target=False
        loss_i = e^y·(y − x)                                     log_target=True
    x and y broadcast; reduced: 'none' keeps loss_i, 'sum' sums, 'mean' divides the sum by
    the count n, 'batchmean' by N = x.size(0) (the KL divergence per sample).

    Backward, with g = ∂L/∂loss (g_i, g, g/n, or g/N by reduction):
        ∂L/∂x = −Σ_broadcast g·y                  (log_target: −Σ_broadcast g·e^y)
        ∂L/∂y = Σ_broadcast g·(log y + 1 − x)      (log_target: Σ_broadcast g·e^y·(y − x + 1))
    (∂/∂y of y log y is log y + 1: −∞ at y = 0, where torch's xlogy gives NaN.) Built from
    differentiable ops of the saved x and y, so double backward is exact too.

    Saves: y, which ∂L/∂x needs; x only when ∂L/∂y is needed (∂L/∂x does not involve x).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, target: Tensor, reduction: str, log_target: bool) -> Tensor:
        input, target = autocast_fp32(input.device.type, input, target)
        if reduction != "batchmean":
            return torch.kl_div(input, target, ENUM[reduction], log_target=log_target)
        total = torch.kl_div(input, target, ENUM["sum"], log_target=log_target)
        return total / input.size(0) if input.dim() else total  # as torch's F.kl_div

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, reduction, log_target = inputs
        ctx.save_for_backward(input if ctx.needs_input_grad[1] else None, target)
        ctx.input_shape, ctx.target_shape = input.shape, target.shape
        ctx.reduction, ctx.log_target = reduction, log_target
        ctx.shape = torch.broadcast_shapes(input.shape, target.shape)
        ctx.count = (input.shape[0] if input.dim() else 1) if reduction == "batchmean" \
            else ctx.shape.numel()

    @staticmethod
    def backward(ctx, g: Tensor):
        x, y = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        x, y = to_dtype(x, g.dtype), to_dtype(y, g.dtype)
        g = per_element(g, ctx.reduction, ctx.count).expand(ctx.shape)  # g_i for every i
        p = torch.exp(y) if ctx.log_target else y  # the target's probability
        grad_x = grad_y = None
        if need_x:
            grad_x = sum_to_shape(-g * p, ctx.input_shape)
        if need_y:
            slope = p * (y - x + 1) if ctx.log_target else torch.log(y) + 1 - x
            grad_y = sum_to_shape(g * slope, ctx.target_shape)
        return grad_x, grad_y, None, None


# -- the functionals ----------------------------------------------------------------------------


def _no_grad_for(op: str, **weights: Tensor | None) -> None:
    """torch refuses a weight that requires grad here (it has no gradient for it): so do we."""
    for name, w in weights.items():
        if w is not None and w.requires_grad and torch.is_grad_enabled():
            raise fail(op, f"a {name} that does not require grad (torch's {op} has no "
                       f"gradient for it)", f"{name}.requires_grad=True")


def _check_same_shape(op: str, input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:  # a ValueError, as torch's
        raise fail(op, f"target of the input's shape {shape_str(input)}",
                   f"target {shape_str(target)}")


def _check_broadcasts_to(op: str, name: str, t: Tensor | None, input: Tensor) -> None:
    if t is None:
        return
    try:
        fits = torch.broadcast_shapes(t.shape, input.shape) == input.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise fail(op, f"{name} broadcastable to the input's shape {shape_str(input)}",
                   f"{name} {shape_str(t)}")


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.binary_cross_entropy`."""
    op = "binary_cross_entropy"
    reduction = reduction_of(op, size_average, reduce, reduction)
    _check_same_shape(op, input, target)
    _check_broadcasts_to(op, "weight", weight, input)
    check_float(op, "input", input)
    _no_grad_for(op, weight=weight)
    return BinaryCrossEntropy.apply(input, target, weight, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None,
                                     size_average: bool | None = None,
                                     reduce: bool | None = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.binary_cross_entropy_with_logits`."""
    op = "binary_cross_entropy_with_logits"
    reduction = reduction_of(op, size_average, reduce, reduction)
    _check_same_shape(op, input, target)
    _check_broadcasts_to(op, "weight", weight, input)
    _check_broadcasts_to(op, "pos_weight", pos_weight, input)
    check_float(op, "input", input)
    _no_grad_for(op, weight=weight, pos_weight=pos_weight)
    return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, reduction)


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None,
           reduce: bool | None = None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.kl_div` ('batchmean' too)."""
    op = "kl_div"
    if size_average is not None or reduce is not None or reduction != "batchmean":
        reduction = reduction_of(op, size_average, reduce, reduction)
        if reduction == "mean" and size_average is None and reduce is None:
            _warn("reduction: 'mean' divides the total loss by both the batch size and the "
                  "support size.'batchmean' divides only by the batch size, and aligns with "
                  "the KL div math definition.'mean' will be changed to behave the same as "
                  "'batchmean' in the next major release.", stacklevel=2)
    try:
        torch.broadcast_shapes(input.shape, target.shape)
    except RuntimeError:
        raise fail(op, f"a target broadcastable with input {shape_str(input)}",
                   f"target {shape_str(target)}") from None
    check_float(op, "input", input)
    check_float(op, "target", target)
    return KLDiv.apply(input, target, reduction, bool(log_target))
