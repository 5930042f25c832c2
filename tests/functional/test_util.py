"""The shared Function base: every op's rule derives from it, and its lean ``apply`` behaves
as ``torch.autograd.Function.apply`` does."""

from __future__ import annotations

import sys

import pytest
import torch

import trainer.functional  # noqa: F401  (imports every op's module)
from trainer.functional._util import Function
from trainer.functional.linear import Linear


def op_functions() -> list[type]:
    return [obj for name, module in sorted(sys.modules.items())
            if name.startswith("trainer.functional.")
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, torch.autograd.Function)
            and obj.__module__ == name and obj is not Function
            and obj.forward is not torch.autograd.Function.forward]  # not a shared base


def test_every_op_derives_from_the_shared_base():
    functions = op_functions()
    assert len(functions) >= 20
    assert [f.__name__ for f in functions if not issubclass(f, Function)] == []
    for f in functions:  # the signature is cached for Function.apply's own binding
        assert f._arity == len(f.forward.__signature__.parameters)


def test_keywords_and_positional_arguments_give_the_same_result():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    positional = Linear.apply(x, w, b)
    keywords = Linear.apply(x, weight=w, bias=b)
    torch.testing.assert_close(positional, keywords)
    g = torch.randn(2 * 4).view(4, 2)
    grads = torch.autograd.grad(positional, (x, w, b), g)
    grads_kw = torch.autograd.grad(keywords, (x, w, b), g)
    for a, c in zip(grads, grads_kw):
        torch.testing.assert_close(a, c)


def test_a_missing_argument_is_named_as_torch_would():
    x, w = torch.randn(4, 3), torch.randn(2, 3)
    with pytest.raises(TypeError, match="bias"):
        Linear.apply(x, w)


def test_torch_func_transforms_take_the_full_apply():
    x = torch.randn(5, 4, 3)
    w = torch.randn(2, 3, requires_grad=True)
    out = torch.func.vmap(lambda row: Linear.apply(row, w, None))(x)
    torch.testing.assert_close(out, x @ w.detach().t())
