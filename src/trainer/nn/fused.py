"""An LM-style head: a linear layer and its cross-entropy loss as one fused module."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F
from trainer.functional._util import ShapeError, shape_str
from trainer.functional.fused import linear_cross_entropy


class LinearCrossEntropy(torch.nn.Module):
    """``CrossEntropyLoss()(Linear(in_features, num_classes)(input), target)``, fused.

    Holds ``weight`` (num_classes, in_features) and ``bias`` (num_classes,) under the names,
    shapes and initialization of :class:`torch.nn.Linear`, so a Linear's ``state_dict`` loads
    into it and back. ``forward(input, target)`` returns the loss through
    :func:`trainer.functional.fused.linear_cross_entropy`, which never holds the full
    (N, num_classes) logits; :meth:`logits` gives them when they are wanted (evaluation).

    It is deliberately not a subclass of ``nn.Linear``: its forward takes a target and returns
    a loss, so code that treats any ``nn.Linear`` as "features in, logits out" must not mistake
    it for one.
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True, *,
                 ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, chunk_size: int | None = None,
                 device=None, dtype=None) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"LinearCrossEntropy: expected reduction 'mean' or 'sum', got "
                             f"{reduction!r} (the fused op cannot precompute per-row weights)")
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.num_classes = in_features, num_classes
        self.ignore_index, self.reduction = ignore_index, reduction
        self.label_smoothing, self.chunk_size = label_smoothing, chunk_size
        self.weight = torch.nn.Parameter(torch.empty((num_classes, in_features), **factory))
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(num_classes, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's own initialization: it only touches self.weight and self.bias.
        torch.nn.Linear.reset_parameters(self)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, **loss_options) -> LinearCrossEntropy:
        """A fused head sharing ``linear``'s parameters (the very same tensors, not copies)."""
        head = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                   device=linear.weight.device, dtype=linear.weight.dtype, **loss_options)
        head.weight = linear.weight
        head.bias = linear.bias
        return head

    def _check(self, input: Tensor) -> None:
        if input.dim() == 0 or input.shape[-1] != self.in_features:
            raise ShapeError(f"{self!r}: expected input of shape (*, {self.in_features}), "
                             f"got {shape_str(input)}")

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._check(input)
        return linear_cross_entropy(input, self.weight, target, self.bias,
                                    ignore_index=self.ignore_index, reduction=self.reduction,
                                    label_smoothing=self.label_smoothing,
                                    chunk_size=self.chunk_size)

    def logits(self, input: Tensor) -> Tensor:
        """The unfused (*, num_classes) scores, through the explicit linear rule."""
        self._check(input)
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        extras = f"in_features={self.in_features}, num_classes={self.num_classes}, " \
                 f"bias={self.bias is not None}"
        if self.ignore_index != -100:
            extras += f", ignore_index={self.ignore_index}"
        if self.reduction != "mean":
            extras += f", reduction={self.reduction!r}"
        if self.label_smoothing:
            extras += f", label_smoothing={self.label_smoothing}"
        if self.chunk_size is not None:
            extras += f", chunk_size={self.chunk_size}"
        return extras
