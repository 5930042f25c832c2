"""Losses with their gradients written out: negative log-likelihood and mean squared error,
and the pieces the class-index losses share with cross entropy (:mod:`.cross_entropy`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import (
    Function,
    autocast_fp32,
    check_float,
    fail,
    shape_str,
    sum_to_shape,
    to_dtype,
)
from ._loss_checks import _warn, check_class_target, reduction_of, unbatched_target

NOT_A_CLASS = -100  # the ignore_index a kernel gets when no target is ignored (None below)


# ------------------------------------------------------------------------------------------
# Shared pieces of the class-index rules (nll_loss here, and cross_entropy).


def class_weights(
    target: Tensor, weight: Tensor | None, ignore_index: int | None, reduction: str, g: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The per-target pieces of a class-index gradient.

    Returns ``safe_target`` (ignored targets replaced by class 0, so that it can index),
    ``g_valid`` = m_i g_i scaled by the reduction (1/W for 'mean', W = Σ_i m_i w[t_i]) and
    ``g_weighted`` = g_valid · w[t_i]; m_i = 0 at ignored targets.

    ``ignore_index=None`` says that the caller checked that no target is ignored (m_i = 1):
    then there are no masks, W is the target count without a weight, and for 'mean'/'sum'
    g_valid stays 0-d, as does g_weighted without a weight (:func:`per_target` broadcasts).
    """
    t = target.long()
    if ignore_index is None:
        target_weight = None if weight is None else weight_at(to_dtype(weight, g.dtype), t)
        if reduction == "mean":
            g = g / (t.numel() if weight is None else target_weight.sum())
        return t, g, (g if weight is None else g * target_weight)
    valid = t != ignore_index
    safe_target = torch.where(valid, t, 0)  # ignore_index may be out of range
    target_weight = None if weight is None else weight_at(to_dtype(weight, g.dtype), safe_target)
    if reduction == "mean":
        total = valid.sum() if weight is None else torch.where(valid, target_weight, 0).sum()
        g = g / total
    # where(), not a product with m: all-ignored 'mean' divides by 0 and still has zero grads
    g_valid = torch.where(valid, g, 0)
    g_weighted = g_valid if weight is None else g_valid * target_weight
    return safe_target, g_valid, g_weighted


def smoothing_share(eps: float, n_classes: int) -> float:
    """Label smoothing's mass per class; none when there are no classes (an empty input)."""
    return eps / n_classes if n_classes else 0.0


def per_target(coef: Tensor, target: Tensor, class_dim: int) -> Tensor:
    """A per-target coefficient (or a 0-d one, the same for every target) as a tensor of the
    target's shape with a size-1 class dim: what scatter_add_ takes, and what broadcasts
    against the input."""
    return coef.expand(target.shape).unsqueeze(class_dim)


def weight_at(weight: Tensor, index: Tensor) -> Tensor:
    """weight[index] for an index of any shape (gather, which vmap batches; take does not)."""
    return weight.gather(0, index.reshape(-1)).view(index.shape)


def class_view(t: Tensor, class_dim: int, ndim: int) -> Tensor:
    """A (C,) tensor viewed to broadcast along the class dim of an ndim-dim input."""
    shape = [1] * ndim
    shape[class_dim] = t.shape[0]
    return t.view(shape)


# ------------------------------------------------------------------------------------------
# nll_loss


class NllLoss(Function):
    r"""Negative log-likelihood of log-probabilities x: (C), (N, C) or (N, C, d1..dK).

    loss_i = −m_i w[t_i] x_i[t_i],  m_i = 0 where t_i = ignore_index, else 1;  w = 1 if absent.
    'mean' divides Σ_i loss_i by W = Σ_i m_i w[t_i]; 'sum' sums; 'none' keeps loss_i.

    Backward, with g = ∂L/∂loss (g_i, g, or g/W by reduction):
        ∂L/∂x_i[j] = −g_i m_i w[t_i] δ(j, t_i)     a scatter of −g_i m_i w[t_i] at t_i
    It is linear in g and does not involve x, so double backward is exact. ignore_index=None
    says that the caller found no target ignored: no masks, and for 'mean' W = the count.

    Saves: the target and the weight (if any): not the input, which no gradient needs (only
    its shape, as ints).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        input: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
        ignore_index: int | None,
    ) -> Tensor:
        input, weight = autocast_fp32(input.device.type, input, weight)
        return torch.nn.functional.nll_loss(
            input, target, weight, reduction=reduction,
            ignore_index=NOT_A_CLASS if ignore_index is None else ignore_index,
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction, ignore_index = inputs
        ctx.save_for_backward(target, weight)
        ctx.input_shape = input.shape
        ctx.class_dim = 0 if input.dim() == 1 else 1
        ctx.reduction, ctx.ignore_index = reduction, ignore_index

    @staticmethod
    def backward(ctx, g: Tensor):
        target, weight = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            safe_target, _, g_weighted = class_weights(
                target, weight, ctx.ignore_index, ctx.reduction, g
            )
            class_dim = ctx.class_dim
            # scatter_add_ into zeros: vmap batches it (scatter_ it does not)
            grad_input = g_weighted.new_zeros(ctx.input_shape).scatter_add_(
                class_dim, safe_target.unsqueeze(class_dim),
                -per_target(g_weighted, safe_target, class_dim),
            )
        return grad_input, None, None, None, None


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.nll_loss`."""
    op = "nll_loss"
    reduction = reduction_of(op, size_average, reduce, reduction)
    check_float(op, "input", input)
    if input.dim() == 0:
        raise fail(op, "input of shape (C), (N, C) or (N, C, d1, ..., dK)", "input ()")
    n_classes = input.shape[0 if input.dim() == 1 else 1]
    if not check_class_target(op, input, target, weight, n_classes, ignore_index):
        ignore_index = None  # no target is ignored: backward needs no masks
    target = unbatched_target(input, target)
    return NllLoss.apply(input, target, weight, reduction, ignore_index)


