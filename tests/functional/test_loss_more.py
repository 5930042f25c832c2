"""binary_cross_entropy (with logits), l1, smooth_l1, huber, kl_div, cosine_embedding: what the
standard checks (tests/test_rule_checks.py) do not cover. Every reduction and option against
torch (beta = 0, pos_weight broadcast, log_target, batchmean, 2.13's l1/huber weight),
BCE at 0 and 1, hypothesis over shapes, the bytes kept, bad shapes naming the op and both
shapes, the trainer.nn twins through convert, and torch's entry points under explicit()."""

from __future__ import annotations

import warnings
from functools import partial

import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trainer
import trainer.functional as F
import trainer.nn as nn
from trainer import testing

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REDUCTIONS = ["none", "mean", "sum"]


def rand(*shape, low=0.0, high=1.0, grad=True):
    t = torch.rand(shape, dtype=torch.float64) * (high - low) + low
    return t.requires_grad_(grad)


def randn(*shape, grad=True):
    return torch.randn(shape, dtype=torch.float64, requires_grad=grad)


def both(name, **options):
    return partial(getattr(F, name), **options), partial(getattr(torch_F, name), **options)


# -- every reduction and option against torch ---------------------------------------------------

CASES = [  # (op, options, make inputs)
    ("binary_cross_entropy", {}, lambda: (rand(4, 3, low=0.02, high=0.98), rand(4, 3))),
    ("binary_cross_entropy", {"weight": rand(3, grad=False)},
     lambda: (rand(4, 3, low=0.02, high=0.98), rand(4, 3))),
    ("binary_cross_entropy_with_logits", {"pos_weight": rand(3, grad=False) + 0.5},
     lambda: (randn(4, 3) * 4, rand(4, 3))),
    ("binary_cross_entropy_with_logits", {"pos_weight": rand(2, 1, 3, grad=False),
                                          "weight": rand(5, 3, grad=False)},
     lambda: (randn(2, 5, 3), rand(2, 5, 3))),
    ("l1_loss", {}, lambda: (randn(4, 3), randn(4, 3))),
    ("l1_loss", {}, lambda: (randn(4, 3), randn(3))),  # broadcast target (torch warns)
    ("smooth_l1_loss", {"beta": 0.0}, lambda: (randn(4, 3), randn(4, 3))),
    ("smooth_l1_loss", {"beta": 0.7}, lambda: (randn(4, 3), randn(4, 1))),
    ("huber_loss", {"delta": 0.3}, lambda: (randn(4, 3), randn(4, 3))),
    ("huber_loss", {"delta": 2.5}, lambda: (randn(2, 4, 3), randn(4, 3))),
    ("kl_div", {"log_target": True}, lambda: (randn(4, 3), randn(4, 3))),
    ("kl_div", {"log_target": False}, lambda: (randn(4, 3), rand(4, 3, low=0.01))),
    ("kl_div", {}, lambda: (randn(4, 3), rand(3, low=0.01))),  # broadcast target
    ("cosine_embedding_loss", {"margin": 0.2},
     lambda: (randn(6, 3), randn(6, 3), torch.tensor([1, -1, 1, -1, -1, 0]))),
    ("cosine_embedding_loss", {}, lambda: (randn(6, 3), randn(1, 3), torch.tensor([1, -1] * 3))),
]


#: Each case under each of its op's reductions ('batchmean' is kl_div's alone).
REDUCTION_CASES = [pytest.param(*case, reduction, id=f"{reduction}-{case[0]}-{i}")
                   for i, case in enumerate(CASES)
                   for reduction in REDUCTIONS + (["batchmean"] if case[0] == "kl_div" else [])]


