"""The argument checks of the losses, as torch makes them: the reduction (and the legacy
size_average/reduce), class weights and class-index targets, each refusal naming the op."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor

from ._util import fail, shape_str

_REDUCTIONS = ("none", "mean", "sum")


def _warn(message: str, stacklevel: int) -> None:
    """torch's warning, except while dynamo traces (it cannot trace warnings.warn)."""
    if not torch.compiler.is_compiling():
        warnings.warn(message, stacklevel=stacklevel + 1)


def reduction_of(op: str, size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's mapping: legacy size_average/reduce override reduction (with its warning)."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
        _warn(
            "size_average and reduce args will be deprecated, please use "
            f"reduction='{reduction}' instead.",
            stacklevel=3,
        )
    if reduction == "elementwise_mean":
        _warn("reduction='elementwise_mean' is deprecated. "
                      "Please use reduction='mean' instead.", stacklevel=3)
        reduction = "mean"
    if reduction not in _REDUCTIONS:
        raise fail(op, "reduction 'none', 'mean' or 'sum'", f"reduction={reduction!r}")
    return reduction


def check_weight(op: str, input: Tensor, weight: Tensor | None, n_classes: int) -> None:
    if weight is None:
        return
    if weight.dim() != 1 or weight.shape[0] != n_classes:
        raise fail(op, f"weight of shape ({n_classes},), one per class",
                   f"weight {shape_str(weight)}")


def check_class_target(
    op: str, input: Tensor, target: Tensor, weight: Tensor | None, n_classes: int,
    ignore_index: int,
) -> bool:
    """Checks a class-index target as torch does; returns whether some target may equal
    ignore_index (see :func:`_check_class_range`)."""
    if target.dtype not in (torch.int64, torch.uint8):
        raise fail(op, f"class indices of dtype int64 or uint8 (or class probabilities of the "
                   f"input's shape {shape_str(input)})",
                   f"target {shape_str(target)} of dtype {target.dtype}")
    if input.dim() == 1:
        expected_shape = ()
        shape_ok = target.dim() == 0 or tuple(target.shape) == (1,)
    else:
        expected_shape = (input.shape[0], *input.shape[2:])
        shape_ok = tuple(target.shape) == expected_shape
    if not shape_ok:
        raise fail(op, f"target of shape {expected_shape} for input {shape_str(input)}",
                   f"target {shape_str(target)}")
    check_weight(op, input, weight, n_classes)
    # nll_loss's kernel takes one dtype (probability targets promote instead)
    if (weight is not None and weight.dtype != input.dtype
            and not torch.is_autocast_enabled(input.device.type)):
        raise fail(op, f"weight of the input's dtype {input.dtype}",
                   f"weight of dtype {weight.dtype}")
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise fail(op, "a class weight that does not require grad (torch's nll_loss has no "
                   "gradient for it)", "weight.requires_grad=True")
    return _check_class_range(op, target, n_classes, ignore_index)


def _check_class_range(op: str, target: Tensor, n_classes: int, ignore_index: int) -> bool:
    """torch checks class indices on the CPU at run time; so do we, outside compile and vmap
    (which cannot branch on values) and off CPU (where it would cost a device sync; the
    kernels' device-side asserts catch it there).

    Returns whether some target may equal ignore_index: False only when the check ran and
    every target is a class, which lets backward skip its masks.
    """
    if (target.numel() == 0 or target.device.type != "cpu" or torch.compiler.is_compiling()
            or is_functorch_wrapped_tensor(target)):
        return True
    low, high = torch.aminmax(target)
    low, high = int(low), int(high)
    if low >= 0 and high < n_classes:
        return low <= ignore_index <= high
    t = target.long()
    bad = ((t < 0) | (t >= n_classes)) & (t != ignore_index)
    if bad.any():
        raise fail(op, f"class indices in [0, {n_classes}) or ignore_index={ignore_index}",
                   f"target value {int(t[bad][0])}")
    return True


def unbatched_target(input: Tensor, target: Tensor) -> Tensor:
    # torch accepts a (1,) target for an unbatched (C,) input and reads it as a scalar;
    # the target is integer, so reshaping it adds no autograd node
    return target.reshape(()) if input.dim() == 1 and target.dim() == 1 else target
