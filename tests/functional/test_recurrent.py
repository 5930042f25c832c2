"""lstm, gru, rnn_tanh, rnn_relu and their cells: what the standard checks of
tests/test_rule_checks.py cannot reach. torch's signatures hold the states and weights in
lists, which gradcheck does not enter, so here every gradient (states and weights too) is
compared with torch's and checked by gradcheck and gradgradcheck; options and shapes by
hypothesis; per-sample gradients of the cells under vmap; trainer.explicit() routing torch's
calls; the bytes kept for backward; and the error messages."""

import inspect

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

import trainer
import trainer.functional as F
from trainer import testing

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def leaf(*shape, dtype=torch.float64):
    return torch.randn(shape, dtype=dtype).requires_grad_()


def layer_case(kind, steps=4, batch=3, size=5, hidden=6, layers=1, bidirectional=False,
               batch_first=False, bias=True, proj=0, dtype=torch.float64):
    """(x, states, params, options): torch.<kind>'s arguments, every tensor a leaf."""
    directions = 2 if bidirectional else 1
    out = proj or hidden
    params = []
    for layer in range(layers):
        for _ in range(directions):
            width = size if layer == 0 else directions * out
            params += [leaf(GATES[kind] * hidden, width, dtype=dtype),
                       leaf(GATES[kind] * hidden, out, dtype=dtype)]
            params += [leaf(GATES[kind] * hidden, dtype=dtype) for _ in range(2 * bias)]
            params += [leaf(out, hidden, dtype=dtype)] if proj else []
    x = leaf(*((batch, steps) if batch_first else (steps, batch)), size, dtype=dtype)
    states = [leaf(layers * directions, batch, out, dtype=dtype)]
    if kind == "lstm":
        states.append(leaf(layers * directions, batch, hidden, dtype=dtype))
    options = (bias, layers, 0.0, True, bidirectional, batch_first)
    return x, states, params, options


def call(op, kind, x, states, params, options):
    hx = states if kind == "lstm" else states[0]
    return op(x, hx, params, *options)


def assert_layer_matches_torch(kind, case, **tolerance):
    x, states, params, options = case
    leaves = [x, *states, *params]
    ours = call(getattr(F, kind), kind, *case)
    theirs = call(getattr(torch, kind), kind, *case)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **tolerance)
    g = [torch.randn_like(t) for t in theirs]
    for a, b in zip(torch.autograd.grad(ours, leaves, g), torch.autograd.grad(theirs, leaves, g),
                    strict=True):
        torch.testing.assert_close(a, b, **tolerance)
    testing.assert_explicit_graph(ours)


def test_signatures_are_torchs():
    layer = ["input", "hx", "params", "has_biases", "num_layers", "dropout", "train",
             "bidirectional", "batch_first"]
    for name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        assert list(inspect.signature(getattr(F, name)).parameters) == layer
    for name in ("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"):
        parameters = inspect.signature(getattr(F, name)).parameters
        assert list(parameters) == ["input", "hx", "w_ih", "w_hh", "b_ih", "b_hh"]
        assert parameters["b_ih"].default is None


OPTIONS = [  # layers, bidirectional, batch_first, bias, proj
    (1, False, False, True, 0), (2, True, True, False, 0), (2, False, False, True, 0),
    (1, True, False, True, 0), (2, True, False, True, 3), (1, False, True, False, 2),
]


#: Each kind with each option set (proj_size is the LSTM's alone).
KIND_OPTIONS = [(kind, *options) for options in OPTIONS for kind in GATES
                if not options[4] or kind == "lstm"]


