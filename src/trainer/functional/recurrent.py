"""Recurrent layers and cells (RNN, LSTM, GRU) with torch's signatures: ``torch.lstm``,
``torch.gru``, ``torch.rnn_tanh``, ``torch.rnn_relu`` (what ``nn.LSTM``, ``nn.GRU`` and
``nn.RNN`` call) and ``torch.lstm_cell``, ``torch.gru_cell``, ``torch.rnn_tanh_cell``,
``torch.rnn_relu_cell`` (the ``nn.*Cell`` modules').

Each layer and direction is one Function of :mod:`trainer.functional.bptt`, whose backward
is backpropagation through time written out; a cell is one step of that Function. A stack of
layers joins them with the explicit moves of :mod:`trainer.functional._sequence`, and dropout
between layers is :func:`trainer.functional.dropout`. A packed sequence is refused, with a
message saying so.
"""

from __future__ import annotations

from torch import Tensor

from ._sequence import (CatFeatures, Stack, SwapTime, Unbind, check_sequence, check_state,
                        check_weights)
from ._util import fail
from .bptt import GRULayer, LSTMLayer, RNNLayer
from .dropout import dropout as _dropout
from .shape import Reshape

__all__ = ["gru", "gru_cell", "lstm", "lstm_cell", "rnn_relu", "rnn_relu_cell", "rnn_tanh",
           "rnn_tanh_cell"]

def _run_layers(op: str, input: Tensor, hx: list[Tensor], params: list[Tensor],
                has_biases: bool, num_layers: int, dropout: float, train: bool,
                bidirectional: bool, batch_first: bool, nonlinearity: str | None = None):
    """A stack of ``num_layers`` layers, each one Function per direction, with dropout on each
    layer's output but the last (in training): torch.lstm's, torch.gru's and torch.rnn_*'s
    semantics, their state list ``hx`` ((h0,) or (h0, c0)) and flat ``params``."""
    check_sequence(op, input, batch_first)
    x = SwapTime.apply(input) if batch_first else input
    batch = x.shape[1]
    directions = 2 if bidirectional else 1
    layers = num_layers * directions
    lstm, h0 = len(hx) == 2, hx[0]
    out_size = h0.shape[-1] if isinstance(h0, Tensor) and h0.dim() == 3 else -1
    hidden = hx[1].shape[-1] if lstm and isinstance(hx[1], Tensor) and hx[1].dim() else out_size
    check_state(op, "hx[0]", h0, (layers, batch, out_size))
    if lstm:
        check_state(op, "hx[1]", hx[1], (layers, batch, hidden))
    proj = out_size != hidden
    per = 2 + 2 * bool(has_biases) + proj  # w_ih, w_hh[, b_ih, b_hh][, w_hr]
    if len(params) != layers * per:
        raise fail(op, f"{layers * per} tensors in params ({per} per layer and direction)",
                   f"{len(params)}")
    gates = {"lstm": 4, "gru": 3}.get(op, 1)
    h0s = Unbind.apply(h0)
    c0s = Unbind.apply(hx[1]) if lstm else None
    finals_h, finals_c = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(directions):
            k = layer * directions + d
            w_ih, w_hh, *rest = params[k * per:(k + 1) * per]
            b_ih, b_hh = rest[:2] if has_biases else (None, None)
            w_hr = rest[-1] if proj else None
            check_weights(op, f" of layer {layer}" + (" reverse" if d else ""), x.shape[-1],
                          hidden, gates, out_size, w_ih, w_hh, b_ih, b_hh, w_hr)
            if lstm:
                y, h, c, _, _ = LSTMLayer.apply(x, h0s[k], c0s[k], w_ih, w_hh, b_ih, b_hh, w_hr,
                                                bool(d), not proj)  # native fuses w/o proj
                finals_c.append(c)
            elif op == "gru":
                y, h, _ = GRULayer.apply(x, h0s[k], w_ih, w_hh, b_ih, b_hh, bool(d))
            else:
                y, h = RNNLayer.apply(x, h0s[k], w_ih, w_hh, b_ih, b_hh, nonlinearity, bool(d))
            outs.append(y)
            finals_h.append(h)
        x = CatFeatures.apply(*outs) if directions == 2 else outs[0]
        if dropout and train and layer < num_layers - 1:
            x = _dropout(x, dropout, True)
    output = SwapTime.apply(x) if batch_first else x
    if lstm:
        return output, Stack.apply(*finals_h), Stack.apply(*finals_c)
    return output, Stack.apply(*finals_h)


def _refuse_packed(op: str, packed: bool) -> None:
    """torch.X(data, batch_sizes, hx, params, ...), the packed overload: refused."""
    if packed:
        raise TypeError(f"{op}: a packed sequence (data, batch_sizes) is not supported by the "
                        "explicit recurrent layers; pad it and pass the padded tensor")


