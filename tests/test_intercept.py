"""trainer.explicit(): torch calls run the table's rules; the rest is counted, or refused."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as torch_F

import trainer
import trainer.functional as F
from trainer import rules, testing
from trainer.intercept import DISPATCH, ExplicitMode


class MLP(torch.nn.Module):
    """A plain torch.nn model: what a user brings."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(6, 8)
        self.act = torch.nn.ReLU()
        self.out = torch.nn.Linear(8, 3)

    def forward(self, x, y):
        logits = self.out(self.act(self.hidden(x)))
        return torch_F.cross_entropy(logits, y)


class Sinh(torch.nn.Module):
    def forward(self, x):
        return x.sinh()  # no rule for sinh


def data(dtype=torch.float64):
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(5, 6, dtype=dtype, generator=generator),
            torch.randint(0, 3, (5,), generator=generator))


def test_a_torch_model_runs_the_rules_and_matches_native():
    torch.manual_seed(0)
    model = MLP().double()
    x, y = data()
    native = model(x, y)
    native_grads = torch.autograd.grad(native, list(model.parameters()))
    with trainer.explicit() as report:
        loss = model(x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, native, rtol=0, atol=1e-12)
    for ours, theirs in zip(grads, native_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    testing.assert_explicit_graph(loss)  # every node a rule
    assert report.explicit == {"linear": 2, "relu": 1, "cross_entropy": 1}
    assert report.complete and not report.moved


def test_entry_points_of_every_kind_reach_their_rule():
    x = torch.randn(3, 4, requires_grad=True)
    with trainer.explicit() as report:
        outs = [torch_F.gelu(x), torch.softmax(x, 1), x.softmax(-1), x.log_softmax(dim=0),
                torch.log_softmax(x, 1, torch.float64), x.relu(), torch.tanh(x),
                x.sigmoid()]
    assert report.explicit == {"gelu": 1, "softmax": 2, "log_softmax": 2, "relu": 1,
                               "tanh": 1, "sigmoid": 1}
    assert outs[4].dtype == torch.float64
    for out in outs:
        testing.assert_explicit_graph(out)
    torch.testing.assert_close(outs[1], torch.softmax(x, 1))


def test_calls_without_a_rule_are_counted_shape_ops_apart():
    x = torch.randn(3, 4, requires_grad=True)
    with trainer.explicit() as report:
        x.sinh().view(12)[:5].prod()  # no rules for sinh and prod
        x.size(), x.dim(), x.detach() + 1  # no gradient recorded: not counted
    assert report.fallback == {"Tensor.sinh": 1, "Tensor.prod": 1}
    assert report.moved == {"Tensor.view": 1, "Tensor.__getitem__": 1}
    assert not report.complete
    assert "fell back to built-in autograd: " in str(report) and "Tensor.sinh x1" in str(report)


def test_flatten_is_a_shape_op_and_its_view_takes_an_in_place_rule():
    """torch.flatten stays native (a view made inside a custom Function could not be
    modified in place), so an in-place dropout after it works, as in MobileNetV2's head."""
    x = torch.randn(4, 3, 2, 2, requires_grad=True)
    with trainer.explicit(strict=True) as report:
        y = torch_F.dropout(torch.flatten(x * 1.0, 1), 0.5, True, inplace=True)
    y.sum().backward()
    assert report.moved == {"torch.flatten": 1} and report.explicit["dropout"] == 1
    kept = y.detach().reshape(x.shape) != 0
    torch.testing.assert_close(x.grad, kept.float() * 2.0)
    assert not testing.graph_node_counts(y)["builtin"]  # CopySlices: moved, as a shape op


def test_strict_names_the_op_and_the_module_it_came_from():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), Sinh())
    x = torch.randn(2, 4)
    with pytest.raises(trainer.ExplicitError, match=r"Tensor\.sinh .*called in Sequential > Sinh"):
        with trainer.explicit(strict=True):
            model(x)
    with pytest.raises(trainer.ExplicitError, match=r"called in Sequential > 1\)"):
        with trainer.explicit(strict=True, model=model):
            model(x)
    with trainer.explicit(strict=True) as report:  # shape ops and rules pass
        model[0](x).view(8)
    assert report.explicit == {"linear": 1}


def test_no_state_is_left_behind_after_an_error():
    hooks = dict(torch.nn.modules.module._global_forward_pre_hooks)
    with pytest.raises(ZeroDivisionError):
        with trainer.explicit():
            1 / 0
    assert not torch._C._is_torch_function_mode_enabled()
    assert dict(torch.nn.modules.module._global_forward_pre_hooks) == hooks


def test_nested_blocks_count_each_call_once_in_the_innermost():
    x = torch.randn(3, 4, requires_grad=True)
    with trainer.explicit() as outer:
        with trainer.explicit() as inner:
            torch_F.gelu(x)
        torch_F.silu(x)
    assert inner.explicit == {"gelu": 1}
    assert outer.explicit == {"silu": 1}


def test_a_rule_is_never_applied_to_its_own_insides():
    # trainer.functional calls are explicit already: the mode leaves them (and the torch ops
    # inside their forward and backward) alone
    x = torch.randn(3, 4, requires_grad=True)
    with trainer.explicit() as report:
        y = F.gelu(torch_F.linear(x, torch.randn(5, 4)))
        y.prod().backward()
    assert report.explicit == {"linear": 1}
    assert report.fallback == {"Tensor.prod": 1}  # not the backward's own ops


def test_the_mode_belongs_to_its_thread():
    x = torch.randn(3, 4, requires_grad=True)
    seen = {}

    def elsewhere():
        seen["type"] = type(torch_F.gelu(x).grad_fn).__name__

    with trainer.explicit() as report:
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
    assert seen["type"] == "GeluBackward0" and not report.explicit


def test_no_grad_still_runs_the_rules_and_counts_no_fallback():
    x = torch.randn(3, 4, requires_grad=True)
    with torch.no_grad(), trainer.explicit() as report:
        torch_F.gelu(x).sinh()
    assert report.explicit == {"gelu": 1} and not report.fallback


def test_torch_func_transforms_inside_the_block():
    x = torch.randn(4, 5, dtype=torch.float64)
    w = torch.randn(3, 5, dtype=torch.float64)

    def loss(w):
        return torch_F.gelu(torch_F.linear(x, w)).sum()

    with trainer.explicit() as report:
        grad = torch.func.grad(loss)(w)
        per_row = torch.func.vmap(lambda row: torch_F.linear(row, w))(x)
    torch.testing.assert_close(grad, torch.func.grad(loss)(w))
    torch.testing.assert_close(per_row, x @ w.T)
    assert report.explicit["linear"] == 2 and report.explicit["gelu"] == 1


def test_decorator_form():
    @trainer.explicit()
    def step(x):
        return torch_F.relu(x)

    assert type(step(torch.randn(3, requires_grad=True)).grad_fn).__name__ == "ReLUBackward"


def test_dispatch_comes_from_the_table():
    listed = {rules.resolve(d) for rule in rules.RULES for d in rule.stands_for}
    assert set(DISPATCH) == listed
    for rule in rules.RULES:
        assert set(rule.adapters) <= set(rule.stands_for), rule.name
    assert isinstance(ExplicitMode(), torch.overrides.TorchFunctionMode)
