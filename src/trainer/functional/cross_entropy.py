"""Cross entropy, fused with its log-softmax, with its gradient written out."""

from __future__ import annotations

import torch
from torch import Tensor

from ._fast import loss as fast
from ._util import Function, autocast_fp32, check_float, fail, records_graph, shape_str, to_dtype
from ._loss_checks import check_class_target, check_weight, reduction_of, unbatched_target
from .loss import (  # the pieces the class-index losses share
    NOT_A_CLASS,
    class_view,
    class_weights,
    per_target,
    smoothing_share,
    weight_at,
)


class CrossEntropy(Function):
    r"""Softmax cross entropy, log_softmax and the negative log-likelihood fused in one rule.

    z: logits (C), (N, C) or (N, C, d1..dK), class dim c; p = softmax(z, c); log p likewise.
    w: class weights (C,), all 1 if absent; ε = label_smoothing; i runs over the samples.

    Class-index targets t_i (ignored where t_i = ignore_index, m_i = 0 there, else 1):
        loss_i = m_i [ (1 − ε) w[t_i] (−log p_i[t_i]) + (ε/C) Σ_c w_c (−log p_i[c]) ]
        'mean' divides Σ_i loss_i by W = Σ_i m_i w[t_i] (W = 0 gives nan, as torch).
    Probability targets y (the input's shape), q = (1 − ε) y + ε/C:
        loss_i = −Σ_c w_c q_i[c] log p_i[c];  'mean' divides Σ_i loss_i by the sample count.

    Backward, with g = ∂L/∂loss scaled by the reduction (g_i, g, or g/W resp. g/count):
      class-index, a_i = m_i [ (1 − ε) w[t_i] + (ε/C) Σ_c w_c ]:
        ∂L/∂z_i[j] = g_i ( a_i p_i[j] − m_i (1 − ε) w[t_i] δ(j, t_i) − m_i (ε/C) w_j )
      probabilities, s_i = Σ_c w_c q_i[c]:
        ∂L/∂z_i[j] = g_i ( s_i p_i[j] − w_j q_i[j] )
        ∂L/∂y_i[j] = −g_i (1 − ε) w_j log p_i[j]
        ∂L/∂w_j    = −Σ_i g_i q_i[j] log p_i[j]
      The class weight of class-index targets gets no gradient (torch's nll_loss has none).
      ignore_index=None says that the caller found no target ignored (m_i = 1 for all i):
      backward then needs no masks, and for 'mean' W is the target count (or Σ_i w[t_i]).

    Saves: log p (one tensor of the input's size, as native saves), the target and the weight.
    log p is returned as a second, hidden output rather than stashed: saved as an output, it
    stays connected to z, so double backward differentiates p = exp(log p) through this rule
    again, whose backward also takes log p's own gradient h (the log-softmax Jacobian):
        ∂L/∂z_i[j] += h_i[j] − p_i[j] Σ_c h_i[c]
    That keeps the second derivative (the softmax Jacobian) exact without saving z too, and
    spares backward a softmax: p = exp(log p) is one pass.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        input: Tensor,
        target: Tensor,
        weight: Tensor | None,
        reduction: str,
        ignore_index: int | None,
        label_smoothing: float,
    ) -> tuple[Tensor, Tensor]:
        # torch runs cross entropy in float32 under autocast
        input, target, weight = autocast_fp32(input.device.type, input, target, weight)
        class_dim = 0 if input.dim() == 1 else 1
        log_probs = fast.log_softmax(input, class_dim)
        if target.is_floating_point():
            loss = _probability_target_loss(log_probs, target, weight, reduction, label_smoothing)
        else:
            if ignore_index is None:  # no target is ignored: any non-class will do
                ignore_index = NOT_A_CLASS
            loss = torch.nn.functional.nll_loss(
                log_probs, target, weight, ignore_index=ignore_index, reduction=reduction
            )
            if label_smoothing > 0:
                loss = _smoothed_class_loss(
                    loss, log_probs, target, weight, reduction, ignore_index, label_smoothing
                )
        return loss, log_probs

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction, ignore_index, label_smoothing = inputs
        need_z, need_y, need_w = ctx.needs_input_grad[:3]
        ctx.set_materialize_grads(False)
        log_probs = output[1]
        probability_target = target.is_floating_point()
        if probability_target:
            ctx.save_for_backward(
                log_probs, target if need_z or need_w else None,
                weight if need_z or need_y else None,
            )
        else:  # only the logits can have a gradient
            ctx.save_for_backward(log_probs, target, weight)
        ctx.probability_target = probability_target
        ctx.class_dim = 0 if input.dim() == 1 else 1
        ctx.reduction, ctx.ignore_index, ctx.label_smoothing = (
            reduction, ignore_index, label_smoothing
        )

    @staticmethod
    def backward(ctx, g: Tensor | None, g_log_probs: Tensor | None):
        log_probs, target, weight = ctx.saved_tensors
        grad_z = grad_y = grad_w = None
        if g is not None:
            log_probs = to_dtype(log_probs, g.dtype)
            if ctx.probability_target:
                grad_z, grad_y, grad_w = _probability_target_grads(
                    ctx, g, log_probs, target, weight
                )
            elif ctx.needs_input_grad[0]:
                grad_z = _class_target_grad(ctx, g, log_probs, target, weight)
        if g_log_probs is not None and ctx.needs_input_grad[0]:
            # only double backward reaches here: log p's gradient, through log_softmax
            log_probs = to_dtype(log_probs, g_log_probs.dtype)
            sums = g_log_probs.sum(ctx.class_dim, keepdim=True)
            through_log_softmax = g_log_probs - fast.exp(log_probs) * sums
            grad_z = through_log_softmax if grad_z is None else grad_z + through_log_softmax
        return grad_z, grad_y, grad_w, None, None, None


def _probability_target_loss(
    log_probs: Tensor, target: Tensor, weight: Tensor | None, reduction: str, eps: float
) -> Tensor:
    """torch's formula for class probabilities: −Σ_c w_c q[c] log p[c], q = (1 − ε) y + ε/C.
    """
    class_dim = 0 if log_probs.dim() == 1 else 1
    n_classes = log_probs.shape[class_dim]
    q = target if eps == 0 else target * (1 - eps) + smoothing_share(eps, n_classes)
    terms = log_probs * q
    if weight is not None:
        terms = terms * class_view(weight, class_dim, log_probs.dim())
    if reduction == "none":
        return -terms.sum(class_dim)
    if reduction == "sum":
        return -terms.sum()
    # No samples (or no classes): 0/0, nan as torch.
    return -terms.sum() / (log_probs.numel() / n_classes if n_classes else 0.0)


def _smoothed_class_loss(
    nll: Tensor, log_probs: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
    ignore_index: int, eps: float,
) -> Tensor:
    """torch's label-smoothing formula, (1 − ε) nll + (ε/C) Σ_c w_c (−log p[c]), with the
    'mean' weight sum taken by where() where torch uses masked_select, which vmap cannot batch.
    """
    class_dim = 0 if log_probs.dim() == 1 else 1
    n_classes = log_probs.shape[class_dim]
    t = target.long()
    valid = t != ignore_index
    if weight is None:
        smooth = torch.where(valid, -log_probs.sum(class_dim), 0)
    else:
        weighted = log_probs * class_view(weight, class_dim, log_probs.dim())
        smooth = torch.where(valid, -weighted.sum(class_dim), 0)
    if reduction == "mean":
        total = valid.sum() if weight is None else torch.where(
            valid, weight_at(weight, torch.where(valid, t, 0)), 0).sum()
        smooth = smooth.sum() / total
    elif reduction == "sum":
        smooth = smooth.sum()
    return (1 - eps) * nll + smooth * (smoothing_share(eps, n_classes))


def _class_target_grad(ctx, g: Tensor, log_probs: Tensor, target: Tensor, weight: Tensor | None):
    class_dim, eps = ctx.class_dim, ctx.label_smoothing
    safe_target, g_valid, g_weighted = class_weights(
        target, weight, ctx.ignore_index, ctx.reduction, g
    )
    in_place = not records_graph()
    if eps == 0:
        target_coef = per_target(g_weighted, safe_target, class_dim)  # g_i m_i w[t_i]
        grad = _mul(fast.exp(log_probs), target_coef, in_place)
    else:
        n_classes = log_probs.shape[class_dim]
        target_coef = per_target(g_weighted * (1 - eps), safe_target, class_dim)
        smooth_coef = per_target(g_valid * (smoothing_share(eps, n_classes)), safe_target, class_dim)
        all_weights = n_classes if weight is None else to_dtype(weight, g.dtype).sum()
        a = target_coef + smooth_coef * all_weights
        grad = _mul(fast.exp(log_probs), a, in_place)
        if weight is None:
            grad = _sub(grad, smooth_coef, in_place)
        else:  # − g_i m_i (ε/C) w_j, an outer product never materialized
            w = class_view(to_dtype(weight, g.dtype), class_dim, log_probs.dim())
            grad = grad.addcmul_(smooth_coef, w, value=-1) if in_place \
                else torch.addcmul(grad, smooth_coef, w, value=-1)
    # scatter_add_ writes a fresh tensor that no backward formula needs: safe in any mode
    return grad.scatter_add_(class_dim, safe_target.unsqueeze(class_dim), -target_coef)


def _probability_target_grads(
    ctx, g: Tensor, log_probs: Tensor, y: Tensor | None, weight: Tensor | None
):
    need_z, need_y, need_w = ctx.needs_input_grad[:3]
    class_dim, eps = ctx.class_dim, ctx.label_smoothing
    n_classes = log_probs.shape[class_dim]
    y, weight = to_dtype(y, g.dtype), to_dtype(weight, g.dtype)
    if ctx.reduction == "mean":  # an empty batch has no grads to scale
        g = g / max(log_probs.numel() // max(n_classes, 1), 1)
    elif ctx.reduction == "none":
        g = g.unsqueeze(class_dim)
    w = None if weight is None else class_view(weight, class_dim, log_probs.dim())
    in_place = not records_graph()
    grad_z = grad_y = grad_w = None
    if need_z or need_w:
        q = y if eps == 0 else y * (1 - eps) + smoothing_share(eps, n_classes)
    if need_z:
        wq = q if w is None else q * w
        grad_z = _mul(fast.exp(log_probs), wq.sum(class_dim, keepdim=True), in_place)
        grad_z = _mul(_sub(grad_z, wq, in_place), g, in_place)
    if need_y:
        scale = g * -(1 - eps)
        grad_y = log_probs * scale if w is None else _mul(log_probs * w, scale, in_place)
    if need_w:
        other_dims = [d for d in range(log_probs.dim()) if d != class_dim]
        grad_w = _mul(g * q, log_probs, in_place)
        grad_w = -(grad_w.sum(other_dims) if other_dims else grad_w)
    return grad_z, grad_y, grad_w


def _mul(fresh: Tensor, other: Tensor, in_place: bool) -> Tensor:
    """fresh * other, reusing fresh's memory when no graph records it (one big buffer fewer)."""
    return fresh.mul_(other) if in_place else fresh * other


