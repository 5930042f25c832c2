"""trainer.nn's RNN, LSTM, GRU and cells: torch's modules with an explicit forward. Same
parameters and state_dict; outputs and gradients equal native's over every option (unbatched
input, initial states given or not, proj_size, dropout between layers); convert and to_torch
through the table; error messages that name the layer."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import trainer.nn as nn
from trainer import testing
from trainer.functional._util import ShapeError

LAYERS = [
    (nn.LSTM, dict()), (nn.LSTM, dict(num_layers=2, bidirectional=True, batch_first=True)),
    (nn.LSTM, dict(proj_size=2, bidirectional=True)), (nn.LSTM, dict(bias=False)),
    (nn.GRU, dict()), (nn.GRU, dict(num_layers=3, batch_first=True, bias=False)),
    (nn.GRU, dict(bidirectional=True)),
    (nn.RNN, dict()), (nn.RNN, dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
]


def native_of(module: torch.nn.Module) -> torch.nn.Module:
    return nn.to_torch(module)


def states_for(module, batch: int | None):
    """Random initial states of the module's shapes; batch None: unbatched."""
    layers = module.num_layers * (2 if module.bidirectional else 1)
    lead = (layers,) if batch is None else (layers, batch)
    h = torch.randn(*lead, getattr(module, "proj_size", 0) or module.hidden_size,
                    dtype=torch.float64)
    if isinstance(module, torch.nn.LSTM):
        return (h, torch.randn(*lead, module.hidden_size, dtype=torch.float64))
    return h


def assert_same_and_explicit(ours, native, *inputs):
    ours_out, native_out = ours(*inputs), native(*inputs)
    flat_ours, flat_native = testing._tensors(ours_out), testing._tensors(native_out)
    for a, b in zip(flat_ours, flat_native, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    g = [torch.randn_like(t) for t in flat_native]
    leaves = list(ours.parameters()) + [t for t in inputs if isinstance(t, torch.Tensor)
                                        and t.requires_grad]
    native_leaves = list(native.parameters()) + leaves[len(list(ours.parameters())):]
    got = torch.autograd.grad(flat_ours, leaves, g)
    want = torch.autograd.grad(flat_native, native_leaves, g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    testing.assert_explicit_graph(ours_out)


@pytest.mark.parametrize("cls,options", LAYERS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("given", [False, True])
def test_layers_equal_torchs_module(cls, options, batched, given):
    torch.manual_seed(0)
    ours = cls(3, 4, **options).double()
    native = native_of(ours)
    assert type(native) is cls.__mro__[2] and type(ours).__mro__[2] is type(native)
    steps, batch = 5, 2
    shape = ((batch, steps) if options.get("batch_first") else (steps, batch)) if batched else (
        (steps,))
    x = torch.randn(*shape, 3, dtype=torch.float64, requires_grad=True)
    if given:
        hx = states_for(ours, batch if batched else None)
        assert_same_and_explicit(ours, native, x, hx)
    else:
        assert_same_and_explicit(ours, native, x)


CELLS = [(nn.LSTMCell, {}), (nn.GRUCell, {}), (nn.RNNCell, {}),
         (nn.RNNCell, {"nonlinearity": "relu"}), (nn.GRUCell, {"bias": False})]


@pytest.mark.parametrize("cls,options", CELLS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("given", [False, True])
def test_cells_equal_torchs_module(cls, options, batched, given):
    torch.manual_seed(1)
    ours = cls(3, 4, **options).double()
    native = native_of(ours)
    lead = (2,) if batched else ()
    x = torch.randn(*lead, 3, dtype=torch.float64, requires_grad=True)
    if not given:
        assert_same_and_explicit(ours, native, x)
        return
    h = torch.randn(*lead, 4, dtype=torch.float64, requires_grad=True)
    state = (h, torch.randn(*lead, 4, dtype=torch.float64)) if cls is nn.LSTMCell else h
    assert_same_and_explicit(ours, native, x, state)


def test_parameters_and_state_dict_are_torchs():
    torch.manual_seed(2)
    native = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    torch.manual_seed(2)
    ours = nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    assert list(ours.state_dict()) == list(native.state_dict())
    assert "weight_hr_l1_reverse" in ours.state_dict()
    for (name, a), b in zip(ours.state_dict().items(), native.state_dict().values()):
        assert torch.equal(a, b), name  # torch's initialization, same draws
    ours.load_state_dict(native.state_dict())


def test_dropout_between_layers_in_training_only():
    torch.manual_seed(3)
    ours = nn.GRU(3, 4, num_layers=2, dropout=0.5).double()
    native = native_of(ours)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    torch.manual_seed(4)
    first = ours(x)[0]
    torch.manual_seed(4)
    again = ours(x)[0]
    torch.testing.assert_close(first, again)  # the mask is drawn from torch's RNG
    counts = testing.graph_node_counts(ours(x)[0])
    assert counts["explicit"].get("DropoutBackward") == 1 and not counts["builtin"]
    assert not torch.allclose(first, ours.eval()(x)[0])
    torch.testing.assert_close(ours(x)[0], native.eval()(x)[0], rtol=1e-10, atol=1e-12)


def test_convert_swaps_recurrent_layers_and_to_torch_swaps_back():
    torch.manual_seed(5)
    model = torch.nn.Sequential()
    model.lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    model.gru = torch.nn.GRU(8, 4, batch_first=True)
    converted, report = nn.convert(model)
    assert report.unconverted == {}
    assert type(converted.lstm) is nn.LSTM and type(converted.gru) is nn.GRU

    def run(m, x):
        return m.gru(m.lstm(x)[0])[0].sum()

    x = torch.randn(2, 5, 3)
    loss = run(converted, x)
    assert not testing.graph_node_counts(loss)["builtin"] - {"SumBackward0": 1}.keys()
    torch.testing.assert_close(loss, run(model, x))
    back = nn.to_torch(converted)
    assert type(back.lstm) is torch.nn.LSTM and type(back.gru) is torch.nn.GRU


def test_bad_input_names_the_layer():
    layer = nn.LSTM(3, 4, batch_first=True)
    with pytest.raises(ShapeError, match=r"LSTM\(3, 4, batch_first=True\): expected input of "
                                         r"shape \(L, H_in\) or \(N, L, H_in\) with H_in = 3, "
                                         r"got \(2, 5, 2\)"):
        layer(torch.randn(2, 5, 2))
    with pytest.raises(ShapeError, match=r"GRUCell\(3, 4\): expected input of shape \(H_in,\) "
                                         r"or \(N, H_in\) with H_in = 3, got \(1, 2, 3\)"):
        nn.GRUCell(3, 4)(torch.randn(1, 2, 3))
    with pytest.raises(ShapeError, match=r"LSTM\(3, 4, batch_first=True\): expected hx\[1\] "
                                         r"of shape \(1, N, 4\), got \(1, 2, 5\)"):
        layer(torch.randn(2, 5, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 5)))
    packed = pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with pytest.raises(TypeError, match=r"GRU\(3, 4\): a PackedSequence is not supported"):
        nn.GRU(3, 4)(packed)
