"""The table of rules, section: pointwise arithmetic and math (see :mod:`trainer.rules`).

Entry points are the callables a ``TorchFunctionMode`` receives, found by experiment: ``x + y``
and ``1 + x`` arrive as ``Tensor.add`` (``Tensor.__add__``/``__radd__`` never do), ``x * y``
as ``Tensor.mul``, ``x / y`` as ``Tensor.div``, ``-x`` as ``Tensor.neg``, ``abs(x)`` as
``Tensor.abs``; ``2 - x``, ``2 / x``, ``x ** 2`` and ``2 ** x`` as the Python-level
``Tensor.__rsub__``, ``Tensor.__rdiv__`` (= ``__rtruediv__``), ``Tensor.__pow__`` and
``Tensor.__rpow__``. In-place forms (``add_``, ``x += y``) run the rule and copy the result
back (:func:`in_place`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from trainer import functional as F
from trainer.functional import arithmetic, selection, unary
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

_OPERANDS = (Tensor, bool, int, float, complex)


# -- adapters: torch entry points whose arguments differ from the functional's ---------------

def sub_reflected(input, other):
    """``Tensor.__rsub__(self, other)``: ``other - self``."""
    if not isinstance(other, _OPERANDS):
        return NotImplemented
    return F.sub(other, input)


def rsub_from_torch(input, other, *, alpha=1):
    """``torch.rsub(input, other, alpha=1)``: ``other - alpha * input``."""
    return F.sub(other, input, alpha=alpha)


def div_from_torch(input, other, *, rounding_mode=None):
    """``torch.div``/``divide`` and their methods: true division only; a ``rounding_mode``
    is another op, left to torch."""
    if rounding_mode is not None:
        return NotImplemented
    return F.div(input, other)


def div_reflected(input, other):
    """``Tensor.__rdiv__``/``__rtruediv__(self, other)``: ``other / self``."""
    if not isinstance(other, _OPERANDS):
        return NotImplemented
    return F.div(other, input)


def pow_reflected(input, other):
    """``Tensor.__rpow__(self, other)``: ``other ** self``."""
    if not isinstance(other, _OPERANDS):
        return NotImplemented
    return F.pow(other, input)


def square_from_torch(input):
    """``torch.square(input)``: ``input ** 2``, as torch itself computes it."""
    return F.pow(input, 2)


def clamp_min_from_torch(input, min):  # noqa: A002 - torch's name
    """``torch.clamp_min(input, min)``: a clamp with no upper bound."""
    return F.clamp(input, min, None)


def clamp_max_from_torch(input, max):  # noqa: A002 - torch's name
    """``torch.clamp_max(input, max)``: a clamp with no lower bound."""
    return F.clamp(input, None, max)


def where_from_torch(condition, input=None, other=None):
    """``torch.where(condition, input, other)``; ``torch.where(condition)`` alone is
    ``nonzero``, left to torch."""
    if input is None or other is None:
        return NotImplemented
    return F.where(condition, input, other)


def where_from_tensor(input, condition, other):
    """``Tensor.where(condition, other)``: ``torch.where(condition, self, other)``."""
    return F.where(condition, input, other)


# -- examples ----------------------------------------------------------------------------------
# The standard checks vmap over the first differentiable input scaled by 1, −0.5 and 2, so
# an input that must stay away from 0 is kept so by its magnitude, whatever its sign.

def _away_from_zero(*shape: int, grad: bool = True) -> Tensor:
    t = x(*shape, grad=False)
    return (t.abs() + 0.5).copysign(t).requires_grad_(grad)


def _positive(*shape: int, grad: bool = True) -> Tensor:
    return (x(*shape, grad=False).abs() + 0.5).requires_grad_(grad)


def _negative(*shape: int) -> Tensor:
    return (-x(*shape, grad=False).abs() - 0.5).requires_grad_()


def _mask(*shape: int) -> Tensor:
    return x(*shape, grad=False) > 0


def _add_or_sub(alpha: float):
    def examples() -> list[Example]:
        return [Example((x(3, 4), x(3, 4))),
                Example((x(3, 1), x(4)), {"alpha": alpha}, "both broadcast, alpha"),
                Example((x(3, 4), 2.5), label="number other"),
                Example((x(2, 3), x()), label="0-d other")]
    return examples


def _mul() -> list[Example]:
    return [Example((x(3, 4), x(3, 4))),
            Example((x(3, 1), x(4)), label="both broadcast"),
            Example((x(3, 4), 2.5), label="number other"),
            Example((x(2, 3), x()), label="0-d other")]


def _div() -> list[Example]:
    return [Example((x(3, 4), _away_from_zero(3, 4))),
            Example((x(3, 1), _away_from_zero(4)), label="both broadcast"),
            Example((x(3, 4), 2.5), label="number other"),
            Example((2.5, _away_from_zero(3, 4)), label="number input"),
            Example((x(2, 3), _away_from_zero()), label="0-d other")]


def _pow() -> list[Example]:
    t = x(4, grad=False)  # integers, never 0: (−b)ᵉ stays real, and e = 0 is a kink of ∂b
    integral = t.abs().ceil().copysign(t).requires_grad_()
    return [Example((x(3, 4), 3), label="number exponent"),
            Example((2.5, x(3, 4)), label="number base"),
            Example((_positive(3, 1), integral), label="both broadcast"),
            Example((_positive(2, 3, grad=False), x()), label="0-d exponent"),
            Example((_positive(3, 4), 0.5), label="fractional number exponent"),
            Example((_positive(3, 1), x(4)), label="both broadcast, real exponents")]


def _unary(make):
    return lambda: [Example((make(3, 4),)), Example((make(2, 3, 2),))]


def _clamp() -> list[Example]:
    return [Example((x(3, 4), -0.5, 0.5), label="number bounds"),
            Example((x(3, 4),), {"min": -0.3}, "min only"),
            Example((x(3, 4),), {"max": 0.2}, "max only"),
            Example((x(3, 4), _negative(4), _positive(3, 1)), label="tensor bounds")]


def _extremum() -> list[Example]:
    return [Example((x(3, 4), x(3, 4))),
            Example((x(3, 1), x(4)), label="both broadcast"),
            Example((x(2, 3), x()), label="0-d other")]


def _where() -> list[Example]:
    return [Example((_mask(3, 4), x(3, 4), x(3, 4))),
            Example((_mask(3, 4), x(4), x(3, 1)), label="all broadcast"),
            Example((_mask(3, 1), x(3, 4), 0.5), label="number other")]


def _masked_fill() -> list[Example]:
    return [Example((x(3, 4), _mask(3, 4), 0.5)),
            Example((x(3, 4), _mask(4), x()), label="0-d value"),
            Example((x(4), _mask(3, 4), -1.0), label="mask broadcasts the input")]


RULES: tuple[Rule, ...] = (
    Rule(name="add", function=arithmetic.Add,
         stands_for=("torch.add", "torch.Tensor.add"),
         twins=(),
         grads=("input: Σ_broadcast g", "other: Σ_broadcast α·g"),
         saves="nothing: only the operands' shapes and dtypes",
         examples=_add_or_sub(2.0)),
    Rule(name="sub", function=arithmetic.Sub,
         stands_for=("torch.sub", "torch.Tensor.sub", "torch.subtract",
                     "torch.Tensor.subtract", "torch.rsub", "torch.Tensor.__rsub__"),
         adapters={"torch.rsub": rsub_from_torch, "torch.Tensor.__rsub__": sub_reflected},
         twins=(),
         grads=("input: Σ_broadcast g", "other: −Σ_broadcast α·g"),
         saves="nothing: only the operands' shapes and dtypes",
         examples=_add_or_sub(-0.5)),
    Rule(name="mul", function=arithmetic.Mul,
         stands_for=("torch.mul", "torch.Tensor.mul", "torch.multiply",
                     "torch.Tensor.multiply"),
         twins=(),
         grads=("input: Σ_broadcast g·b̄", "other: Σ_broadcast g·ā"),
         saves="the other operand for each side, only when that side needs a gradient",
         examples=_mul),
    Rule(name="div", function=arithmetic.Div,
         stands_for=("torch.div", "torch.Tensor.div", "torch.divide", "torch.Tensor.divide",
                     "torch.true_divide", "torch.Tensor.true_divide",
                     "torch.Tensor.__rdiv__", "torch.Tensor.__rtruediv__"),  # one object
         adapters={"torch.div": div_from_torch, "torch.Tensor.div": div_from_torch,
                   "torch.divide": div_from_torch, "torch.Tensor.divide": div_from_torch,
                   "torch.Tensor.__rdiv__": div_reflected,
                   "torch.Tensor.__rtruediv__": div_reflected},
         twins=(),
         grads=("input: Σ_broadcast g / b̄", "other: −Σ_broadcast g·conj(a/b/b)"),
         saves="b for either gradient, a only for ∂b; not y (broadcast, maybe larger than a)",
         examples=_div),
    Rule(name="neg", function=arithmetic.Neg,
         stands_for=("torch.neg", "torch.Tensor.neg", "torch.negative",
                     "torch.Tensor.negative"),
         twins=(),
         grads=("input: −g",),
         saves="nothing: the derivative is the constant −1",
         examples=_unary(x)),
    Rule(name="pow", function=arithmetic.Pow,
         stands_for=("torch.pow", "torch.Tensor.pow", "torch.Tensor.__pow__",
                     "torch.Tensor.__rpow__", "torch.square", "torch.Tensor.square"),
         adapters={"torch.Tensor.__rpow__": pow_reflected,
                   "torch.square": square_from_torch, "torch.Tensor.square": square_from_torch},
         twins=(),
         grads=("input: Σ_broadcast g·e·b^(e−1)  (0 where e = 0)",
                "exponent: Σ_broadcast g·y·ln b  (0 where b = 0 and e ≥ 0)"),
         saves="b (and a tensor e) for ∂b; y, b and e for ∂e; a number base: y (and e at 0)",
         examples=_pow),
    Rule(name="reciprocal", function=unary.Reciprocal,
         stands_for=("torch.reciprocal", "torch.Tensor.reciprocal"),
         twins=(),
         grads=("input: −g·ȳ²",),
         saves="y: the derivative −y² is a function of y alone",
         examples=_unary(_away_from_zero)),
    Rule(name="exp", function=unary.Exp,
         stands_for=("torch.exp", "torch.Tensor.exp"),
         twins=(),
         grads=("input: g·ȳ",),
         saves="y: exp′ = exp",
         examples=_unary(x)),
    Rule(name="log", function=unary.Log,
         stands_for=("torch.log", "torch.Tensor.log"),
         twins=(),
         grads=("input: g / x̄",),
         saves="x: 1/x",
         examples=_unary(_positive)),
    Rule(name="sqrt", function=unary.Sqrt,
         stands_for=("torch.sqrt", "torch.Tensor.sqrt"),
         twins=(),
         grads=("input: g / (2ȳ)",),
         saves="y: the derivative 1/(2√x) is a function of y alone",
         examples=_unary(_positive)),
    Rule(name="rsqrt", function=unary.Rsqrt,
         stands_for=("torch.rsqrt", "torch.Tensor.rsqrt"),
         twins=(),
         grads=("input: −½ g·ȳ³",),
         saves="y: the derivative −½y³ is a function of y alone",
         examples=_unary(_positive)),
    Rule(name="abs", function=unary.Abs,
         stands_for=("torch.abs", "torch.Tensor.abs", "torch.absolute",
                     "torch.Tensor.absolute"),
         twins=(),
         grads=("input: g·sgn(x)",),
         saves="sgn(x) as int8 for real x (1 byte per element); x itself for complex x",
         examples=_unary(_away_from_zero)),
    Rule(name="sin", function=unary.Sin,
         stands_for=("torch.sin", "torch.Tensor.sin"),
         twins=(),
         grads=("input: g·conj(cos x)",),
         saves="x: cos x is not a function of sin x",
         examples=_unary(x)),
    Rule(name="cos", function=unary.Cos,
         stands_for=("torch.cos", "torch.Tensor.cos"),
         twins=(),
         grads=("input: −g·conj(sin x)",),
         saves="x: sin x is not a function of cos x",
         examples=_unary(x)),
    Rule(name="clamp", function=selection.Clamp,
         stands_for=("torch.clamp", "torch.Tensor.clamp", "torch.clip", "torch.Tensor.clip",
                     "torch.clamp_min", "torch.Tensor.clamp_min", "torch.clamp_max",
                     "torch.Tensor.clamp_max"),
         adapters={"torch.clamp_min": clamp_min_from_torch,
                   "torch.Tensor.clamp_min": clamp_min_from_torch,
                   "torch.clamp_max": clamp_max_from_torch,
                   "torch.Tensor.clamp_max": clamp_max_from_torch},
         twins=(),
         grads=("input: Σ_broadcast g·[lo ≤ x ≤ hi]  (g passes at the bounds)",
                "min: Σ_broadcast g·[x < lo]·[lo < hi]",
                "max: Σ_broadcast g·([x > hi] ∨ [hi < lo])"),
         saves="a bool mask per operand that needs a gradient, not x nor the bounds",
         examples=_clamp),
    Rule(name="maximum", function=selection.Maximum,
         stands_for=("torch.maximum", "torch.Tensor.maximum"),
         twins=(),
         grads=("input: Σ_broadcast h·[¬(a < b)],  h = where(a = b, g/2, g)",
                "other: Σ_broadcast h·[¬(a > b)]"),
         saves="bool masks [a = b] and where each operand needing a gradient loses",
         examples=_extremum),
    Rule(name="minimum", function=selection.Minimum,
         stands_for=("torch.minimum", "torch.Tensor.minimum"),
         twins=(),
         grads=("input: Σ_broadcast h·[¬(a > b)],  h = where(a = b, g/2, g)",
                "other: Σ_broadcast h·[¬(a < b)]"),
         saves="bool masks [a = b] and where each operand needing a gradient loses",
         examples=_extremum),
    Rule(name="where", function=selection.Where,
         stands_for=("torch.where", "torch.Tensor.where"),
         adapters={"torch.where": where_from_torch, "torch.Tensor.where": where_from_tensor},
         twins=(),
         grads=("input: Σ_broadcast g·[c]", "other: Σ_broadcast g·[¬c]"),
         saves="the condition c (the caller's tensor, no copy)",
         examples=_where),
    Rule(name="masked_fill", function=selection.MaskedFill,
         stands_for=("torch.masked_fill", "torch.Tensor.masked_fill"),
         twins=(),
         grads=("input: Σ_broadcast g·[¬m]", "value: Σ_all g·[m]"),
         saves="the mask m (the caller's tensor, no copy)",
         examples=_masked_fill),
)


# -- in-place forms ---------------------------------------------------------------------------

#: The ops whose in-place method (``x.add_(y)``, and so ``x += y``) the rules also take.
IN_PLACE = ("add", "sub", "mul", "div", "neg", "pow", "reciprocal", "exp", "log", "sqrt",
            "rsqrt", "abs", "sin", "cos", "clamp", "masked_fill")


def in_place(call):
    """``x.op_(...)`` as ``x.copy_(op(x, ...))``: the rule out of place, then the result
    copied into x, whose views see it as they would. The copy's backward only moves gradient
    entries (a shape op, counted as moved). Where no gradient is recorded, or where torch
    would refuse the in-place form (a result of another dtype or shape than x), the call is
    left to torch's in-place kernel."""
    def adapter(input, *args, **kwargs):
        tensors = [t for t in (input, *args, *kwargs.values()) if isinstance(t, Tensor)]
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
            return NotImplemented
        result = call(input, *args, **kwargs)
        if (result is NotImplemented or result.shape != input.shape
                or not torch.can_cast(result.dtype, input.dtype)):
            return NotImplemented
        return input.copy_(result)

    return adapter


def _with_in_place(rule: Rule) -> Rule:
    if rule.name not in IN_PLACE:
        return rule
    method = f"torch.Tensor.{rule.name}_"
    call = rule.adapters.get(f"torch.Tensor.{rule.name}", rule.functional)
    return replace(rule, stands_for=(*rule.stands_for, method),
                   adapters={**rule.adapters, method: in_place(call)})


RULES = tuple(map(_with_in_place, RULES))
