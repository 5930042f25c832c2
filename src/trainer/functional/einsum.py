"""einsum, decomposed into explicit products: its gradient for each operand is an einsum of g
and every other operand into that operand's subscripts (see :class:`Einsum`), the same one idea
as the matrix products of :mod:`trainer.functional.matmul`.
"""

from __future__ import annotations

import functools
import string

import torch
from torch import Tensor

from ._util import Function, fail, shape_str, sum_to_shape, to_dtype
from .matmul import _check_tensors, _conj

__all__ = ["einsum"]

class Einsum(Function):
    r"""y[out] = Σ_{labels not in out} Π_i x_i[s_i],   e.g. 'bij,bjk->bik': y = Σ_j a b

    s_i: operand i's subscripts, out: the output's. The equation reaching forward is already
    canonical (einsum() rewrites it): every ellipsis spelled out as letters of its own, and the
    output written explicitly (torch's implicit output: the ellipsis dims, then the subscripts
    that occur once, in alphabetical order, capitals first). A subscript of size 1 in one
    operand broadcasts against its size in the others, as in torch.

    Backward, with g = ∂L/∂y (its subscripts are out): y is linear in each operand, so
        ∂L/∂x_i = einsum('out, s_1, …(all but s_i)…, s_n -> t_i', g, x̄_1, …, x̄_n)
    (x̄: conjugate; plain for real ones), where t_i is s_i less the subscripts that occur in
    x_i alone (neither in out nor in another operand): y holds x_i only through its sum over
    those, so ∂L/∂x_i is constant along them, and the einsum's result is expanded along them
    (a view), as along a dim of x_i that meets only size 1 in the others. Dims where x_i has
    size 1 against a larger size elsewhere are summed back to 1.
    E.g. 'ij,jk->ik': ∂a = einsum('ik,jk->ij', g, b) = g bᵀ;  'ij->': ∂a = g expanded to a.

    Refused (the functional raises; under trainer.explicit() such a torch.einsum call runs
    natively and is counted as a fallback): a subscript repeated within one operand (a
    diagonal or trace, 'ii->i', 'ii'), whose gradient is a scatter onto the diagonal, not a
    product. The sublist format (operand, [0, 1], ...) is refused by the functional too; under
    trainer.explicit() it still reaches this rule, as torch.einsum turns it into an equation
    before the mode sees the call.

    Saves: each operand only when another operand needs a gradient (∂L/∂x_i needs all x_j,
    j ≠ i, and never x_i itself). Where an operand's subscripts are summed out before any
    product, torch's own einsum saves that smaller sum instead; saving the sum here would cut
    the graph between it and the operand, so double backward would be wrong.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(equation: str, *operands: Tensor) -> Tensor:
        return torch.einsum(equation, *operands)

    @staticmethod
    def setup_context(ctx, inputs, output):
        equation, *operands = inputs
        needs = ctx.needs_input_grad[1:]
        kept = [x if any(need for j, need in enumerate(needs) if j != i) else None
                for i, x in enumerate(operands)]
        ctx.save_for_backward(*kept)
        ctx.equation = equation
        ctx.shapes = [x.shape for x in operands]
        ctx.dtypes = [x.dtype for x in operands]

    @staticmethod
    def backward(ctx, g: Tensor):
        operands = [_conj(to_dtype(x, g.dtype)) if x is not None else None
                    for x in ctx.saved_tensors]
        inputs, out = ctx.equation.split("->")
        subscripts = inputs.split(",")
        grads = [None]
        for i, need in enumerate(ctx.needs_input_grad[1:]):
            grads.append(_einsum_grad(g, out, subscripts, operands, i, ctx.shapes, ctx.dtypes)
                         if need else None)
        return tuple(grads)


def _einsum_grad(g: Tensor, out: str, subscripts: list[str], operands: list[Tensor | None],
                 i: int, shapes: list[torch.Size], dtypes: list[torch.dtype]) -> Tensor:
    """∂L/∂x_i: g and every other operand, contracted into x_i's subscripts (see Einsum)."""
    others = [j for j in range(len(subscripts)) if j != i]
    seen = set(out).union(*(subscripts[j] for j in others))
    own = subscripts[i]
    kept = "".join(label for label in own if label in seen)
    equation = ",".join([out, *(subscripts[j] for j in others)]) + "->" + kept
    grad = torch.einsum(equation, g, *(operands[j] for j in others))
    shape = shapes[i]
    if kept != own:  # the subscripts only x_i has, as unit dims
        sizes = iter(grad.shape)
        grad = grad.reshape([next(sizes) if label in seen else 1 for label in own])
    if any(d == 1 and s != 1 for d, s in zip(grad.shape, shape)):
        # constant along them, and along x_i's dims that meet only size 1 elsewhere: expand
        grad = grad.expand([s if d == 1 else -1 for d, s in zip(grad.shape, shape)])
    return to_dtype(sum_to_shape(grad, shape), dtypes[i])  # x_i's own size-1 dims: summed


