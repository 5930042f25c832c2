"""matmul, mm, bmm, addmm, baddbmm, einsum: what the standard checks (tests/test_rule_checks.py)
do not cover: every rank combination, broadcasting, beta=0, einsum's equation forms, error
messages, and each torch entry point routed to its rule under trainer.explicit()."""

from __future__ import annotations

import warnings

import pytest
import torch

import trainer
import trainer.functional as F
from trainer import testing


def t(*shape: int, dtype: torch.dtype = torch.float64, grad: bool = True) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype).requires_grad_(grad)


# -- matmul: every rank combination --------------------------------------------------------

RANKS = [  # (input shape, other shape)
    ((3,), (3,)),                  # dot
    ((2, 3), (3,)),                # matrix · vector
    ((3,), (3, 2)),                # vector · matrix
    ((2, 3), (3, 4)),              # matrix · matrix
    ((2, 2, 3), (3, 4)),           # batch · matrix (folded)
    ((2, 3), (2, 3, 4)),           # matrix · batch
    ((2, 2, 3), (3,)),             # batch · vector
    ((3,), (2, 3, 2)),             # vector · batch
    ((4,), (2, 2, 4, 3)),          # vector · 4-D
    ((2, 2, 3, 4), (4,)),          # 4-D · vector
    ((2, 2, 3), (2, 3, 4)),        # batch · batch
    ((2, 1, 2, 3), (3, 3, 2)),     # broadcast batch dims, both ways
    ((1, 2, 3), (4, 1, 3, 2)),     # ranks differ and both broadcast
    ((0, 3), (3, 2)),              # empty rows
    ((2, 0), (0, 3)),              # empty inner dim
    ((2, 2, 0), (0, 3)),           # empty inner dim, folded
]


@pytest.mark.parametrize("shape_a, shape_b", RANKS)
def test_matmul_matches_torch_at_every_rank(shape_a, shape_b):
    a, b = t(*shape_a), t(*shape_b)
    testing.assert_matches_reference(F.matmul, torch.matmul, a, b)
    testing.assert_matches_reference(F.matmul, torch.matmul, testing.non_contiguous(a),
                                     testing.non_contiguous(b))