# ------------------------------------------------------------------------------------------
# mse_loss


class MseLoss(Function):
    r"""Mean squared error, with d = x − y (broadcast) and optional elementwise weight w:
        loss = w ⊙ d²  ('none'),  Σ w d²  ('sum'),  Σ w d² / W  ('mean'),
    where W = Σ w, or the element count of d without a weight (then w = 1).

    Backward, with g = ∂L/∂loss (g elementwise, g, or g/W by reduction):
        ∂L/∂x = Σ_broadcast  2 g w d          ∂L/∂y = −Σ_broadcast 2 g w d
        ∂L/∂w = g (Σ_broadcast d² − loss)   ('mean'; g Σ_broadcast d² otherwise)

    Saves: d only (plus w when given), not x and y; d has the broadcast shape, so where x and
    y broadcast against each other it can hold more than both. d is returned as a second, hidden output,
    so that autograd knows d depends on x and y: the first gradients are made from d, and
    double backward then reaches x and y through d's own gradient, which this backward also
    takes (∂d/∂x = I, ∂d/∂y = −I).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        input: Tensor, target: Tensor, weight: Tensor | None, reduction: str
    ) -> tuple[Tensor, Tensor]:
        if weight is None:
            # torch's mse_loss runs in float32 under autocast
            input, target = autocast_fp32(input.device.type, input, target)
            diff = input - target
            if reduction == "none":
                return diff * diff, diff
            if diff.dtype in (torch.float32, torch.float64):
                flat = diff.reshape(-1)
                total = torch.dot(flat, flat)  # one fused read of d
            else:
                total = (diff * diff).sum()
            return (total / diff.numel() if reduction == "mean" else total), diff
        # the ops torch's weighted mse_loss runs, so autocast casts exactly as it does there
        diff = input - target
        weighted = torch.pow(diff, 2) * weight
        if reduction == "none":
            return weighted, diff
        total = weighted.sum()
        return (total / weight.sum() if reduction == "mean" else total), diff

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1], weight)
        ctx.input_shape, ctx.target_shape = input.shape, target.shape
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, g: Tensor | None, g_diff: Tensor | None):
        diff, weight = ctx.saved_tensors
        need_x, need_y, need_w = ctx.needs_input_grad[:3]
        if g is None and g_diff is None:
            return None, None, None, None
        dtype = g.dtype if g is not None else g_diff.dtype
        diff, weight = to_dtype(diff, dtype), to_dtype(weight, dtype)
        grad_diff = grad_weight = None  # ∂L/∂d, reaching x and y
        if g is not None:
            if ctx.reduction == "mean" and weight is not None:
                g = g / weight.sum()
            if need_x or need_y:
                weighted = diff if weight is None else diff * weight
                if ctx.reduction == "none":  # in place on the fresh product: no extra buffer
                    grad_diff = (weighted * g).mul_(2)
                else:  # g is a scalar: scale it (by 2, and 1/numel for an unweighted 'mean'),
                    # not the big tensor; an empty d has an empty gradient whatever the scale
                    unweighted_mean = ctx.reduction == "mean" and weight is None
                    scale = 2 / max(diff.numel(), 1) if unweighted_mean else 2
                    grad_diff = weighted * (g * scale)
            if need_w:
                # per weight element: the d² it multiplies (summed over broadcast), and for
                # 'mean' minus the loss, through W = Σ w
                if ctx.reduction == "none":
                    grad_weight = sum_to_shape(diff * diff * g, weight.shape)
                else:
                    squared = sum_to_shape(diff * diff, weight.shape)
                    if ctx.reduction == "mean":
                        squared = squared - (squared * weight).sum() / weight.sum()
                    grad_weight = squared * g
        if g_diff is not None:
            grad_diff = g_diff if grad_diff is None else grad_diff + g_diff
        grad_x = grad_y = None
        if grad_diff is not None:
            if need_x:
                grad_x = sum_to_shape(grad_diff, ctx.input_shape)
            if need_y:
                grad_y = -sum_to_shape(grad_diff, ctx.target_shape)
        return grad_x, grad_y, grad_weight, None


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.mse_loss`."""
    op = "mse_loss"
    if torch.bool in (input.dtype, target.dtype):
        raise fail(op, "numeric input and target", f"input of dtype {input.dtype} and target of "
                   f"dtype {target.dtype}")
    same_shape = target.shape == input.shape
    if not same_shape:
        _warn(
            f"Using a target size ({target.size()}) that is different to the input size "
            f"({input.size()}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=2,
        )
    reduction = reduction_of(op, size_average, reduce, reduction)
    if not same_shape:  # (broadcast_shapes is pure Python, ~8 us: only where shapes differ)
        try:
            torch.broadcast_shapes(input.shape, target.shape)
        except RuntimeError:
            raise fail(op, f"a target broadcastable with input {shape_str(input)}",
                       f"target {shape_str(target)}") from None
    if weight is None:
        if not torch.promote_types(input.dtype, target.dtype).is_floating_point:
            raise fail(op, "floating input and target",
                       f"input of dtype {input.dtype}, target of dtype {target.dtype}")
    elif weight.shape != input.shape:
        raise fail(op, f"weight of the input's shape {shape_str(input)}",
                   f"weight {shape_str(weight)}")
    loss, _ = MseLoss.apply(input, target, weight, reduction)
    return loss