@pytest.mark.parametrize("name,options,make,reduction", REDUCTION_CASES)
def test_every_reduction_matches_torch(name, options, make, reduction):
    ours, ref = both(name, reduction=reduction, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcast and kl_div 'mean' warnings
        testing.assert_matches_reference(ours, ref, *make())
        testing.assert_gradcheck(ours, *make())  # and gradgradcheck


def test_smooth_l1_with_beta_0_is_l1_and_both_match_torch_at_the_kinks():
    x = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y = torch.zeros(6, dtype=torch.float64)
    for name, options in [("smooth_l1_loss", {"beta": 0.0}), ("smooth_l1_loss", {"beta": 0.5}),
                          ("huber_loss", {"delta": 1.0}), ("l1_loss", {})]:
        ours, ref = both(name, reduction="sum", **options)
        testing.assert_matches_reference(ours, ref, x, y)  # |d| = β, d = 0 included
    (grad,) = torch.autograd.grad(F.smooth_l1_loss(x, y, beta=0.0, reduction="sum"), x)
    assert grad.tolist() == [0.0, 1.0, -1.0, 1.0, -1.0, 1.0]  # sign(d), 0 at d = 0


def test_bce_at_zero_and_one_is_torchs():
    # log clamped at −100; ∂x finite through max(x(1 − x), 1e-12); ∂y = −logit(x): ±∞
    x = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5], dtype=torch.float64, requires_grad=True)
    ours, ref = both("binary_cross_entropy", reduction="none")
    testing.assert_matches_reference(ours, ref, x, y, equal_nan=True)
    assert ours(x, y).tolist() == [0.0, 0.0, 100.0, 100.0, pytest.approx(0.6931471805599453)]


def test_bce_with_logits_is_stable_for_large_logits():
    x = torch.tensor([-800.0, 800.0, -40.0, 40.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.3, 0.7], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([2.0, 3.0, 0.5, 1.0], dtype=torch.float64)
    ours, ref = both("binary_cross_entropy_with_logits", reduction="none", pos_weight=p)
    testing.assert_matches_reference(ours, ref, x, y)
    assert torch.isfinite(ours(x, y)).all()


def test_kl_div_batchmean_divides_by_the_batch_only():
    x, y = randn(4, 5), rand(4, 5, low=0.01)
    total = F.kl_div(x, y, reduction="sum")
    torch.testing.assert_close(F.kl_div(x, y, reduction="batchmean"), total / 4)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        F.kl_div(x, y)  # 'mean', as torch warns
    scalar = F.kl_div(randn(), rand(low=0.1), reduction="batchmean")  # 0-d: the sum, as torch
    assert scalar.dim() == 0


def test_weights_torch_refuses_to_differentiate_are_refused_by_name():
    x, y, w = rand(3, 4, low=0.1, high=0.9), rand(3, 4), rand(4)
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument"):
        torch_F.binary_cross_entropy(x, y, weight=w)
    with pytest.raises(RuntimeError, match="binary_cross_entropy: expected a weight that does "
                                           "not require grad"):
        F.binary_cross_entropy(x, y, weight=w)
    with pytest.raises(RuntimeError, match="binary_cross_entropy_with_logits: expected a "
                                           "pos_weight that does not require grad"):
        F.binary_cross_entropy_with_logits(x, y, pos_weight=w)
    with torch.no_grad():  # nothing to differentiate: taken
        F.binary_cross_entropy(x, y, weight=w)


def test_weighted_l1_and_huber_give_the_weight_its_gradient_as_torch():
    for name in ("l1_loss", "huber_loss"):
        for reduction in REDUCTIONS:
            ours, ref = both(name, reduction=reduction)
            x, y, w = randn(3, 4), randn(3, 4), rand(3, 4)
            testing.assert_matches_reference(lambda a, b, c: ours(a, b, weight=c),
                                             lambda a, b, c: ref(a, b, weight=c), x, y, w)
            testing.assert_explicit_graph(ours(x, y, weight=w))


@FAST
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.sampled_from(REDUCTIONS),
       st.sampled_from(["l1_loss", "smooth_l1_loss", "huber_loss", "kl_div",
                        "binary_cross_entropy_with_logits", "binary_cross_entropy"]))
