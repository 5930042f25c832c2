"""Small inputs for each rule, as PyTorch's OpInfo ``sample_inputs`` are: what the standard
checks (``tests/test_rule_checks.py``) run every rule on (each row of the table names its
examples), in float64, and what a learner can
call a rule on to see it work.

Each function returns a list of :class:`Example`; a differentiable input is a float64 tensor
that requires grad, anything else (class indices, running statistics, shapes, options) goes in
as it is. Values are random but seeded, small enough for gradgradcheck, and away from the
kinks of piecewise ops (a tie in a max-pool window, x = 0 for ReLU) by construction of
``randn``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Example:
    """``op(*args, **kwargs)``: one call of a rule."""

    args: tuple
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    #: False where the gradient is defined to differ from the derivative that finite
    #: differences measure (embedding's padding_idx row, which gets none by definition)
    finite_differences: bool = True

    def __str__(self) -> str:
        return self.label or ", ".join(
            "x".join(map(str, a.shape)) if isinstance(a, Tensor) else repr(a) for a in self.args)


_generator = torch.Generator().manual_seed(0)


def x(*shape: int, grad: bool = True) -> Tensor:
    """A float64 tensor of standard normals (seeded), requiring grad unless told not to."""
    return torch.randn(shape, dtype=torch.float64, generator=_generator).requires_grad_(grad)


def classes(n: int, c: int) -> Tensor:
    return torch.randint(0, c, (n,), generator=_generator)


def linear() -> list[Example]:
    return [Example((x(3, 4), x(5, 4), x(5))), Example((x(2, 3, 4), x(5, 4), None)),
            Example((x(1, 5), x(3, 5), None), label="batch 1"),
            Example((x(2, 3, 5), x(1, 5), x(1)), label="one output"),
            Example((x(4, 1), x(2, 1), x(2)), label="one feature"),
            Example((x(4, 5), x(5), None), label="1-D weight, as torch allows")]


def conv1d() -> list[Example]:
    return [Example((x(2, 3, 7), x(4, 3, 3), x(4)), {"stride": 2, "padding": 1}),
            Example((x(2, 4, 6), x(4, 2, 2), None), {"groups": 2, "dilation": 2}),
            Example((x(2, 2, 5), x(2, 2, 4), x(2)), {"padding": "same"}, "'same', even kernel"),
            Example((x(2, 6), x(3, 2, 3), x(3)), {"stride": 2, "dilation": 2, "padding": 2},
                    "unbatched")]


def conv2d() -> list[Example]:
    return [Example((x(2, 3, 5, 5), x(4, 3, 3, 3), x(4)), {"padding": 1}),
            Example((x(1, 2, 6, 6), x(2, 1, 2, 2), None), {"stride": 2, "groups": 2}),
            Example((x(2, 1, 3, 3), x(1, 1, 2, 2), x(1)), {"padding": "same"},
                    "'same', even kernel: asymmetric"),
            Example((x(2, 4, 3, 3), x(2, 2, 2, 2), x(2)),
                    {"groups": 2, "dilation": (1, 2), "padding": (0, 1)}, "tuple options"),
            Example((x(1, 2, 3, 3), x(2, 2, 2, 2), x(2)), {"stride": (1, 2), "padding": (1, 0)},
                    "tuple stride"),
            Example((x(3, 4, 4), x(2, 3, 3, 3), x(2)), {"stride": 2}, "unbatched")]


def pool(rank: int, kind: str) -> Callable[[], list[Example]]:
    def examples() -> list[Example]:
        tail = {"count_include_pad": False} if kind == "avg" else {"dilation": 1}
        return [Example((x(2, 3, *(6,) * rank), 2)),
                Example((x(1, 2, *(7,) * rank), 3), {"stride": 2, "padding": 1, **tail}),
                *_more_pools[kind, rank]()]
    return examples


_more_pools: dict[tuple[str, int], Callable[[], list[Example]]] = {
    ("max", 2): lambda: [
        Example((x(1, 1, 5, 6), 3, 2, 1), {"ceil_mode": True, "return_indices": True},
                "ceil_mode, indices"),
        Example((x(2, 1, 5, 5), 2, 1, 1, 2), label="dilation 2"),
        Example((x(2, 4, 4), 2), {"return_indices": True}, "unbatched, indices")],
    ("max", 1): lambda: [
        Example((x(2, 2, 9), 3, 2, 1, 2), {"ceil_mode": True}, "dilation 2, ceil_mode")],
    ("avg", 2): lambda: [
        Example((x(1, 1, 5, 6), 3, 2, 1), {"ceil_mode": True, "count_include_pad": False},
                "ceil_mode, padding not counted"),
        Example((x(2, 1, 4, 4), 2), {"divisor_override": 3}, "divisor_override")],
    ("avg", 1): lambda: [Example((x(1, 2, 9), 3, 1, 1), label="stride 1, padding 1")],
}


def pointwise(**options: Any) -> Callable[[], list[Example]]:
    return lambda: [Example((x(3, 4),), dict(options)), Example((x(2, 3, 2),), dict(options))]


def along_dim() -> list[Example]:
    return [Example((x(3, 4),), {"dim": -1}), Example((x(2, 3, 4),), {"dim": 1}),
            Example((x(4, 3),), {"dim": 0}, "dim 0")]


def dropout() -> list[Example]:
    # p = 0 and eval mode: the checks compare with torch, whose random mask no rule can share
    return [Example((x(3, 4),), {"p": 0.0, "training": True}),
            Example((x(3, 4),), {"p": 0.5, "training": False})]


def batch_norm() -> list[Example]:
    c = 3

    def stats(c: int) -> tuple[Tensor, Tensor]:
        return x(c, grad=False), x(c, grad=False).abs() + 0.5

    # training takes no running statistics here: it would update them in place, call by call
    return [Example((x(4, c), None, None, x(c), x(c)), {"training": True}, "training"),
            Example((x(4, c, 2), *stats(c), x(c), x(c)), {"training": False}, "eval"),
            Example((x(3, 2, 3), None, None, x(2), x(2)), {"training": True},
                    "training, (N, C, L)"),
            Example((x(3, 2, 3), None, None, None, None), {"training": True},
                    "training, no affine"),
            Example((x(2, 2, 2, 2), None, None, x(2), x(2)), {"training": True},
                    "training, (N, C, H, W)"),
            Example((x(4, 2), *stats(2), x(2), x(2)), {"training": False}, "eval, (N, C)"),
            Example((x(3, 2, 3), *stats(2), None, None), {"training": False},
                    "eval, no affine"),
            Example((x(2, 2, 2, 2), *stats(2), x(2), x(2)), {"training": False},
                    "eval, (N, C, H, W)")]


def layer_norm() -> list[Example]:
    return [Example((x(3, 4), (4,), x(4), x(4))), Example((x(2, 3, 4), (3, 4), None, None)),
            Example((x(2, 2, 3), (2, 3), x(2, 3), x(2, 3)), label="2 dims, affine"),
            Example((x(3, 4), (4,), None, None), label="no affine"),
            Example((x(2, 3, 4), (4,), x(4), x(4)), label="3-D input, last dim")]


def embedding() -> list[Example]:
    # padding and frequency scaling are deliberately not the derivative of the lookup (torch's
    # note): no finite differences there (tests/functional/test_embedding.py gradgradchecks)
    repeats = torch.tensor([[1, 2, 1], [0, 1, 3]])
    return [Example((classes(6, 5).reshape(2, 3), x(5, 4))),
            Example((classes(4, 5), x(5, 4)), {"padding_idx": 0}, "padding_idx",
                    finite_differences=False),
            Example((repeats, x(5, 4)), {"padding_idx": -2}, "padding_idx from the end",
                    finite_differences=False),
            Example((repeats, x(5, 4)), {"scale_grad_by_freq": True}, "scale_grad_by_freq",
                    finite_differences=False),
            Example((repeats, x(5, 4)), {"padding_idx": 1, "scale_grad_by_freq": True},
                    "padding_idx, scale_grad_by_freq", finite_differences=False)]


def attention() -> list[Example]:
    return [Example((x(2, 3, 4), x(2, 5, 4), x(2, 5, 4))),
            Example((x(1, 2, 3, 4), x(1, 2, 3, 4), x(1, 2, 3, 4)), {"is_causal": True})]


def _class_weight() -> Tensor:
    return x(5, grad=False).abs() + 0.5


def _probabilities(*shape: int) -> Tensor:
    """Targets that require grad: unnormalised, as torch takes them."""
    return x(*shape, grad=False).abs().requires_grad_()


# class targets with one of them ignored (ignore_index=2) and one kept, so a mean has work
_IGNORING = torch.tensor([2, 0, 3]), torch.tensor([[2, 1], [4, 3]])


def cross_entropy() -> list[Example]:
    ignoring, ignoring_2d = _IGNORING
    return [Example((x(4, 5), classes(4, 5))),
            Example((x(4, 5), classes(4, 5)), {"label_smoothing": 0.1,
                                               "weight": x(5, grad=False).abs()}),
            Example((x(3, 5), x(3, 5, grad=False).softmax(-1)), label="probability targets"),
            Example((x(3, 5), ignoring), {"ignore_index": 2}, "ignore_index"),
            Example((x(3, 5), ignoring), {"weight": _class_weight(), "ignore_index": 2,
                                          "label_smoothing": 0.2}, "weight, ignored, smoothed"),
            Example((x(2, 5, 2), ignoring_2d), {"weight": _class_weight(), "ignore_index": 2,
                                                "reduction": "none", "label_smoothing": 0.1},
                    "K = 1, no reduction"),
            Example((x(5), torch.tensor(3)), {"reduction": "sum", "label_smoothing": 1.0},
                    "unbatched, smoothing 1"),
            Example((x(3, 5), _probabilities(3, 5), _class_weight().requires_grad_()),
                    label="probability targets, the target's and weight's gradients"),
            Example((x(2, 5, 2), _probabilities(2, 5, 2), _class_weight().requires_grad_()),
                    {"reduction": "none", "label_smoothing": 0.1},
                    "probability targets, K = 1, no reduction"),
            Example((x(5), _probabilities(5), _class_weight().requires_grad_()),
                    {"reduction": "sum", "label_smoothing": 0.3},
                    "probability targets, unbatched")]


def nll_loss() -> list[Example]:
    ignoring, ignoring_2d = _IGNORING
    return [Example((x(4, 5), classes(4, 5))), Example((x(4, 5), classes(4, 5)),
                                                       {"reduction": "sum"}),
            Example((x(3, 5), ignoring, _class_weight()), {"ignore_index": 2},
                    "weight, ignored"),
            Example((x(2, 5, 2), ignoring_2d, _class_weight()),
                    {"ignore_index": 2, "reduction": "none"}, "K = 1, no reduction"),
            Example((x(5), torch.tensor(3), _class_weight()), {"reduction": "sum"}, "unbatched")]


def mse_loss() -> list[Example]:
    # (no input and target of different shapes, which torch broadcasts: d = x − y is then
    # larger than x and y together, more than native keeps; tests/functional/test_loss.py)
    return [Example((x(3, 4), x(3, 4))), Example((x(3, 4), x(3, 4)), {"reduction": "none"}),
            *(Example((x(3, 1), x(3, 2), None, None, reduction, x(3, 1).abs() + 0.5),
                      label=f"weight, {reduction}") for reduction in ("none", "mean", "sum"))]


def linear_cross_entropy() -> list[Example]:
    return [Example((x(4, 3), x(5, 3), classes(4, 5))),
            Example((x(4, 3), x(5, 3), classes(4, 5), x(5)), {"reduction": "sum"})]


def flatten() -> list[Example]:
    return [Example((x(2, 3, 4),)), Example((x(2, 3, 4),), {"start_dim": 0, "end_dim": 1})]


def linear_then_cross_entropy(input: Tensor, weight: Tensor, target: Tensor,
                              bias: Tensor | None = None, **options: Any) -> Tensor:
    """What :func:`trainer.functional.linear_cross_entropy` fuses, in torch's own ops."""
    import torch.nn.functional as torch_F

    return torch_F.cross_entropy(torch_F.linear(input, weight, bias), target, **options)


def leaky_relu() -> list[Example]:
    return [*pointwise(negative_slope=0.2)(), Example((x(3, 4),), label="default slope"),
            Example((x(3, 4),), {"negative_slope": -0.5}, "negative slope")]


def gelu() -> list[Example]:
    return pointwise()() + pointwise(approximate="tanh")()