def lstm(input: Tensor, hx: list[Tensor], params: list[Tensor], has_biases: bool,
         num_layers: int, dropout: float, train: bool, bidirectional: bool,
         batch_first: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Explicit twin of ``torch.lstm`` (what ``nn.LSTM`` calls): ``hx`` = (h0, c0), params
    per layer and direction (w_ih, w_hh[, b_ih, b_hh][, w_hr]); a projection where h0 is
    narrower than c0. Returns (output, h_n, c_n)."""
    _refuse_packed("lstm", isinstance(hx, Tensor))
    if not isinstance(hx, (list, tuple)) or len(hx) != 2:
        raise fail("lstm", "hx as a pair (h0, c0)", f"hx {_what(hx)}")
    return _run_layers("lstm", input, list(hx), params, has_biases, num_layers, dropout,
                       train, bidirectional, batch_first)


def gru(input: Tensor, hx: Tensor, params: list[Tensor], has_biases: bool, num_layers: int,
        dropout: float, train: bool, bidirectional: bool,
        batch_first: bool) -> tuple[Tensor, Tensor]:
    """Explicit twin of ``torch.gru`` (what ``nn.GRU`` calls). Returns (output, h_n)."""
    _refuse_packed("gru", isinstance(params, Tensor))
    return _run_layers("gru", input, [hx], params, has_biases, num_layers, dropout, train,
                       bidirectional, batch_first)


def rnn_tanh(input: Tensor, hx: Tensor, params: list[Tensor], has_biases: bool,
             num_layers: int, dropout: float, train: bool, bidirectional: bool,
             batch_first: bool) -> tuple[Tensor, Tensor]:
    """Explicit twin of ``torch.rnn_tanh`` (``nn.RNN``). Returns (output, h_n)."""
    _refuse_packed("rnn_tanh", isinstance(params, Tensor))
    return _run_layers("rnn_tanh", input, [hx], params, has_biases, num_layers, dropout,
                       train, bidirectional, batch_first, "tanh")


def rnn_relu(input: Tensor, hx: Tensor, params: list[Tensor], has_biases: bool,
             num_layers: int, dropout: float, train: bool, bidirectional: bool,
             batch_first: bool) -> tuple[Tensor, Tensor]:
    """Explicit twin of ``torch.rnn_relu`` (``nn.RNN(nonlinearity='relu')``)."""
    _refuse_packed("rnn_relu", isinstance(params, Tensor))
    return _run_layers("rnn_relu", input, [hx], params, has_biases, num_layers, dropout,
                       train, bidirectional, batch_first, "relu")


def _one_step(op: str, input: Tensor, states: list[Tensor], w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    """The cells' checks; returns input as a sequence of one step, (1, N, I)."""
    if not isinstance(input, Tensor) or input.dim() != 2:
        raise fail(op, "input of shape (N, input_size)", f"input {_what(input)}")
    hidden = w_hh.shape[-1] if isinstance(w_hh, Tensor) and w_hh.dim() == 2 else -1
    names = ("hx[0]", "hx[1]") if len(states) == 2 else ("hx",)
    for name, state in zip(names, states):
        check_state(op, name, state, (input.shape[0], hidden))
    gates = {"lstm_cell": 4, "gru_cell": 3}.get(op, 1)
    check_weights(op, "", input.shape[1], hidden, gates, hidden, w_ih, w_hh, b_ih, b_hh)
    return Reshape.apply(input, (1, *input.shape))


def lstm_cell(input: Tensor, hx: list[Tensor], w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None = None, b_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Explicit twin of ``torch.lstm_cell`` (``nn.LSTMCell``): one step of :class:`LSTMLayer`.
    Returns (h', c')."""
    if not isinstance(hx, (list, tuple)) or len(hx) != 2:
        raise fail("lstm_cell", "hx as a pair (h, c)", f"hx {_what(hx)}")
    x = _one_step("lstm_cell", input, list(hx), w_ih, w_hh, b_ih, b_hh)
    _, h, c, _, _ = LSTMLayer.apply(x, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh, None, False, False)
    return h, c


def gru_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None) -> Tensor:
    """Explicit twin of ``torch.gru_cell`` (``nn.GRUCell``): one step of :class:`GRULayer`."""
    x = _one_step("gru_cell", input, [hx], w_ih, w_hh, b_ih, b_hh)
    return GRULayer.apply(x, hx, w_ih, w_hh, b_ih, b_hh, False)[1]


def rnn_tanh_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor,
                  b_ih: Tensor | None = None, b_hh: Tensor | None = None) -> Tensor:
    """Explicit twin of ``torch.rnn_tanh_cell`` (``nn.RNNCell``): one step of RNNLayer."""
    x = _one_step("rnn_tanh_cell", input, [hx], w_ih, w_hh, b_ih, b_hh)
    return RNNLayer.apply(x, hx, w_ih, w_hh, b_ih, b_hh, "tanh", False)[1]


def rnn_relu_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor,
                  b_ih: Tensor | None = None, b_hh: Tensor | None = None) -> Tensor:
    """Explicit twin of ``torch.rnn_relu_cell`` (``nn.RNNCell(nonlinearity='relu')``)."""
    x = _one_step("rnn_relu_cell", input, [hx], w_ih, w_hh, b_ih, b_hh)
    return RNNLayer.apply(x, hx, w_ih, w_hh, b_ih, b_hh, "relu", False)[1]


def _what(value: object) -> str:
    if isinstance(value, Tensor):
        return "(" + ", ".join(map(str, value.shape)) + ")"
    return f"a {type(value).__name__}"
