"""The table of rules, section: reductions (see :mod:`trainer.rules`).

Also this section's examples, and its adapters: torch's reductions take numpy's ``axis=`` and
``keepdims=`` beside ``dim=`` and ``keepdim=``, var and std the legacy ``unbiased=``, and
``torch.max`` and ``torch.norm`` are several ops in one (only the reduction along a dim, and
only the 2-norm, are these rules; the adapters leave the rest to torch).
"""

from __future__ import annotations

import torch

from trainer import functional as F
from trainer.functional import extremes, reduce
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

# -- examples -----------------------------------------------------------------------------------


def _sum_or_mean() -> list[Example]:
    return [Example((x(3, 4),)),
            Example((x(2, 3, 4),), {"dim": (0, -1), "keepdim": True}),
            Example((x(2, 3, 4),), {"dim": 1, "dtype": torch.float64})]


def _spread() -> list[Example]:
    return [Example((x(3, 4),)),
            Example((x(2, 3, 4),), {"dim": 1, "correction": 0, "keepdim": True}),
            Example((x(2, 3, 4),), {"dim": (0, 2), "correction": 2})]


def _extreme() -> list[Example]:
    # randn: no ties, and gaps far above gradcheck's eps
    return [Example((x(3, 4),)),
            Example((x(3, 4),), {"dim": 1}),
            Example((x(2, 3, 4),), {"dim": (0, -1), "keepdim": True})]


def _along_dim() -> list[Example]:
    return [Example((x(3, 4),), {"dim": 1}),
            Example((x(2, 3, 4),), {"dim": -1, "keepdim": True}),
            Example((x(2, 3, 4),), {"dim": 0})]


def _logsumexp() -> list[Example]:
    return [Example((x(3, 4),), {"dim": 1}),
            Example((x(2, 3, 4),), {"dim": (0, 2), "keepdim": True})]


def _norm() -> list[Example]:
    return [Example((x(3, 4),)),
            Example((x(3, 4),), {"dim": 1}),
            Example((x(2, 3, 4),), {"dim": (0, -1), "keepdim": True})]


def _cumsum() -> list[Example]:
    return [Example((x(3, 4),), {"dim": 0}),
            Example((x(2, 3, 4),), {"dim": -1, "dtype": torch.float64})]


# -- adapters -----------------------------------------------------------------------------------

_NUMPY_NAMES = {"axis": "dim", "keepdims": "keepdim"}


def _torch_names(options: dict) -> dict | None:
    """``options`` with numpy's names as torch's; None where a name is given twice."""
    renamed = {}
    for name, value in options.items():
        name = _NUMPY_NAMES.get(name, name)
        if name in renamed:
            return None
        renamed[name] = value
    return renamed


def _bind(args: tuple, names: tuple[str, ...], options: dict) -> dict | None:
    """Positional ``args`` bound to ``names`` beside ``options`` (numpy's names renamed);
    None where torch would refuse the call (too many, or one given twice)."""
    options = _torch_names(options)
    if options is None or len(args) > len(names):
        return None
    for name, value in zip(names, args):
        if name in options:
            return None
        options[name] = value
    return options


def _names_a_dim(dim: object) -> bool:
    """A named tensor's dim (a str): no rule takes those."""
    return isinstance(dim, str) or (isinstance(dim, (tuple, list))
                                    and any(isinstance(d, str) for d in dim))


def _call(op: str, input, args: tuple, options: dict, names: tuple[str, ...],
          accepted: frozenset[str]):
    """``F.<op>(input, **bound)``, or NotImplemented for what the rule cannot take."""
    bound = _bind(args, names, options)
    if (bound is None or not set(bound) <= accepted or _names_a_dim(bound.get("dim"))
            or not isinstance(input, torch.Tensor)):
        return NotImplemented
    return getattr(F, op)(input, **bound)


def sum_from_torch(input, *args, **options):
    """``torch.sum`` and ``Tensor.sum``, numpy's names taken."""
    return _call("sum", input, args, options, ("dim", "keepdim"),
                 frozenset({"dim", "keepdim", "dtype"}))


def mean_from_torch(input, *args, **options):
    """``torch.mean`` and ``Tensor.mean``, numpy's names taken."""
    return _call("mean", input, args, options, ("dim", "keepdim"),
                 frozenset({"dim", "keepdim", "dtype"}))


def _spread_from_torch(op: str, input, args: tuple, options: dict):
    """var, std: ``(input, dim, *, correction, keepdim)`` and the legacy
    ``(input, dim, unbiased, keepdim)`` and ``(input, unbiased)``; unbiased is correction 1."""
    names = ("dim", "unbiased", "keepdim")
    if args and isinstance(args[0], bool):
        names = ("unbiased",)  # (input, unbiased)
    bound = _bind(args, names, options)
    if bound is None or not isinstance(input, torch.Tensor) or input.is_complex():
        return NotImplemented
    if "unbiased" in bound:
        if "correction" in bound:
            return NotImplemented  # torch refuses both
        bound["correction"] = 1 if bound.pop("unbiased") else 0
    return _call(op, input, (), bound, (), frozenset({"dim", "correction", "keepdim"}))


