"""convert(): a torch.nn model becomes an explicit one with the same values."""

import pytest
import torch

import trainer.nn as nn
from trainer import testing


def small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Dropout(0.0),
        torch.nn.Linear(4 * 4 * 4, 10),
    )


def test_every_layer_is_converted_and_outputs_match():
    native = small_cnn()
    explicit, report = nn.convert(native)
    assert report.complete and len(report.converted) == 7
    assert all(type(m).__module__.startswith("trainer.nn") for m in explicit if not isinstance(m, torch.nn.Sequential))
    assert all(type(m).__module__.startswith("torch.nn") for m in native)  # the original is untouched
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(explicit(x), native(x))
    testing.assert_explicit_graph(explicit(x))


def test_state_dict_moves_both_ways():
    native = small_cnn()
    explicit, _ = nn.convert(native)
    assert list(explicit.state_dict()) == list(native.state_dict())
    fresh = small_cnn()
    fresh.load_state_dict(explicit.state_dict())
    explicit.load_state_dict(fresh.state_dict())


def test_inplace_swaps_classes_without_copying():
    native = small_cnn()
    weight = native[0].weight
    same, _ = nn.convert(native, inplace=True)
    assert same is native and same[0].weight is weight and isinstance(same[0], nn.Conv2d)


def test_reports_what_it_could_not_convert():
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))
            self.inner = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.inner(x) * self.scale

    model = torch.nn.Sequential(Custom(), torch.nn.Hardshrink(), torch.nn.Conv1d(3, 3, 3, padding_mode="circular"))
    explicit, report = nn.convert(model)
    assert set(report.unconverted) == {"0", "1", "2"}
    assert "Hardshrink has no explicit twin" in report.unconverted["1"]
    assert "padding_mode='circular'" in report.unconverted["2"]
    assert report.converted == {"0.inner": "Linear"}
    assert "3 without a twin, their torch calls run through the rules" in str(report)
    _, plain = nn.convert(model, explicit_calls=False)
    assert "3 without a twin, left as they were (built-in autograd)" in str(plain)
    assert not plain.complete and report.complete  # nothing has run through report yet
    with pytest.raises(ValueError, match="Hardshrink"):  # a module swap only: refused up front
        nn.convert(model, strict=True, explicit_calls=False)
    from trainer import ExplicitError

    strict, _ = nn.convert(model, strict=True)  # calls checked as they run
    with pytest.raises(ExplicitError):
        strict(torch.randn(2, 3))


def test_converting_twice_is_a_no_op():
    explicit, _ = nn.convert(small_cnn())
    again, report = nn.convert(explicit)
    assert report.complete and not report.converted


def test_to_torch_gives_back_builtin_layers_with_the_same_values():
    explicit, _ = nn.convert(small_cnn())
    native = nn.to_torch(explicit)
    assert all(type(m).__module__.startswith("torch.nn") for m in native.modules())
    assert all(type(m).__module__.startswith("trainer.nn") for m in explicit
               if not isinstance(m, torch.nn.Sequential))  # the explicit model is untouched
    assert list(native.state_dict()) == list(explicit.state_dict())
    for (name, a), b in zip(native.state_dict().items(), explicit.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name  # equal values, a copy
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(native(x), explicit(x))
    assert not any(isinstance(node, torch.autograd.function.BackwardCFunction)
                   for node in graph_nodes(native(x)))  # only built-in autograd nodes
    with pytest.raises(AssertionError, match="built-in autograd node"):
        testing.assert_explicit_graph(native(x))


def graph_nodes(output):
    nodes, stack = [], [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            nodes.append(node)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return nodes


def test_to_torch_then_convert_round_trips():
    explicit, _ = nn.convert(small_cnn())
    again, report = nn.convert(nn.to_torch(explicit))
    assert report.complete and len(report.converted) == 7
    assert [type(m) for m in again.modules()] == [type(m) for m in explicit.modules()]


def test_to_torch_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="to_torch"):
        nn.to_torch(lambda x: x)


def test_attention_is_converted_once_not_with_its_parameter_holding_out_proj():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.MultiheadAttention(8, 2))
    explicit, report = nn.convert(model)
    # not "1.out_proj": the twin's forward only reads its weights, as torch's does
    assert report.converted == {"0": "Linear", "1": "MultiheadAttention"}
    assert not report.unconverted and "out_proj" not in str(report)
    assert type(explicit[1]) is nn.MultiheadAttention
    assert type(explicit[1].out_proj) is type(model[1].out_proj)  # left as it was
    h = model[0](torch.randn(5, 2, 4))
    torch.testing.assert_close(explicit[1](h, h, h)[0], model[1](h, h, h)[0])