@pytest.mark.parametrize("kind,layers,bidirectional,batch_first,bias,proj", KIND_OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layers_match_torch_in_value_and_every_gradient(kind, layers, bidirectional,
                                                        batch_first, bias, proj, dtype):
    torch.manual_seed(0)
    case = layer_case(kind, layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                      bias=bias, proj=proj, dtype=dtype)
    tolerance = ({"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64
                 else {"rtol": 1e-4, "atol": 1e-5})
    assert_layer_matches_torch(kind, case, **tolerance)


@pytest.mark.parametrize("kind", GATES)
def test_layers_gradcheck_and_gradgradcheck_every_input(kind):
    """States and weights too; two layers, both directions, batch first (and a projection)."""
    torch.manual_seed(1)
    x, states, params, options = layer_case(kind, steps=3, batch=2, size=2, hidden=2, layers=2,
                                            bidirectional=True, batch_first=True,
                                            proj=1 if kind == "lstm" else 0)
    count = len(states)

    def op(x, *rest):
        return call(getattr(F, kind), kind, x, list(rest[:count]), list(rest[count:]), options)

    testing.assert_gradcheck(op, x, *states, *params)


CELLS = {"lstm_cell": 4, "gru_cell": 3, "rnn_tanh_cell": 1, "rnn_relu_cell": 1}


def cell_case(name, batch=3, size=4, hidden=5, bias=True, dtype=torch.float64):
    gates = CELLS[name] * hidden
    states = [leaf(batch, hidden, dtype=dtype) for _ in range(2 if name == "lstm_cell" else 1)]
    weights = [leaf(gates, size, dtype=dtype), leaf(gates, hidden, dtype=dtype)]
    weights += [leaf(gates, dtype=dtype), leaf(gates, dtype=dtype)] if bias else []
    return leaf(batch, size, dtype=dtype), states, weights


def cell_call(op, name, x, states, weights):
    return op(x, states if name == "lstm_cell" else states[0], *weights)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_cells_match_torch_and_gradgradcheck(name, bias):
    torch.manual_seed(2)
    x, states, weights = cell_case(name, bias=bias)
    count = len(states)

    def ours(x, *rest):
        return cell_call(getattr(F, name), name, x, list(rest[:count]), rest[count:])

    def theirs(x, *rest):
        return cell_call(getattr(torch, name), name, x, list(rest[:count]), rest[count:])

    testing.assert_matches_reference(ours, theirs, x, *states, *weights)
    testing.assert_gradcheck(ours, x, *states, *weights)
    testing.assert_explicit_graph(ours(x, *states, *weights))


@pytest.mark.parametrize("name", CELLS)
def test_cells_per_sample_gradients_under_vmap_equal_a_loop(name):
    torch.manual_seed(3)
    x, states, weights = cell_case(name, batch=4, dtype=torch.float32)
    params = [w.detach().requires_grad_() for w in weights]

    count = len(params)

    def loss(*args):
        ws, sample, state = args[:count], args[count], args[count + 1:]
        rows = [s.unsqueeze(0) for s in state]
        out = cell_call(getattr(F, name), name, sample.unsqueeze(0), rows, ws)
        return sum(o.square().sum() for o in (out if isinstance(out, tuple) else (out,)))

    testing.assert_vmap_matches_loop(loss, params, [x.detach(), *(s.detach() for s in states)])


@st.composite
def layer_options(draw):
    kind = draw(st.sampled_from(list(GATES)))
    hidden = draw(st.integers(1, 4))
    return kind, dict(steps=draw(st.integers(1, 4)), batch=draw(st.integers(1, 3)),
                      size=draw(st.integers(1, 3)), hidden=hidden,
                      layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()),
                      batch_first=draw(st.booleans()), bias=draw(st.booleans()),
                      proj=draw(st.integers(0, hidden - 1)) if kind == "lstm" else 0)


@FAST
@given(layer_options())
def test_layers_match_torch_over_shapes_and_options(case):
    kind, options = case
    assert_layer_matches_torch(kind, layer_case(kind, **options), rtol=1e-9, atol=1e-10)


def test_compile_fullgraph_with_weights_requiring_grad():
    """The standard check compiles with the listed weights fixed; here they learn too."""
    torch.manual_seed(4)
    x, states, params, options = layer_case("lstm", steps=3, batch=2, size=3, hidden=4,
                                            bidirectional=True, dtype=torch.float32)

    def op(x, h, c, *params):
        return F.lstm(x, [h, c], list(params), *options)

    testing.assert_compile_matches_eager(op, x, *states, *params)


# --- trainer.explicit(): torch's own modules reach the rules ---------------------------------


@pytest.mark.parametrize("module,entry", [
    (lambda: torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True), "lstm"),
    (lambda: torch.nn.LSTM(3, 4, proj_size=2, batch_first=True), "lstm"),
    (lambda: torch.nn.GRU(3, 4, bias=False), "gru"),
    (lambda: torch.nn.RNN(3, 4, nonlinearity="relu"), "rnn_relu"),
    (lambda: torch.nn.RNN(3, 4), "rnn_tanh"),
    (lambda: torch.nn.LSTMCell(3, 4), "lstm_cell"),
    (lambda: torch.nn.GRUCell(3, 4), "gru_cell"),
    (lambda: torch.nn.RNNCell(3, 4, nonlinearity="relu"), "rnn_relu_cell"),
])
def test_explicit_routes_torch_modules_to_the_rules(module, entry):
    torch.manual_seed(5)
    layer = module().double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    sample = x[0] if "Cell" in type(layer).__name__ else x
    native = layer(sample)
    with trainer.explicit(strict=True) as report:
        ours = layer(sample)
    assert report.explicit[entry] == 1 and not report.fallback
    native, ours = testing._tensors(native), testing._tensors(ours)
    for a, b in zip(ours, native, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert not testing.graph_node_counts(ours)["builtin"]


def test_a_packed_sequence_runs_natively_under_explicit_and_is_refused_by_the_functional():
    layer = torch.nn.GRU(3, 4)
    packed = pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with trainer.explicit() as report:
        layer(packed)
    assert not report.explicit and report.fallback  # the adapter leaves it to torch, counted
    with pytest.raises(TypeError, match="gru: a packed sequence .* is not supported"):
        F.gru(packed.data, packed.batch_sizes, torch.zeros(1, 2, 4),
              list(layer._flat_weights), True, 1, 0.0, False, False)


# --- what backward keeps, and the errors -----------------------------------------------------


def test_lstm_keeps_its_gates_and_cells_not_every_product():
    """Against native's loop of built-in ops (a projection keeps torch off its fused kernel):
    the gates, the cell states, c0 and the inputs, no more."""
    torch.manual_seed(6)
    x, states, params, options = layer_case("lstm", steps=20, batch=8, size=16, hidden=32,
                                            proj=31, dtype=torch.float32)
    kept = testing.saved_bytes(lambda: call(F.lstm, "lstm", x, states, params, options))
    native = testing.saved_bytes(lambda: call(torch.lstm, "lstm", x, states, params, options))
    steps, batch, hidden = 20, 8, 32
    gates_and_cells = 5 * steps * batch * hidden * 4
    inputs = sum(t.numel() * 4 for t in (x, *states, *params))
    outputs = steps * batch * 31 * 4  # y, for ∂W_hh
    assert kept <= gates_and_cells + inputs + outputs + batch * hidden * 4
    assert kept < native


@pytest.mark.parametrize("call_it,message", [
    (lambda: F.lstm(torch.randn(4, 5), [torch.zeros(1, 4, 6)] * 2, [], True, 1, 0.0, False,
                    False, False), r"lstm: expected input of shape \(T, N, input_size\), got "
                                   r"input \(4, 5\)"),
    (lambda: F.gru(torch.randn(0, 2, 3), torch.zeros(1, 2, 4), [], True, 1, 0.0, False, False,
                   False), r"gru: expected a sequence of at least one step"),
    (lambda: F.gru(torch.randn(5, 2, 3), torch.zeros(1, 3, 4), [], True, 1, 0.0, False, False,
                   False), r"gru: expected hx\[0\] of shape \(1, 2, 4\), got hx\[0\] \(1, 3, 4\)"),
    (lambda: F.rnn_tanh(torch.randn(5, 2, 3), torch.zeros(1, 2, 4), [torch.zeros(4, 3)], True,
                        1, 0.0, False, False, False),
     r"rnn_tanh: expected 4 tensors in params \(4 per layer and direction\), got 1"),
    (lambda: F.lstm(torch.randn(5, 2, 3), [torch.zeros(1, 2, 4)] * 2,
                    [torch.zeros(16, 2), torch.zeros(16, 4)], False, 1, 0.0, False, False, False),
     r"lstm: expected w_ih of layer 0 of shape \(16, 3\), got w_ih of layer 0 \(16, 2\)"),
    (lambda: F.lstm_cell(torch.randn(2, 3), torch.zeros(2, 4), torch.zeros(16, 3),
                         torch.zeros(16, 4)), r"lstm_cell: expected hx as a pair \(h, c\)"),
    (lambda: F.gru_cell(torch.randn(3), torch.zeros(4), torch.zeros(12, 3), torch.zeros(12, 4)),
     r"gru_cell: expected input of shape \(N, input_size\), got input \(3\)"),
])
def test_bad_input_names_the_op_and_shapes(call_it, message):
    with pytest.raises(F.ShapeError, match=message):
        call_it()