def test_broadcast_batch_dims_are_summed_back_to_each_operand():
    a, b = t(5, 1, 2, 3), t(4, 3, 2)
    y = F.matmul(a, b)
    assert y.shape == (5, 4, 2, 2)
    ga, gb = torch.autograd.grad(y, (a, b), torch.ones_like(y))
    assert ga.shape == a.shape and gb.shape == b.shape
    # each element of b meets all 5 batches of a; a's unit batch dim meets all 4 of b's
    ones = torch.ones(5, 4, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(gb, (a.detach().mT @ ones).sum(0))
    torch.testing.assert_close(ga, (ones @ b.detach().mT).sum(1, keepdim=True))


def test_one_matrix_for_a_batch_gets_its_gradient_from_one_mm():
    x, w = t(4, 5, 3, dtype=torch.float32), t(3, 2, dtype=torch.float32)
    counts = testing.backward_op_counts(F.matmul, x.detach(), w)
    assert counts.get("mm") == 1 and "bmm" not in counts, counts


def test_saves_each_operand_only_for_the_others_gradient():
    a, b = t(8, 4, dtype=torch.float32), t(4, 6, dtype=torch.float32)
    for op in (F.matmul, F.mm):
        assert testing.saved_bytes(lambda: op(a, b)) == a.nbytes + b.nbytes
        assert testing.saved_bytes(lambda: op(a, b.detach())) == b.nbytes
        assert testing.saved_bytes(lambda: op(a.detach(), b)) == a.nbytes
    c = t(8, 6, dtype=torch.float32)
    assert testing.saved_bytes(lambda: F.addmm(c, a.detach(), b.detach())) == 0
    assert testing.saved_bytes(lambda: F.addmm(c, a, b.detach())) == b.nbytes
    x, y, z = t(3, 4), t(4, 5), t(5, 2)
    assert testing.saved_bytes(lambda: F.einsum("ij,jk,kl->il", x, y.detach(), z.detach())) \
        == y.nbytes + z.nbytes
    assert testing.saved_bytes(lambda: F.einsum("ij->ji", x)) == 0


def test_complex_gradients_are_conjugated_as_torchs():
    def c(*shape):
        return torch.randn(shape, dtype=torch.complex128, requires_grad=True)

    testing.assert_matches_reference(F.matmul, torch.matmul, c(2, 2, 3), c(3, 4))
    testing.assert_matches_reference(
        lambda i, a, b: F.addmm(i, a, b, beta=0.5 - 1j, alpha=2j),
        lambda i, a, b: torch.addmm(i, a, b, beta=0.5 - 1j, alpha=2j), c(4), c(2, 3), c(3, 4))
    testing.assert_matches_reference(lambda a, b: F.einsum("ij,jk", a, b),
                                     lambda a, b: torch.einsum("ij,jk", a, b), c(2, 3), c(3, 2))


# -- mm, bmm, addmm, baddbmm ---------------------------------------------------------------

def test_mm_and_bmm_match_torch():
    testing.assert_matches_reference(F.mm, torch.mm, t(3, 4), t(4, 2))
    testing.assert_matches_reference(F.bmm, torch.bmm, t(2, 3, 4), t(2, 4, 2))
    testing.assert_matches_reference(F.mm, torch.mm, t(3, 4).mT, t(2, 3).mT)  # transposed


@pytest.mark.parametrize("input_shape", [(2, 4), (4,), (2, 1), (1, 1), ()])
@pytest.mark.parametrize("beta, alpha", [(1, 1), (0.5, 2.0), (0, -1.5), (2, 0)])
def test_addmm_broadcasts_input_and_scales(input_shape, beta, alpha):
    testing.assert_matches_reference(lambda i, a, b: F.addmm(i, a, b, beta=beta, alpha=alpha),
                                     lambda i, a, b: torch.addmm(i, a, b, beta=beta,
                                                                 alpha=alpha),
                                     t(*input_shape), t(2, 3), t(3, 4))


@pytest.mark.parametrize("input_shape", [(2, 3, 4), (3, 4), (2, 1, 4), (4,), ()])
@pytest.mark.parametrize("beta, alpha", [(1, 1), (0.5, 2.0), (0, -1.5)])
def test_baddbmm_broadcasts_input_and_scales(input_shape, beta, alpha):
    testing.assert_matches_reference(lambda i, a, b: F.baddbmm(i, a, b, beta=beta, alpha=alpha),
                                     lambda i, a, b: torch.baddbmm(i, a, b, beta=beta,
                                                                   alpha=alpha),
                                     t(*input_shape), t(2, 3, 2), t(2, 2, 4))


@pytest.mark.parametrize("op, torch_op, shapes", [
    (F.addmm, torch.addmm, ((2, 4), (2, 3), (3, 4))),
    (F.baddbmm, torch.baddbmm, ((2, 3, 4), (2, 3, 2), (2, 2, 4))),
])
def test_beta_zero_ignores_the_input_nan_included(op, torch_op, shapes):
    input = torch.full(shapes[0], float("nan"), dtype=torch.float64)
    input[..., 0] = float("inf")
    input.requires_grad_()
    a, b = t(*shapes[1]), t(*shapes[2])
    y = op(input, a, b, beta=0, alpha=2.0)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, 2.0 * (a @ b))
    testing.assert_matches_reference(lambda i, a, b: op(i, a, b, beta=0),
                                     lambda i, a, b: torch_op(i, a, b, beta=0), input, a, b)
    (grad,) = torch.autograd.grad(op(input, a, b, beta=0).sum(), input)
    assert grad.shape == input.shape and not grad.any()  # 0 · g, as torch: not None


# -- einsum ----------------------------------------------------------------------------------

EQUATIONS = [  # (equation, operand shapes)
    ("ij,jk", ((2, 3), (3, 4))),                     # implicit output
    ("bA,ba", ((2, 3), (2, 4))),                     # implicit: capitals sort first
    ("ij->ji", ((2, 3),)),                           # transpose
    ("ij->", ((2, 3),)),                             # sum of everything
    ("ijk->j", ((2, 3, 4),)),                        # sums over labels only it has
    ("i,i", ((3,), (3,))),                           # dot, implicit scalar
    ("ij,kl->ijkl", ((2, 3), (2, 2))),               # outer product
    ("bij,bjk->bik", ((2, 2, 3), (2, 3, 2))),
    ("ij,jk,kl->il", ((2, 3), (3, 4), (4, 2))),      # a contraction over 3 operands
    ("bn,anm,bm->ba", ((2, 3), (4, 3, 2), (2, 2))),  # bilinear, 3 operands
    ("...ij,...jk", ((2, 2, 3), (3, 2))),            # ellipsis, implicit output
    ("...ij,...jk->...ik", ((2, 1, 2, 3), (4, 3, 2))),  # ellipsis dims broadcast
    ("...ij,...jk->ik", ((2, 2, 3), (3, 4))),        # ellipsis summed when not in output
    ("i...,j...->ij...", ((2, 3), (4, 5, 3))),       # ellipses of different spans
    ("ij,jk->ik", ((2, 1), (3, 4))),                 # a size-1 subscript broadcasts
    ("ij,jk->ik", ((2, 3), (1, 4))),                 # ... on either side
    ("ij,ij->ij", ((2, 1), (1, 3))),                 # ... into the output
    (" ij , jk -> ik ", ((2, 3), (3, 4))),           # spaces, as torch takes them
    ("->", ((),)),
]


