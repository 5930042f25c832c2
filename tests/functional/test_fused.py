"""linear_cross_entropy: the fused op equals cross_entropy(linear(...)) while keeping far less."""

import pytest
import torch
import torch.nn.functional as torch_F

from trainer import testing
from trainer.functional import ShapeError
from trainer.functional.fused import linear_cross_entropy
from trainer.nn.fused import LinearCrossEntropy

NUM_CLASSES, HIDDEN = 11, 6


def make(lead=(2, 7), num_classes=NUM_CLASSES, hidden=HIDDEN, bias=True, dtype=torch.float64):
    x = torch.randn(*lead, hidden, dtype=dtype, requires_grad=True)
    w = torch.randn(num_classes, hidden, dtype=dtype, requires_grad=True)
    b = torch.randn(num_classes, dtype=dtype, requires_grad=True) if bias else None
    return x, w, b


def targets(lead=(2, 7), num_classes=NUM_CLASSES, ignore_index=-100, n_ignored=3):
    t = torch.randint(0, num_classes, lead)
    t.view(-1)[:n_ignored] = ignore_index  # the first rows are ignored (or are class ii)
    return t


def fused(t, **options):
    return lambda x, w, b=None: linear_cross_entropy(x, w, t, b, **options)


def unfused(t, **options):
    options.pop("chunk_size", None)

    def run(x, w, b=None):
        logits = torch_F.linear(x, w, b)
        return torch_F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1),
                                     **options)
    return run


OPTIONS = [  # every option once, and together
    {},
    {"reduction": "sum"},
    {"label_smoothing": 0.1},
    {"ignore_index": 2},
    {"reduction": "sum", "label_smoothing": 0.25, "ignore_index": 4},
    {"label_smoothing": 1.0},
]


def options_id(options):
    return ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 14])  # 3 does not divide the 14 rows
def test_matches_torch(options, chunk_size, dtype):
    x, w, b = make(dtype=dtype)
    t = targets(ignore_index=options.get("ignore_index", -100))
    opts = dict(options, chunk_size=chunk_size)
    testing.assert_matches_reference(fused(t, **opts), unfused(t, **opts), x, w, b)


@pytest.mark.parametrize("lead", [(9,), (3, 1, 4), (1,)])
def test_matches_torch_without_bias_and_any_leading_shape(lead):
    x, w, _ = make(lead=lead, bias=False)
    t = targets(lead=lead, n_ignored=1 if x[..., 0].numel() > 1 else 0)
    testing.assert_matches_reference(fused(t, chunk_size=2), unfused(t), x, w)
    testing.assert_matches_reference(fused(t), unfused(t), testing.non_contiguous(x), w)


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"reduction": "sum"}])
@pytest.mark.parametrize("rows,ignored", [(4, 4), (0, 0)], ids=["all-ignored", "no-rows"])
def test_nothing_to_average_gives_torchs_loss_and_zero_grads(options, rows, ignored):
    x, w, b = make(lead=(rows,))
    t = targets(lead=(rows,), n_ignored=ignored)
    ours, theirs = fused(t, **options)(x, w, b), unfused(t, **options)(x, w, b)
    torch.testing.assert_close(ours, theirs, equal_nan=True)  # mean: 0/0 = nan; sum: 0
    for a, c in zip(torch.autograd.grad(ours, (x, w, b)), torch.autograd.grad(theirs, (x, w, b))):
        torch.testing.assert_close(a, c, rtol=0, atol=0)
        assert not a.any()


def test_gradcheck_float64():
    x, w, b = make(lead=(5,))
    t = targets(lead=(5,), n_ignored=1)
    testing.assert_gradcheck(fused(t, label_smoothing=0.2, chunk_size=2), x, w, b, gradgrad=False)
    testing.assert_gradcheck(fused(t, reduction="sum", chunk_size=3), x, w, b, gradgrad=False)