def var_from_torch(input, *args, **options):
    """``torch.var`` and ``Tensor.var``, ``unbiased=`` and numpy's names taken."""
    return _spread_from_torch("var", input, args, options)


def std_from_torch(input, *args, **options):
    """``torch.std`` and ``Tensor.std``, ``unbiased=`` and numpy's names taken."""
    return _spread_from_torch("std", input, args, options)


def _real(input) -> bool:
    return isinstance(input, torch.Tensor) and not input.is_complex()


def amax_from_torch(input, *args, **options):
    """``torch.amax`` and ``Tensor.amax``, numpy's names taken."""
    if not _real(input):
        return NotImplemented
    return _call("amax", input, args, options, ("dim", "keepdim"), frozenset({"dim", "keepdim"}))


def amin_from_torch(input, *args, **options):
    """``torch.amin`` and ``Tensor.amin``, numpy's names taken."""
    if not _real(input):
        return NotImplemented
    return _call("amin", input, args, options, ("dim", "keepdim"), frozenset({"dim", "keepdim"}))


_ELEMENTWISE = {"max": "maximum", "min": "minimum"}


def _select_from_torch(op: str, input, args: tuple, options: dict):
    """max, min along a dim. The full reduction (no dim) is another op: NotImplemented. So is
    the elementwise form (``other``, positional or named): it goes to ``F.maximum`` or
    ``F.minimum`` where that rule exists, else NotImplemented."""
    other = options.get("other", args[0] if args else None)
    if isinstance(other, torch.Tensor):
        elementwise = getattr(F, _ELEMENTWISE[op], None)
        if elementwise is None or len(args) + len(options) != 1:
            return NotImplemented
        return elementwise(input, other)
    bound = _bind(args, ("dim", "keepdim"), options)
    if bound is None or not _real(input) or not set(bound) <= {"dim", "keepdim"}:
        return NotImplemented
    dim = bound.get("dim")
    if dim is None or isinstance(dim, str):
        return NotImplemented
    return getattr(F, op)(input, **bound)


def max_from_torch(input, *args, **options):
    """``torch.max(input, dim, keepdim=False)`` and ``Tensor.max(dim, keepdim=False)``."""
    return _select_from_torch("max", input, args, options)


def min_from_torch(input, *args, **options):
    """``torch.min(input, dim, keepdim=False)`` and ``Tensor.min(dim, keepdim=False)``."""
    return _select_from_torch("min", input, args, options)


def logsumexp_from_torch(input, *args, **options):
    """``torch.logsumexp``, ``Tensor.logsumexp`` and ``torch.special.logsumexp``, numpy's
    names taken."""
    if not _real(input):
        return NotImplemented
    return _call("logsumexp", input, args, options, ("dim", "keepdim"),
                 frozenset({"dim", "keepdim"}))


def _is_two(order: object) -> bool:
    return not isinstance(order, bool) and isinstance(order, (int, float)) and order == 2


def norm_from_vector_norm(x, *args, **options):
    """``torch.linalg.vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None)``: the
    2-norm without dtype only."""
    bound = _bind(args, ("ord", "dim", "keepdim"), options)
    if bound is None or not _is_two(bound.pop("ord", 2)) or bound.pop("dtype", None) is not None:
        return NotImplemented
    if not _real(x) or not x.is_floating_point():
        return NotImplemented  # torch's own error for integers
    return _call("norm", x, (), bound, (), frozenset({"dim", "keepdim"}))


def norm_from_torch(input, *args, **options):
    """``torch.norm(input, p='fro', dim=None, keepdim=False, out=None, dtype=None)`` and
    ``Tensor.norm``: p = 2, and p = 'fro' over at most two dims (which torch computes as the
    vector 2-norm), without out or dtype."""
    bound = _bind(args, ("p", "dim", "keepdim", "out", "dtype"), options)
    if bound is None or bound.pop("out", None) is not None:
        return NotImplemented
    if bound.pop("dtype", None) is not None:
        return NotImplemented
    p, dim = bound.pop("p", "fro"), bound.get("dim")
    fro = p == "fro" and (dim is None or isinstance(dim, int) or len(dim) <= 2)
    if not (fro or p is None or _is_two(p)):
        return NotImplemented
    if not _real(input) or not input.is_floating_point():
        return NotImplemented
    return _call("norm", input, (), bound, (), frozenset({"dim", "keepdim"}))