@pytest.mark.parametrize("equation, shapes", EQUATIONS, ids=[e for e, _ in EQUATIONS])
def test_einsum_matches_torch(equation, shapes):
    operands = [t(*shape) for shape in shapes]
    testing.assert_matches_reference(lambda *ops: F.einsum(equation, *ops),
                                     lambda *ops: torch.einsum(equation, *ops), *operands)


def test_einsum_gradcheck_and_gradgradcheck_with_a_size_1_subscript_broadcast():
    # no table example: torch's einsum saves the sum over j there, less than the operand this
    # rule keeps for double backward (the standard saves check would refuse it)
    equation, shapes = EQUATIONS[14]
    testing.assert_gradcheck(lambda *ops: F.einsum(equation, *ops),
                             *(t(*shape) for shape in shapes))


def test_einsum_takes_its_operands_as_one_list():
    a, b = t(2, 3), t(3, 4)
    torch.testing.assert_close(F.einsum("ij,jk", [a, b]), a @ b)


def test_einsum_refuses_a_diagonal_and_torch_runs_it_under_explicit():
    a = t(3, 3)
    with pytest.raises(F.ShapeError, match=r"einsum: expected each subscript at most once per "
                                           r"operand.*got 'ii' for operand 0"):
        F.einsum("ii->i", a)
    with trainer.explicit() as report:
        diagonal = torch.einsum("ii->i", a)
        trace = torch.einsum("ii", a)
    assert not report.explicit
    assert report.fallback == {"torch.functional.einsum": 2}
    torch.testing.assert_close(diagonal, a.diagonal())
    torch.testing.assert_close(trace, a.trace())


def test_einsum_sublist_format_refused_directly_routed_under_explicit():
    a, b = t(2, 3), t(3, 4)
    with pytest.raises(F.ShapeError, match="einsum: expected an equation string first"):
        F.einsum(a, [0, 1], b, [1, 2], [0, 2])
    with trainer.explicit() as report:  # torch.einsum writes the equation before dispatching
        y = torch.einsum(a, [0, 1], b, [1, 2], [0, 2])
    assert report.explicit == {"einsum": 1}
    torch.testing.assert_close(y, a @ b)


# -- error messages ------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: F.matmul(t(2, 3), t(4, 5)),
     r"matmul: expected input's last dim to equal other's second-to-last dim, "
     r"got input \(2, 3\) and other \(4, 5\)"),
    (lambda: F.matmul(t(3), t(4)),
     r"matmul: expected input's last dim to equal other's size, got input \(3\) and "
     r"other \(4\)"),
    (lambda: F.matmul(t(2, 2, 3), t(3, 3, 4)),
     r"matmul: expected batch dims that broadcast, got input \(2, 2, 3\) and other "
     r"\(3, 3, 4\)"),
    (lambda: F.matmul(t(), t(3)),
     r"matmul: expected operands of at least 1 dim, got input \(\) and other \(3\)"),
    (lambda: F.mm(t(2, 3), t(4, 5)),
     r"mm: expected input's last dim to equal mat2's second-to-last, got input \(2, 3\) and "
     r"mat2 \(4, 5\)"),
    (lambda: F.mm(t(2, 2, 3), t(3, 4)),
     r"mm: expected input and mat2 of shapes \(n, k\) and \(k, m\), got input \(2, 2, 3\)"),
    (lambda: F.bmm(t(2, 2, 3), t(3, 3, 4)),
     r"bmm: expected input and mat2 of the same batch size, got input \(2, 2, 3\) and mat2 "
     r"\(3, 3, 4\)"),
    (lambda: F.addmm(t(3), t(2, 3), t(3, 4)),
     r"addmm: expected input that broadcasts to \(2, 4\), got input \(3\) for mat1 \(2, 3\) "
     r"and mat2 \(3, 4\)"),
    (lambda: F.addmm(t(4), t(2, 3), t(2, 4)),
     r"addmm: expected mat1's last dim to equal mat2's second-to-last, got mat1 \(2, 3\) and "
     r"mat2 \(2, 4\)"),
    (lambda: F.baddbmm(t(2, 3, 4), t(2, 3, 2), t(3, 2, 4)),
     r"baddbmm: expected batch1 and batch2 of the same batch size, got batch1 \(2, 3, 2\) "
     r"and batch2 \(3, 2, 4\)"),
    (lambda: F.einsum("ij,jk->ik", t(2, 3), t(4, 5)),
     r"einsum: expected sizes that match or are 1 for each subscript in 'ij,jk->ik', "
     r"got operand 0 \(2, 3\) and operand 1 \(4, 5\)"),
    (lambda: F.einsum("ij,jk", t(2, 3)), r"einsum: expected 2 operand\(s\) for 'ij,jk', got 1"),
    (lambda: F.einsum("ijk", t(2, 3)),
     r"einsum: expected operand 0 with 3 dim\(s\) for subscripts 'ijk', got 2 dim\(s\)"),
    (lambda: F.einsum("ij->iz", t(2, 3)),
     r"einsum: expected output subscripts that occur once and in some operand, got 'z'"),
    (lambda: F.einsum("i1", t(2, 3)), r"einsum: expected subscripts in \[a-zA-Z\]"),
])
def test_bad_shapes_name_the_op_and_both_shapes(call, message):
    with pytest.raises(F.ShapeError, match=message):
        call()