def test_graph_is_explicit():
    x, w, b = make(dtype=torch.float32)
    loss = linear_cross_entropy(x, w, targets(), b)
    assert testing.assert_explicit_graph(loss) == 4  # the fused node + 3 leaves


def test_saves_only_the_gradients_far_less_than_unfused():
    rows, hidden, num_classes = 256, 32, 2000
    x = torch.randn(rows, hidden, requires_grad=True)
    w = torch.randn(num_classes, hidden, requires_grad=True)
    b = torch.randn(num_classes, requires_grad=True)
    t = torch.randint(0, num_classes, (rows,))
    ours = testing.saved_bytes(lambda: linear_cross_entropy(x, w, t, b, chunk_size=100),
                               exclude=[w, b])
    native = testing.saved_bytes(lambda: unfused(t)(x, w, b), exclude=[w, b])
    assert ours == x.nbytes + w.nbytes + b.nbytes  # ∂/∂x, ∂/∂W, ∂/∂b, and nothing else
    assert native >= rows * num_classes * 4  # the (N, V) log-softmax output
    assert ours < native / 4
    # only what is asked for: a frozen head keeps only ∂/∂x, inference keeps nothing
    frozen = testing.saved_bytes(lambda: linear_cross_entropy(x, w.detach(), t, b.detach()))
    assert frozen == x.nbytes
    with torch.no_grad():
        assert testing.saved_bytes(lambda: linear_cross_entropy(x, w, t, b)) == 0


def test_backward_does_no_math_of_its_own():
    x, w, b = make(dtype=torch.float32)
    t = targets()
    ops = testing.backward_op_counts(fused(t), x, w, b)  # g = 1: hands the gradients over
    assert set(ops) <= {"eq", "_local_scalar_dense"}, ops
    scaled = testing.backward_op_counts(lambda *a: 3 * fused(t)(*a), x, w.detach(), b.detach())
    assert scaled.get("mul", 0) == 2 and "mm" not in scaled  # 3·loss, then 3·∂loss/∂x only


def test_loss_backward_adopts_the_saved_gradients_without_a_copy():
    x, w, b = make(dtype=torch.float32)
    saved = []  # addresses only: holding the tensors here would itself force a copy
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.data_ptr()) or t,
                                                  lambda t: t):
        loss = linear_cross_entropy(x, w, targets(), b)
    loss.backward()
    assert saved == [p.grad.data_ptr() for p in (x, w, b)]


def test_backward_twice_with_retain_graph_gives_the_same_grads():
    x, w, b = make()
    loss = linear_cross_entropy(x, w, targets(), b)
    first = torch.autograd.grad(3 * loss, (x, w, b), retain_graph=True)
    second = torch.autograd.grad(3 * loss, (x, w, b))
    for a, c in zip(first, second):
        torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_compile_fullgraph_matches_eager():
    x, w, b = make(dtype=torch.float32)
    t = targets()
    testing.assert_compile_matches_eager(fused(t, label_smoothing=0.1, chunk_size=5), x, w, b)


def test_autocast_bf16_dtypes():
    x, w, b = make(dtype=torch.float32)
    t = targets()
    testing.assert_autocast_dtype_matches(fused(t), unfused(t), x, w, b)


def test_double_backward_and_vmap_are_refused_by_name():
    x, w, b = make()
    loss = linear_cross_entropy(x, w, targets(), b)
    with pytest.raises(RuntimeError, match="linear_cross_entropy: double backward"):
        torch.autograd.grad(loss, x, create_graph=True)
    t = targets(lead=(7,))
    with pytest.raises(NotImplementedError, match="linear_cross_entropy: vmap"):
        torch.func.vmap(lambda rows: linear_cross_entropy(rows, w, t, b))(x)


