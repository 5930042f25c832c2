"""trainer.nn mirrors torch.nn: arguments, initialization, state_dict, values and gradients."""

import pytest
import torch

import trainer.nn as nn
from trainer import testing


def images(c=3):
    return torch.randn(4, c, 8, 8)


def signals(c=3):
    return torch.randn(4, c, 16)


# name, constructor args, input factory (targets, for losses, come from target_for)
CASES = [
    ("Linear", (5, 3), {}, lambda: torch.randn(4, 5)),
    ("Linear", (5, 3), {"bias": False}, lambda: torch.randn(2, 4, 5)),
    ("Conv1d", (3, 4, 3), {"padding": 1}, signals),
    ("Conv1d", (4, 4, 3), {"stride": 2, "groups": 2, "dilation": 2}, lambda: signals(4)),
    ("Conv2d", (3, 6, 3), {"padding": "same"}, images),
    ("Conv2d", (3, 4, (3, 1)), {"stride": (2, 1), "bias": False}, images),
    ("MaxPool1d", (2,), {}, signals),
    ("MaxPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, images),
    ("AvgPool1d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False}, signals),
    ("AvgPool2d", (2,), {"divisor_override": 3}, images),
    ("ReLU", (), {}, lambda: torch.randn(4, 7)),
    ("LeakyReLU", (0.2,), {}, lambda: torch.randn(4, 7)),
    ("GELU", (), {"approximate": "tanh"}, lambda: torch.randn(4, 7)),
    ("SiLU", (), {}, lambda: torch.randn(4, 7)),
    ("Sigmoid", (), {}, lambda: torch.randn(4, 7)),
    ("Tanh", (), {}, lambda: torch.randn(4, 7)),
    ("Softmax", (), {"dim": 1}, lambda: torch.randn(4, 7)),
    ("LogSoftmax", (), {"dim": -1}, lambda: torch.randn(4, 7)),
    ("BatchNorm1d", (7,), {}, lambda: torch.randn(4, 7)),
    ("BatchNorm1d", (3,), {"momentum": None}, signals),
    ("BatchNorm2d", (3,), {"affine": False}, images),
    ("LayerNorm", ((8, 8),), {}, images),
    ("Flatten", (), {}, images),
]


def pair(name, args, kwargs):
    torch.manual_seed(0)
    ours = getattr(nn, name)(*args, **kwargs)
    torch.manual_seed(0)
    native = getattr(torch.nn, name)(*args, **kwargs)
    return ours, native


def ids(cases):
    return [f"{c[0]}-{i}" for i, c in enumerate(cases)]


@pytest.mark.parametrize("name,args,kwargs,make", CASES, ids=ids(CASES))
def test_same_init_and_state_dict_layout(name, args, kwargs, make):
    ours, native = pair(name, args, kwargs)
    assert isinstance(ours, getattr(torch.nn, name))
    assert repr(ours) == repr(native)
    a, b = ours.state_dict(), native.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # state_dicts move both ways
    ours.load_state_dict(native.state_dict())
    native.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("name,args,kwargs,make", CASES, ids=ids(CASES))
def test_forward_backward_match_torch_and_graph_is_explicit(name, args, kwargs, make):
    ours, native = pair(name, args, kwargs)
    x = make().double().requires_grad_()
    ours.double(), native.double()
    params = dict(ours.named_parameters())

    def run(module):
        def f(x, *ps):
            return module(x)
        return f

    testing.assert_matches_reference(run(ours), run(native), x)
    # buffers (running statistics) evolve as torch's do
    for (k, a), (_, b) in zip(ours.named_buffers(), native.named_buffers()):
        assert torch.allclose(a.double(), b.double()), k
    testing.assert_explicit_graph(ours(x))
    assert list(params) == [k for k, _ in native.named_parameters()]


def test_batchnorm_eval_after_training_matches_torch():
    ours, native = pair("BatchNorm2d", (3,), {"momentum": None})
    for _ in range(3):
        x = torch.randn(8, 3, 5, 5)
        ours(x), native(x)
    assert ours.num_batches_tracked.item() == native.num_batches_tracked.item() == 3
    ours.eval(), native.eval()
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(ours(x), native(x))


def test_dropout_module_respects_train_and_eval():
    d = nn.Dropout(0.5)
    x = torch.ones(1000)
    kept = d(x)
    assert 300 < int((kept != 0).sum()) < 700
    assert set(kept.unique().tolist()) <= {0.0, 2.0}
    d.eval()
    assert torch.equal(d(x), x)


def test_embedding_matches_torch():
    ours, native = pair("Embedding", (10, 4), {"padding_idx": 0})
    idx = torch.tensor([[0, 3, 3], [9, 1, 0]])
    torch.testing.assert_close(ours(idx), native(idx))
    g = torch.randn(2, 3, 4)
    ours(idx).backward(g), native(idx).backward(g)
    torch.testing.assert_close(ours.weight.grad, native.weight.grad)
    assert ours.weight.grad[0].abs().sum() == 0  # padding row gets no gradient


@pytest.mark.parametrize("name,kwargs", [
    ("CrossEntropyLoss", {"label_smoothing": 0.1}),
    ("CrossEntropyLoss", {"reduction": "sum", "ignore_index": 2}),
    ("NLLLoss", {"reduction": "none"}),
])
def test_classification_losses_match_torch(name, kwargs):
    ours, native = pair(name, (), kwargs)
    logits = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    target = torch.tensor([0, 2, 4, 1, 2, 3])
    testing.assert_matches_reference(lambda z: ours(z, target), lambda z: native(z, target), logits)
    testing.assert_explicit_graph(ours(logits, target))


def test_mse_loss_matches_torch():
    ours, native = pair("MSELoss", (), {})
    a = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    testing.assert_matches_reference(ours, native, a, b)


@pytest.mark.parametrize("layer,x,match", [
    (lambda: nn.Linear(5, 3), torch.randn(2, 4), r"Linear\(in_features=5.*expected input of shape \(\*, 5\), got \(2, 4\)"),
    (lambda: nn.Conv2d(3, 4, 3), torch.randn(2, 2, 8, 8), r"Conv2d\(3, 4.*C = 3, got \(2, 2, 8, 8\)"),
    (lambda: nn.Conv1d(3, 4, 3), torch.randn(2, 3, 4, 4), r"Conv1d.*\(N, C, L\).*got \(2, 3, 4, 4\)"),
    (lambda: nn.BatchNorm1d(4), torch.randn(2, 5), r"BatchNorm1d\(4.*C = 4, got \(2, 5\)"),
    (lambda: nn.LayerNorm(6), torch.randn(2, 5), r"LayerNorm.*\(\*, 6\), got \(2, 5\)"),
])
def test_bad_input_names_the_layer_and_both_shapes(layer, x, match):
    with pytest.raises(nn.functional.ShapeError, match=match):
        layer()(x)


def test_unsupported_padding_mode_is_refused_clearly():
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        nn.Conv2d(1, 1, 3, padding_mode="reflect")