_LABELS = string.ascii_uppercase + string.ascii_lowercase  # torch numbers them in this order


def diagonal_subscripts(equation: str) -> bool:
    """Whether an einsum equation repeats a subscript within one operand ('ii->i'), the form
    :func:`einsum` refuses."""
    terms = equation.split("->")[0].replace(" ", "").replace("...", "").split(",")
    return any(len(set(term)) != len(term) for term in terms)


def _canonical(equation: str, ranks: tuple[int, ...]) -> tuple[tuple[str, ...], str]:
    """('...ij,jk', (3, 2)) -> (('Aij', 'jk'), 'Aik'): each operand's subscripts with the
    ellipsis spelled out (right-aligned across operands, as broadcasting aligns dims), and the
    explicit output. Raises a ShapeError naming what is wrong."""
    text = equation.replace(" ", "")
    if text.count("->") > 1:
        raise fail("einsum", "at most one '->' in the equation", repr(equation))
    left, arrow, right = text.partition("->")
    terms = left.split(",")
    if len(terms) != len(ranks):
        raise fail("einsum", f"{len(terms)} operand(s) for {equation!r}", f"{len(ranks)}")
    for term in (*terms, right):
        letters = term.replace("...", "", 1)
        bad = next((c for c in letters if c not in _LABELS), None)
        if bad is not None:
            raise fail("einsum", "subscripts in [a-zA-Z] and at most one '...' per operand",
                       f"{bad!r} in {equation!r}")
    for k, term in enumerate(terms):
        if len(set(term.replace("...", ""))) != len(term.replace("...", "")):
            raise fail("einsum", "each subscript at most once per operand (a diagonal such as "
                       "'ii->i' is not taken: torch.einsum runs it natively under "
                       "trainer.explicit())", f"{term!r} for operand {k} in {equation!r}")
    spans = []  # how many dims each operand's ellipsis covers
    for k, (term, rank) in enumerate(zip(terms, ranks)):
        named = len(term) - 3 if "..." in term else len(term)
        if rank < named or ("..." not in term and rank != named):
            raise fail("einsum", f"operand {k} with {'at least ' if '...' in term else ''}"
                       f"{named} dim(s) for subscripts {term!r}", f"{rank} dim(s)")
        spans.append(rank - named if "..." in term else 0)
    free = [c for c in _LABELS if c not in text]
    if max(spans, default=0) > len(free):
        raise fail("einsum", "at most 52 distinct subscripts, the ellipsis's dims included",
                   repr(equation))
    ellipsis = "".join(free[:max(spans, default=0)])
    spelled = tuple(term.replace("...", ellipsis[len(ellipsis) - span:])
                    for term, span in zip(terms, spans))
    if arrow:
        out = right.replace("...", ellipsis)
        for label in out:
            if out.count(label) > 1 or not any(label in term for term in spelled):
                raise fail("einsum", "output subscripts that occur once and in some operand",
                           f"{label!r} in {equation!r}")
    else:
        once = sorted(c for c in set(left) if c in _LABELS and left.count(c) == 1)
        out = ellipsis + "".join(once)
    return spelled, out


_canonical_cached = functools.lru_cache(maxsize=256)(_canonical)  # eager calls; dynamo traces


def einsum(equation: str, *operands: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.einsum` with an equation string (the operands may also
    come as one list, as torch takes them). Refused: a subscript repeated within one operand,
    and the sublist format; see :class:`Einsum`."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise fail("einsum", "an equation string first (the sublist format is not taken)",
                   f"{type(equation).__name__}")
    for k, x in enumerate(operands):
        _check_tensors("einsum", **{f"operand {k}": x})
    parse = _canonical if torch.compiler.is_compiling() else _canonical_cached
    terms, out = parse(equation, tuple(x.dim() for x in operands))
    sizes: dict[str, tuple[int, int]] = {}  # label -> (size, operand that set it)
    for k, (term, x) in enumerate(zip(terms, operands)):
        for label, size in zip(term, x.shape):
            seen, where = sizes.get(label, (1, k))
            if seen != size and size != 1 and seen != 1:
                raise fail("einsum", f"sizes that match or are 1 for each subscript in "
                           f"{equation!r}", f"operand {where} {shape_str(operands[where])} and "
                           f"operand {k} {shape_str(x)}")
            if size != 1 or label not in sizes:
                sizes[label] = (size, k)
    return Einsum.apply(",".join(terms) + "->" + out, *operands)