lce = linear_cross_entropy
BAD_CALLS = [  # (call on good x (2, 7, 6), w (11, 6), t (2, 7); what the message must say)
    (lambda x, w, t: lce(x[..., :4], w, t), r"input of shape \(\*, 6\).*got input \(2, 7, 4\)"),
    (lambda x, w, t: lce(x, w[0], t), r"weight of shape .*got weight \(6\)"),
    (lambda x, w, t: lce(x, w, t, torch.zeros(3)), r"bias of shape \(11,\).*got bias \(3\)"),
    (lambda x, w, t: lce(x, w, t[0]), r"target of shape \(2, 7\).*got target \(7\)"),
    (lambda x, w, t: lce(x, w, t.double()), r"target of class indices.*float64"),
    (lambda x, w, t: lce(x, w, t + 100), r"target values in \[0, 11\).*got target value 1"),
    (lambda x, w, t: lce(x, w, t, reduction="none"), r"reduction 'mean' or 'sum'.*='none'"),
    (lambda x, w, t: lce(x, w, t, label_smoothing=1.5), r"label_smoothing in \[0, 1\]"),
    (lambda x, w, t: lce(x, w, t, chunk_size=0), r"chunk_size a positive int"),
    (lambda x, w, t: lce(x.long(), w, t), r"input of a floating dtype"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_bad_input_names_the_op(call, match):
    x, w, _ = make()
    with pytest.raises((ShapeError, TypeError), match=r"^linear_cross_entropy: expected " + match):
        call(x, w, targets(n_ignored=0))


class TestModule:
    def test_initializes_and_loads_exactly_like_linear(self):
        torch.manual_seed(1)
        linear = torch.nn.Linear(HIDDEN, NUM_CLASSES)
        torch.manual_seed(1)
        head = LinearCrossEntropy(HIDDEN, NUM_CLASSES, label_smoothing=0.1)
        assert list(head.state_dict()) == list(linear.state_dict()) == ["weight", "bias"]
        for key, value in linear.state_dict().items():
            assert torch.equal(head.state_dict()[key], value), key
        head.load_state_dict(linear.state_dict())
        linear.load_state_dict(head.state_dict())
        no_bias = LinearCrossEntropy(HIDDEN, NUM_CLASSES, bias=False)
        no_bias.load_state_dict(torch.nn.Linear(HIDDEN, NUM_CLASSES, bias=False).state_dict())

    def test_matches_linear_then_cross_entropy_loss(self):
        linear = torch.nn.Linear(HIDDEN, NUM_CLASSES).double()
        loss = torch.nn.CrossEntropyLoss(reduction="sum", ignore_index=1, label_smoothing=0.1)
        head = LinearCrossEntropy.from_linear(linear, reduction="sum", ignore_index=1,
                                              label_smoothing=0.1, chunk_size=4)
        assert head.weight is linear.weight and head.bias is linear.bias
        x = torch.randn(10, HIDDEN, dtype=torch.double)
        t = targets(lead=(10,), ignore_index=1)
        ours, theirs = head(x, t), loss(linear(x), t)
        torch.testing.assert_close(ours, theirs)
        grads = torch.autograd.grad(ours, [head.weight, head.bias])
        for a, c in zip(grads, torch.autograd.grad(theirs, [linear.weight, linear.bias])):
            torch.testing.assert_close(a, c)
        torch.testing.assert_close(head.logits(x), linear(x))
        testing.assert_explicit_graph(head(x, t))

    def test_bad_input_and_reduction_name_the_layer(self):
        head = LinearCrossEntropy(HIDDEN, NUM_CLASSES)
        message = r"LinearCrossEntropy\(in_features=6.*\(\*, 6\), got \(3, 5\)"
        with pytest.raises(ShapeError, match=message):
            head(torch.randn(3, 5), torch.zeros(3, dtype=torch.long))
        with pytest.raises(ValueError, match="LinearCrossEntropy: expected reduction"):
            LinearCrossEntropy(HIDDEN, NUM_CLASSES, reduction="none")
