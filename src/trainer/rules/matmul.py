"""The table of rules, section: matrix products (see :mod:`trainer.rules`).

The entry points, as a TorchFunctionMode receives them (checked by experiment, torch 2.13):
``x @ w`` arrives as ``Tensor.matmul`` (``Tensor.__matmul__`` is that same C method under its
operator name), ``w.__rmatmul__(x)`` as ``Tensor.__rmatmul__`` with the operands swapped,
``torch.einsum`` is ``torch.functional.einsum`` (one object), and a sublist-format einsum
arrives already turned into an equation string.
"""

from __future__ import annotations

from numbers import Number

from torch import Tensor

from trainer import functional as F
from trainer.functional.einsum import Einsum, diagonal_subscripts
from trainer.functional.matmul import Addmm, Baddbmm, Bmm, Matmul, Mm
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

# -- adapters: torch's calls of these entry points -> the rule, or NotImplemented (native) ----


def _tensors(*values: object) -> bool:
    return all(isinstance(v, Tensor) for v in values)


def matmul_from_torch(input, other, *rest, **options):
    """``torch.matmul``, ``Tensor.matmul``, ``x @ w``: a non-tensor operand (``x @ 2``) is
    left to torch, whose TypeError lets Python try the reflected operator."""
    if rest or options or not _tensors(input, other):
        return NotImplemented
    return F.matmul(input, other)


def rmatmul_from_torch(self, other, *rest, **options):
    """``Tensor.__rmatmul__(self, other)`` is ``other @ self``."""
    if rest or options or not _tensors(self, other):
        return NotImplemented
    return F.matmul(other, self)


def mm_from_torch(input, mat2, *rest, **options):
    """``torch.mm``, ``Tensor.mm``: the ``out_dtype`` overload is left to torch."""
    if rest or options or not _tensors(input, mat2):
        return NotImplemented
    return F.mm(input, mat2)


def bmm_from_torch(input, mat2, *rest, **options):
    """``torch.bmm``, ``Tensor.bmm``: the ``out_dtype`` overload is left to torch."""
    if rest or options or not _tensors(input, mat2):
        return NotImplemented
    return F.bmm(input, mat2)


def _add_product_call(args: tuple, options: dict) -> bool:
    """(input, a, b, *, beta, alpha) with numbers for beta and alpha: not the deprecated
    ``addmm(beta, input, alpha, mat1, mat2)`` forms, ``out_dtype``, nor tensor scalars."""
    return (len(args) == 3 and _tensors(*args) and set(options) <= {"beta", "alpha"}
            and all(isinstance(v, Number) for v in options.values()))


def addmm_from_torch(*args, **options):
    """``torch.addmm``, ``Tensor.addmm``; other overloads are left to torch."""
    return F.addmm(*args, **options) if _add_product_call(args, options) else NotImplemented


def baddbmm_from_torch(*args, **options):
    """``torch.baddbmm``, ``Tensor.baddbmm``; other overloads are left to torch."""
    return F.baddbmm(*args, **options) if _add_product_call(args, options) else NotImplemented