def _sub(fresh: Tensor, other: Tensor, in_place: bool) -> Tensor:
    return fresh.sub_(other) if in_place else fresh - other


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.cross_entropy`."""
    op = "cross_entropy"
    reduction = reduction_of(op, size_average, reduce, reduction)
    check_float(op, "input", input)
    if input.dim() == 0:
        raise fail(op, "input of shape (C), (N, C) or (N, C, d1, ..., dK)", "input ()")
    n_classes = input.shape[0 if input.dim() == 1 else 1]
    if label_smoothing > 1.0:
        raise fail(op, "label_smoothing in [0.0, 1.0]", f"label_smoothing={label_smoothing}")
    label_smoothing = float(label_smoothing) if label_smoothing > 0 else 0.0  # torch: <= 0 is off
    if target.shape == input.shape:  # torch reads a target of the input's shape as probabilities
        if not target.is_floating_point():
            raise fail(op, f"a float target for class probabilities of shape {shape_str(input)}",
                       f"target of dtype {target.dtype}")
        if ignore_index >= 0:
            raise fail(op, "ignore_index < 0 with probability targets (no class can be ignored)",
                       f"ignore_index={ignore_index}")
        check_weight(op, input, weight, n_classes)
    else:
        if not check_class_target(op, input, target, weight, n_classes, ignore_index):
            ignore_index = None  # no target is ignored: backward needs no masks
        target = unbatched_target(input, target)
    loss, _ = CrossEntropy.apply(input, target, weight, reduction, ignore_index, label_smoothing)
    return loss