def cumsum_from_torch(input, *args, **options):
    """``torch.cumsum`` and ``Tensor.cumsum``, numpy's names taken."""
    return _call("cumsum", input, args, options, ("dim",), frozenset({"dim", "dtype"}))


def _adapt(adapter, *entry_points: str) -> dict:
    return dict.fromkeys(entry_points, adapter)


# -- the rows -----------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule(name="sum", function=reduce.Sum,
         stands_for=("torch.sum", "torch.Tensor.sum"),
         adapters=_adapt(sum_from_torch, "torch.sum", "torch.Tensor.sum"),
         twins=(),
         grads=("input: expand(g) to x's shape  (reduced dims restored)",),
         saves="nothing: only x's shape and dtype",
         examples=_sum_or_mean),
    Rule(name="mean", function=reduce.Mean,
         stands_for=("torch.mean", "torch.Tensor.mean"),
         adapters=_adapt(mean_from_torch, "torch.mean", "torch.Tensor.mean"),
         twins=(),
         grads=("input: expand(g) / N  (N: the elements reduced)",),
         saves="nothing: only x's shape, dtype and the count N",
         examples=_sum_or_mean),
    Rule(name="var", function=reduce.Var,
         stands_for=("torch.var", "torch.Tensor.var"),
         adapters=_adapt(var_from_torch, "torch.var", "torch.Tensor.var"),
         twins=(),
         grads=("input: 2 g (x − μ) / (N − correction)",),
         saves="x, from which backward takes μ: native keeps x alone too",
         examples=_spread),
    Rule(name="std", function=reduce.Std,
         stands_for=("torch.std", "torch.Tensor.std"),
         adapters=_adapt(std_from_torch, "torch.std", "torch.Tensor.std"),
         twins=(),
         grads=("input: g (x − μ) / ((N − correction) y)  (0 where y = 0)",),
         saves="x for x − μ, and y",
         examples=_spread),
    Rule(name="amax", function=extremes.Amax,
         stands_for=("torch.amax", "torch.Tensor.amax"),
         adapters=_adapt(amax_from_torch, "torch.amax", "torch.Tensor.amax"),
         twins=(),
         grads=("input: g · m / Σ m,  m = [x = y]  (ties share g)",),
         saves="the mask m = [x = y] as bool, not x and y",
         examples=_extreme),
    Rule(name="amin", function=extremes.Amin,
         stands_for=("torch.amin", "torch.Tensor.amin"),
         adapters=_adapt(amin_from_torch, "torch.amin", "torch.Tensor.amin"),
         twins=(),
         grads=("input: g · m / Σ m,  m = [x = y]  (ties share g)",),
         saves="the mask m = [x = y] as bool, not x and y",
         examples=_extreme),
    Rule(name="max", function=extremes.Max,
         stands_for=("torch.max", "torch.Tensor.max"),
         adapters=_adapt(max_from_torch, "torch.max", "torch.Tensor.max"),
         twins=(),
         grads=("input: scatter of g at the returned indices along dim",),
         saves="the indices, which forward returns anyway",
         examples=_along_dim),
    Rule(name="min", function=extremes.Min,
         stands_for=("torch.min", "torch.Tensor.min"),
         adapters=_adapt(min_from_torch, "torch.min", "torch.Tensor.min"),
         twins=(),
         grads=("input: scatter of g at the returned indices along dim",),
         saves="the indices, which forward returns anyway",
         examples=_along_dim),
    Rule(name="logsumexp", function=reduce.LogSumExp,
         stands_for=("torch.logsumexp", "torch.Tensor.logsumexp", "torch.special.logsumexp"),
         adapters=_adapt(logsumexp_from_torch, "torch.logsumexp", "torch.Tensor.logsumexp",
                         "torch.special.logsumexp"),
         twins=(),
         grads=("input: g · e^(x − y)  (softmax over the reduced dims)",),
         saves="x and y, for e^(x − y)",
         examples=_logsumexp),
    Rule(name="norm", function=reduce.Norm,
         stands_for=("torch.linalg.vector_norm", "torch.norm", "torch.Tensor.norm"),
         adapters={"torch.linalg.vector_norm": norm_from_vector_norm,
                   "torch.norm": norm_from_torch, "torch.Tensor.norm": norm_from_torch},
         twins=(),
         grads=("input: g · x / y  (0 at the zero vector)",),
         saves="x and y",
         examples=_norm),
    Rule(name="cumsum", function=reduce.CumSum,
         stands_for=("torch.cumsum", "torch.Tensor.cumsum"),
         adapters=_adapt(cumsum_from_torch, "torch.cumsum", "torch.Tensor.cumsum"),
         twins=(),
         grads=("input: flip(cumsum(flip(g)))  (a reversed cumsum along dim)",),
         saves="nothing: only dim and x's dtype",
         examples=_cumsum),
)