def test_addmm_refuses_tensor_scalars_which_explicit_leaves_to_torch():
    i, a, b = t(4), t(2, 3), t(3, 4)
    with pytest.raises(F.ShapeError, match="addmm: expected beta as a Python number"):
        F.addmm(i, a, b, beta=torch.tensor(0.5))
    with trainer.explicit() as report:
        y = torch.addmm(i, a, b, beta=torch.tensor(0.5))
    assert report.fallback == {"torch.addmm": 1} and not report.explicit
    torch.testing.assert_close(y, 0.5 * i + a @ b)


# -- under trainer.explicit(): every entry point reaches its rule --------------------------

ENTRY_POINTS = [  # (rule, call, operand shapes)
    ("matmul", lambda x, w: x @ w, ((2, 3), (3, 4))),
    ("matmul", lambda x, w: torch.matmul(x, w), ((2, 2, 3), (3, 4))),
    ("matmul", lambda x, w: x.matmul(w), ((3,), (2, 3, 4))),
    ("matmul", lambda x, w: torch.Tensor.__matmul__(x, w), ((2, 3), (3,))),
    ("matmul", lambda x, w: w.__rmatmul__(x), ((2, 3), (3, 4))),
    ("mm", lambda x, w: torch.mm(x, w), ((2, 3), (3, 4))),
    ("mm", lambda x, w: x.mm(w), ((2, 3), (3, 4))),
    ("bmm", lambda x, w: torch.bmm(x, w), ((2, 2, 3), (2, 3, 4))),
    ("bmm", lambda x, w: x.bmm(w), ((2, 2, 3), (2, 3, 4))),
    ("addmm", lambda b, x, w: torch.addmm(b, x, w), ((4,), (2, 3), (3, 4))),
    ("addmm", lambda b, x, w: b.addmm(x, w, beta=0.5, alpha=2), ((2, 4), (2, 3), (3, 4))),
    ("baddbmm", lambda b, x, w: torch.baddbmm(b, x, w), ((4,), (2, 2, 3), (2, 3, 4))),
    ("baddbmm", lambda b, x, w: b.baddbmm(x, w, beta=0, alpha=-1), ((2, 2, 4), (2, 2, 3),
                                                                     (2, 3, 4))),
    ("einsum", lambda a, b: torch.einsum("bij,bjk->bik", a, b), ((2, 2, 3), (2, 3, 4))),
    ("einsum", lambda a, b: torch.functional.einsum("...ij,...jk", a, b), ((2, 2, 3), (3, 4))),
    ("einsum", lambda a, b, c: torch.einsum("ij,jk,kl->il", [a, b, c]),
     ((2, 3), (3, 4), (4, 2))),
]


@pytest.mark.parametrize("rule, call, shapes", ENTRY_POINTS)
def test_each_entry_point_runs_its_rule_with_natives_values_and_gradients(rule, call, shapes):
    operands = [t(*shape) for shape in shapes]
    native = call(*operands)
    native_grads = torch.autograd.grad(native, operands, torch.ones_like(native))
    with trainer.explicit() as report:
        out = call(*operands)
    assert report.explicit == {rule: 1} and report.complete
    testing.assert_explicit_graph(out)
    grads = torch.autograd.grad(out, operands, torch.ones_like(out))
    torch.testing.assert_close(out, native, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(grads, native_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_other_overloads_are_left_to_torch():
    b, x, w = t(4), t(2, 3), t(3, 4)
    with warnings.catch_warnings(), trainer.explicit() as report:
        warnings.simplefilter("ignore")  # the deprecated addmm(beta, input, alpha, m1, m2)
        y = torch.addmm(0.5, b, 2, x, w)
        with pytest.raises(TypeError):
            x @ 2
    assert report.fallback == {"torch.addmm": 1} and not report.explicit
    torch.testing.assert_close(y, torch.addmm(b, x, w, beta=0.5, alpha=2))