def test_any_shape_matches_torch(shape, reduction, name):
    x = rand(*shape, low=0.05, high=0.95) if name == "binary_cross_entropy" else randn(*shape)
    y = rand(*shape, low=0.01)
    ours, ref = both(name, reduction=reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        testing.assert_matches_reference(ours, ref, x, y)


# -- what is kept for backward ------------------------------------------------------------------


def test_l1_keeps_one_byte_per_element_and_huber_the_difference_only():
    x, y = torch.randn(64, 32, requires_grad=True), torch.randn(64, 32, requires_grad=True)
    assert testing.saved_bytes(lambda: F.l1_loss(x, y)) == x.numel()  # int8 sign
    for name in ("smooth_l1_loss", "huber_loss"):
        assert testing.saved_bytes(lambda: getattr(F, name)(x, y)) == x.nbytes  # d alone
        assert testing.saved_bytes(lambda: getattr(torch_F, name)(x, y)) == 2 * x.nbytes


def test_kl_div_keeps_the_input_only_for_the_targets_gradient():
    x, y = torch.randn(64, 32, requires_grad=True), torch.rand(64, 32)
    assert testing.saved_bytes(lambda: F.kl_div(x, y, reduction="sum")) == y.nbytes
    y.requires_grad_()
    assert testing.saved_bytes(lambda: F.kl_div(x, y, reduction="sum")) == 2 * y.nbytes


# -- bad input ----------------------------------------------------------------------------------


def test_bad_shapes_and_options_name_the_op_and_the_shapes():
    x = randn(3, 4)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: expected target of the input's "
                                         r"shape \(3, 4\), got target \(4, 3\)"):
        F.binary_cross_entropy(torch.rand(3, 4), torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: expected "
                                         r"pos_weight broadcastable.*\(3, 4\), got pos_weight \(3\)"):
        F.binary_cross_entropy_with_logits(x, torch.rand(3, 4), pos_weight=torch.rand(3))
    with pytest.raises(RuntimeError, match=r"l1_loss: expected a target broadcastable with "
                                           r"input \(3, 4\), got target \(5\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            F.l1_loss(x, randn(5))
    with pytest.raises(ValueError, match=r"huber_loss: expected weight of the input's shape"):
        F.huber_loss(x, randn(3, 4), weight=torch.rand(4))
    with pytest.raises(RuntimeError, match=r"smooth_l1_loss: expected beta >= 0, got beta=-1"):
        F.smooth_l1_loss(x, randn(3, 4), beta=-1.0)
    with pytest.raises(RuntimeError, match=r"huber_loss: expected delta > 0, got delta=0"):
        F.huber_loss(x, randn(3, 4), delta=0.0)
    with pytest.raises(RuntimeError, match=r"cosine_embedding_loss: expected inputs of shape "
                                           r"\(N, D\).*input1 \(3, 4\), input2 \(3, 4\), "
                                           r"target \(3, 1\)"):
        F.cosine_embedding_loss(x, randn(3, 4), torch.ones(3, 1))
    with pytest.raises(RuntimeError, match=r"cosine_embedding_loss: expected input1 and input2 "
                                           r"broadcastable.*input2 \(3, 5\)"):
        F.cosine_embedding_loss(x, randn(3, 5), torch.ones(3))
    with pytest.raises(ValueError, match="l1_loss: expected reduction 'none', 'mean' or 'sum'"):
        F.l1_loss(x, x, reduction="batchmean")


# -- trainer.nn twins ---------------------------------------------------------------------------

TWINS = [
    (torch.nn.BCELoss(weight=torch.rand(4, dtype=torch.float64)),
     lambda: (rand(3, 4, low=0.05, high=0.95), rand(3, 4))),
    (torch.nn.BCEWithLogitsLoss(pos_weight=torch.rand(4, dtype=torch.float64) + 0.5,
                                reduction="sum"), lambda: (randn(3, 4), rand(3, 4))),
    (torch.nn.L1Loss(reduction="none"), lambda: (randn(3, 4), randn(3, 4))),
    (torch.nn.SmoothL1Loss(beta=0.5), lambda: (randn(3, 4), randn(3, 4))),
    (torch.nn.HuberLoss(delta=0.5, reduction="sum"), lambda: (randn(3, 4), randn(3, 4))),
    (torch.nn.KLDivLoss(reduction="batchmean", log_target=True), lambda: (randn(3, 4),
                                                                          randn(3, 4))),
    (torch.nn.CosineEmbeddingLoss(margin=0.1),
     lambda: (randn(4, 3), randn(4, 3), torch.tensor([1, -1, 1, -1]))),
]


@pytest.mark.parametrize("module,make", TWINS, ids=lambda m: type(m).__name__)
def test_each_twin_converts_and_gives_torchs_outputs_and_gradients(module, make):
    explicit, report = nn.convert(module)
    assert type(explicit).__name__ == type(module).__name__ and type(explicit) is not type(module)
    assert isinstance(explicit, type(module)) and report.converted == {"": type(module).__name__}
    assert explicit.state_dict().keys() == module.state_dict().keys()
    testing.assert_matches_reference(explicit, module, *make())
    testing.assert_explicit_graph(explicit(*make()))


# -- trainer.explicit() routes torch's calls ----------------------------------------------------

ENTRY_POINTS = [  # (label, a torch call of x, the rule it reaches)
    ("nn.BCELoss", lambda x: torch.nn.BCELoss()(torch.sigmoid(x), torch.rand(3, 4)),
     "binary_cross_entropy"),
    ("torch.binary_cross_entropy_with_logits",
     lambda x: torch.binary_cross_entropy_with_logits(x, torch.rand(3, 4), None, None, 2),
     "binary_cross_entropy_with_logits"),
    ("nn.BCEWithLogitsLoss", lambda x: torch.nn.BCEWithLogitsLoss()(x, torch.rand(3, 4)),
     "binary_cross_entropy_with_logits"),
    ("nn.L1Loss", lambda x: torch.nn.L1Loss()(x, torch.zeros(3, 4)), "l1_loss"),
    ("nn.SmoothL1Loss", lambda x: torch.nn.SmoothL1Loss(beta=0.5)(x, torch.zeros(3, 4)),
     "smooth_l1_loss"),
    ("nn.HuberLoss", lambda x: torch.nn.HuberLoss()(x, torch.zeros(3, 4)), "huber_loss"),
    ("torch.kl_div", lambda x: torch.kl_div(x, torch.rand(3, 4), 2), "kl_div"),
    ("nn.KLDivLoss", lambda x: torch.nn.KLDivLoss(reduction="batchmean")(x, torch.rand(3, 4)),
     "kl_div"),
    ("torch.cosine_embedding_loss",
     lambda x: torch.cosine_embedding_loss(x, x.flip(0), torch.tensor([1, -1, 1]), 0.1, 0),
     "cosine_embedding_loss"),
    ("nn.CosineEmbeddingLoss",
     lambda x: torch.nn.CosineEmbeddingLoss()(x, x.flip(0), torch.tensor([1, -1, 1])),
     "cosine_embedding_loss"),
]


@pytest.mark.parametrize("label,call,rule", ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_explicit_routes_each_entry_point_to_its_rule(label, call, rule):
    base = randn(3, 4, grad=False).float().requires_grad_()
    torch.manual_seed(0)
    y_ref = call(base)
    (grad_ref,) = torch.autograd.grad(y_ref.sum(), base)
    torch.manual_seed(0)
    with trainer.explicit() as report:
        y = call(base)
    assert report.explicit[rule] == 1, report
    (grad,) = torch.autograd.grad(y.sum(), base)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, grad_ref)