def einsum_from_torch(equation, *operands, **options):
    """``torch.einsum``: a subscript repeated within one operand (a diagonal, 'ii->i') is left
    to torch, as is anything but an equation string and tensors (or one list of them)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if (options or not isinstance(equation, str) or not _tensors(*operands)
            or diagonal_subscripts(equation)):
        return NotImplemented
    return F.einsum(equation, *operands)


# -- examples ---------------------------------------------------------------------------------

def matmul_examples() -> list[Example]:
    return [Example((x(3), x(3)), label="1-D · 1-D (dot)"),
            Example((x(2, 3), x(3)), label="2-D · 1-D"),
            Example((x(3), x(3, 2)), label="1-D · 2-D"),
            Example((x(2, 2, 3), x(3, 4)), label="3-D · 2-D (one matrix for the batch)"),
            Example((x(2, 3), x(2, 3, 2)), label="2-D · 3-D"),
            Example((x(2, 3, 2), x(2)), label="3-D · 1-D"),
            Example((x(3), x(2, 3, 2)), label="1-D · 3-D"),
            Example((x(2, 1, 2, 3), x(3, 3, 2)), label="broadcast batch dims"),
            Example((x(4), x(2, 2, 4, 3)), label="1-D · 4-D"),
            Example((x(2, 2, 3), x(2, 3, 4)), label="3-D · 3-D"),
            Example((x(1, 2, 3), x(4, 1, 3, 2)), label="ranks differ, both broadcast")]


def mm_examples() -> list[Example]:
    return [Example((x(3, 4), x(4, 2)))]


def bmm_examples() -> list[Example]:
    return [Example((x(2, 3, 4), x(2, 4, 2)))]


def addmm_examples() -> list[Example]:
    return [Example((x(2, 4), x(2, 3), x(3, 4))),
            Example((x(4), x(2, 3), x(3, 4)), {"beta": 0.5, "alpha": 2.0}, "row input"),
            Example((x(2, 1), x(2, 3), x(3, 4)), {"beta": 0, "alpha": -1.5}, "beta=0"),
            Example((x(4), x(2, 3), x(3, 4)), {"beta": 0.5, "alpha": -2.0}, "negative alpha")]


def baddbmm_examples() -> list[Example]:
    return [Example((x(2, 3, 4), x(2, 3, 2), x(2, 2, 4))),
            Example((x(3, 4), x(2, 3, 2), x(2, 2, 4)), {"beta": 0.5, "alpha": 2.0},
                    "input broadcast over the batch"),
            Example((x(3, 1), x(2, 3, 2), x(2, 2, 1)), {"beta": 0, "alpha": 3.0},
                    "beta=0, input broadcast")]


def einsum_examples() -> list[Example]:
    return [Example(("bij,bjk->bik", x(2, 2, 3), x(2, 3, 2))),
            Example(("ij,jk,kl->il", x(2, 3), x(3, 4), x(4, 2)), label="three operands"),
            Example(("...ij,...jk", x(2, 2, 3), x(3, 2)), label="ellipsis, implicit output"),
            Example(("ij->ji", x(2, 3)), label="transpose"),
            Example(("ij,jk", x(2, 3), x(3, 4)), label="implicit output"),
            Example(("ijk->j", x(2, 3, 4)), label="sums over labels only it has"),
            Example(("bn,anm,bm->ba", x(2, 3), x(4, 3, 2), x(2, 2)), label="bilinear"),
            Example(("...ij,...jk->...ik", x(2, 1, 2, 3), x(4, 3, 2)),
                    label="ellipsis dims broadcast")]
    # (no size-1 subscript broadcast, 'ij,jk->ik' on (2, 1), (3, 4): torch saves the smaller
    # sum there, which einsum.py says it must not; tests/functional/test_matmul.py)


RULES: tuple[Rule, ...] = (
    Rule(name="matmul", function=Matmul,
         stands_for=("torch.matmul", "torch.Tensor.matmul", "torch.Tensor.__matmul__",
                     "torch.Tensor.__rmatmul__"),
         adapters={"torch.matmul": matmul_from_torch,
                   "torch.Tensor.matmul": matmul_from_torch,
                   "torch.Tensor.__matmul__": matmul_from_torch,
                   "torch.Tensor.__rmatmul__": rmatmul_from_torch},
         twins=(),
         grads=("input: g otherᴴ  (a vector as a 1-row matrix; summed over broadcast dims)",
                "other: inputᴴ g  (a vector as a 1-column matrix; summed over broadcast dims)"),
         saves="each operand only when the other needs a gradient",
         examples=matmul_examples),
    Rule(name="mm", function=Mm,
         stands_for=("torch.mm", "torch.Tensor.mm"),
         adapters={"torch.mm": mm_from_torch, "torch.Tensor.mm": mm_from_torch},
         twins=(),
         grads=("input: g.mm(mat2ᴴ)", "mat2: inputᴴ.mm(g)"),
         saves="each operand only when the other needs a gradient",
         examples=mm_examples),
    Rule(name="bmm", function=Bmm,
         stands_for=("torch.bmm", "torch.Tensor.bmm"),
         adapters={"torch.bmm": bmm_from_torch, "torch.Tensor.bmm": bmm_from_torch},
         twins=(),
         grads=("input: g.bmm(mat2ᴴ)", "mat2: inputᴴ.bmm(g)"),
         saves="each operand only when the other needs a gradient",
         examples=bmm_examples),
    Rule(name="addmm", function=Addmm,
         stands_for=("torch.addmm", "torch.Tensor.addmm"),
         adapters={"torch.addmm": addmm_from_torch, "torch.Tensor.addmm": addmm_from_torch},
         twins=(),
         grads=("input: β̅ g  (summed to input's shape)", "mat1: α̅ g mat2ᴴ",
                "mat2: α̅ mat1ᴴ g"),
         saves="mat1 and mat2, each only when the other needs a gradient; never input",
         examples=addmm_examples),
    Rule(name="baddbmm", function=Baddbmm,
         stands_for=("torch.baddbmm", "torch.Tensor.baddbmm"),
         adapters={"torch.baddbmm": baddbmm_from_torch,
                   "torch.Tensor.baddbmm": baddbmm_from_torch},
         twins=(),
         grads=("input: β̅ g  (summed to input's shape)", "batch1: α̅ g.bmm(batch2ᴴ)",
                "batch2: α̅ batch1ᴴ.bmm(g)"),
         saves="batch1 and batch2, each only when the other needs a gradient; never input",
         examples=baddbmm_examples),
    Rule(name="einsum", function=Einsum,
         stands_for=("torch.einsum",),  # torch.functional.einsum is the same object
         adapters={"torch.einsum": einsum_from_torch},
         twins=(),
         grads=("operands[i]: einsum of g and every other operand into operand i's subscripts "
                "(expanded along those only it has)",),
         saves="each operand only when another operand needs a gradient",
         examples=einsum_examples),
)