class LossInside(torch.nn.Module):
    """A model that computes its own loss in forward, as Hugging Face models do."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 3)

    def forward(self, x, y, scale=1.0):
        logits = self.body(x)
        if scale != 1.0:
            logits = logits * scale
        return torch.nn.functional.cross_entropy(logits.softmax(-1).sinh(), y)  # sinh: no rule


def inputs():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(5, 4, generator=generator), torch.randint(0, 3, (5,), generator=generator)


def test_the_converted_forward_runs_its_own_torch_calls_through_the_rules():
    torch.manual_seed(0)
    native = LossInside()
    explicit, report = nn.convert(native)
    x, y = inputs()
    loss = explicit(x, y)
    torch.testing.assert_close(loss, native(x, y))
    grads = torch.autograd.grad(loss, list(explicit.parameters()))
    native_grads = torch.autograd.grad(native(x, y), list(native.parameters()))
    for ours, theirs in zip(grads, native_grads, strict=True):
        torch.testing.assert_close(ours, theirs)
    assert report.calls.explicit == {"softmax": 1, "cross_entropy": 1}
    assert report.calls.fallback == {"Tensor.sinh": 1}
    assert not report.complete and "Tensor.sinh x1" in str(report)
    assert not torch._C._is_torch_function_mode_enabled()  # nothing left open


def test_strict_conversion_refuses_a_fallback_in_forward():
    from trainer import ExplicitError

    explicit, _ = nn.convert(LossInside(), strict=True)
    with pytest.raises(ExplicitError, match=r"Tensor.sinh has no explicit rule"):
        explicit(*inputs())
    assert not torch._C._is_torch_function_mode_enabled()  # the hook closed the mode


def test_converted_models_work_in_eval_under_no_grad_and_copied():
    import copy

    explicit, report = nn.convert(LossInside())
    explicit.eval()
    with torch.no_grad():
        explicit(*inputs())
    copied = copy.deepcopy(explicit)
    copied(*inputs())
    assert report.calls.explicit["softmax"] == 1  # the copy counts into a report of its own
    native = nn.to_torch(explicit)
    assert not native._forward_pre_hooks and not native._forward_hooks


def test_explicit_calls_can_be_turned_off():
    explicit, report = nn.convert(LossInside(), explicit_calls=False)
    explicit(*inputs())
    assert not report.calls.explicit and not explicit._forward_pre_hooks


class RestOfTorchNN(torch.nn.Module):
    """A plain torch.nn model built from the layers beyond the first 27: recurrent, transposed
    convolution, resampling, the newer norms and activations, attention and the BCE loss."""

    def __init__(self):
        super().__init__()
        t = torch.nn
        self.image = t.Sequential(
            t.Conv2d(2, 8, 3, padding=1), t.GroupNorm(2, 8), t.PReLU(8), t.ReflectionPad2d(1),
            t.Conv2d(8, 8, 3), t.InstanceNorm2d(8, affine=True), t.Hardswish(),
            t.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), t.ReLU6(),
            t.Upsample(scale_factor=0.5, mode="bilinear"), t.PixelUnshuffle(2),
            t.PixelShuffle(2), t.AdaptiveMaxPool2d((4, 4)), t.LocalResponseNorm(2),
            t.AdaptiveAvgPool2d((2, 8)), t.Mish())
        self.lstm = t.LSTM(8, 12, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = t.GRU(24, 16, batch_first=True)
        self.attention = t.MultiheadAttention(16, 4, batch_first=True)
        self.norm = t.RMSNorm(16)
        self.head = t.Sequential(t.Linear(16, 8), t.ELU(), t.Hardtanh(), t.Softplus(),
                                 t.Linear(8, 1))
        self.loss = t.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))

    def forward(self, x, y):
        sequence = self.image(x).flatten(1, 2).transpose(1, 2)  # (N, 4, 2, 8) -> (N, 8, 8)
        sequence, _ = self.lstm(sequence)
        sequence, _ = self.gru(sequence)
        attended, _ = self.attention(sequence, sequence, sequence, need_weights=False)
        return self.loss(self.head(self.norm(attended + sequence)).mean(1), y)


def test_a_model_of_the_rest_of_torch_nn_converts_whole_and_is_explicit():
    torch.manual_seed(0)
    native = RestOfTorchNN().double()
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    y = torch.rand(3, 1, dtype=torch.float64)
    explicit, report = nn.convert(native)
    assert not report.unconverted, report.unconverted
    loss = explicit(x, y)
    assert not testing.graph_node_counts(loss)["builtin"]
    assert report.calls.complete, report.calls
    native_loss = native(x, y)
    torch.testing.assert_close(loss, native_loss, rtol=1e-10, atol=1e-12)
    ours = torch.autograd.grad(loss, list(explicit.parameters()))
    theirs = torch.autograd.grad(native_loss, list(native.parameters()))
    for (name, _), a, b in zip(native.named_parameters(), ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)
