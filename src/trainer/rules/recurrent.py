"""The table of rules, section: recurrent cells and layers (see :mod:`trainer.rules`).

Entry points, found with a printing ``TorchFunctionMode`` (torch 2.13): ``nn.LSTM``,
``nn.GRU`` and ``nn.RNN`` call ``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh`` or
``torch.rnn_relu`` (``_VF.lstm`` is the same object) with the states as ``hx`` and the flat
weights as ``params``, positionally; the cells call ``torch.lstm_cell``, ``torch.gru_cell``,
``torch.rnn_tanh_cell`` or ``torch.rnn_relu_cell``. A packed sequence reaches the same
callables under their other overload, ``torch.lstm(data, batch_sizes, hx, params, ...)``,
which the adapters leave to torch (a counted fallback).

torch's signatures hold the states and weights in lists, where the standard checks see them
only through gradcheck; tests/functional/test_recurrent.py compares every gradient.
"""

from __future__ import annotations

from torch import Tensor

from trainer import functional as F
from trainer.functional import bptt
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

# -- adapters: torch's packed overloads are left to torch ------------------------------------


def lstm_from_torch(input, hx, *rest, **options):
    """``torch.lstm``; its packed overload (data, batch_sizes, hx, ...) runs natively."""
    if isinstance(hx, Tensor):
        return NotImplemented
    return F.lstm(input, hx, *rest, **options)


def _unpacked_only(op):
    def call(input, hx, params, *rest, **options):
        if isinstance(params, Tensor):  # (data, batch_sizes, hx, params, ...): packed
            return NotImplemented
        return op(input, hx, params, *rest, **options)
    call.__doc__ = f"``torch.{op.__name__}``; its packed overload runs natively."
    return call


# -- examples ---------------------------------------------------------------------------------


def _fixed(*shape: int):
    """A tensor held in one of torch's lists (hx, params): gradcheck cannot reach into lists,
    so these require no grad here (tests/functional/test_recurrent.py checks theirs)."""
    return x(*shape, grad=False)


def _weights(gates: int, hidden: int, sizes: list[int], bias: bool, proj: int = 0) -> list:
    """Flat params for one layer and direction per entry of ``sizes`` (its input size)."""
    out = proj or hidden
    params = []
    for size in sizes:
        params += [_fixed(gates * hidden, size), _fixed(gates * hidden, out)]
        params += [_fixed(gates * hidden), _fixed(gates * hidden)] if bias else []
        params += [_fixed(out, hidden)] if proj else []
    return params


def layer_examples(op: str, gates: int):
    def examples() -> list[Example]:
        states = (lambda k, n, h, p=0: [_fixed(k, n, p or h), _fixed(k, n, h)]) if (
            op == "lstm") else (lambda k, n, h, p=0: x(k, n, h))
        cases = [Example((x(3, 2, 2), states(1, 2, 3), _weights(gates, 3, [2], True), True, 1,
                          0.0, False, False, False), label="one layer")]
        cases.append(Example((x(2, 3, 2), states(4, 2, 2), _weights(gates, 2, [2, 2, 4, 4],
                                                                     False),
                              False, 2, 0.0, True, True, True),
                             label="2 layers, bidirectional, batch_first, no bias"))
        if op == "lstm":
            cases.append(Example((x(3, 2, 2), states(2, 2, 3, 2),
                                  _weights(4, 3, [2, 2], True, proj=2), True, 1, 0.0, False,
                                  True, False), label="bidirectional, proj_size 2"))
        return cases
    return examples


def cell_examples(op: str, gates: int):
    def examples() -> list[Example]:
        hx = (lambda: [_fixed(3, 4), _fixed(3, 4)]) if op == "lstm_cell" else (lambda: x(3, 4))
        return [Example((x(3, 2), hx(), x(gates * 4, 2), x(gates * 4, 4), x(gates * 4),
                         x(gates * 4))),
                Example((x(3, 2), hx(), x(gates * 4, 2), x(gates * 4, 4)), label="no bias")]
    return examples


_LAYER_GRADS = ("input: ∂pre W_ih over all steps  (∂pre: BPTT's loop, t = T−1..0)",
                "hx: the δh (and δc) carried past the first step",
                "params: W_ih Σ ∂preᵀ x;  W_hh Σ ∂preᵀ h_prev;  b Σ ∂pre;  W_hr Σ ∂hᵀ m")

RULES: tuple[Rule, ...] = (
    Rule(name="lstm", function=bptt.LSTMLayer,
         stands_for=("torch.lstm",), adapters={"torch.lstm": lstm_from_torch},
         twins=("trainer.nn.recurrent.LSTM",),
         grads=_LAYER_GRADS,
         saves=("the gates (i, f, g, o) and cell states c per step, c0, W_hr; x only for ∂W_ih, "
                "W_ih only for ∂x, h0 and y for ∂W_hh, W_hh past one step"),
         examples=layer_examples("lstm", 4)),
    Rule(name="gru", function=bptt.GRULayer,
         stands_for=("torch.gru",), adapters={"torch.gru": _unpacked_only(F.gru)},
         twins=("trainer.nn.recurrent.GRU",),
         grads=_LAYER_GRADS[:2] + ("params: W_ih Σ ∂x-sideᵀ x;  W_hh Σ ∂h-sideᵀ h_prev;  "
                                   "b_ih Σ ∂x-side;  b_hh Σ ∂h-side",),
         saves=("r, z, n and h W_hnᵀ + b_hn per step, h0 and y (h_prev); x only for ∂W_ih, "
                "W_ih only for ∂x, W_hh past one step"),
         examples=layer_examples("gru", 3)),
    Rule(name="rnn_tanh", function=bptt.RNNLayer,
         stands_for=("torch.rnn_tanh",), adapters={"torch.rnn_tanh": _unpacked_only(F.rnn_tanh)},
         twins=("trainer.nn.recurrent.RNN",),
         grads=_LAYER_GRADS[:2] + ("params: W_ih Σ ∂preᵀ x;  W_hh Σ ∂preᵀ h_prev;  b Σ ∂pre  "
                                   "(∂pre = ∂h ⊙ (1 − h²))",),
         saves="y (tanh′ = 1 − y²); x, W_ih, h0, W_hh each only where a gradient needs it",
         examples=layer_examples("rnn_tanh", 1)),
    Rule(name="rnn_relu", function=bptt.RNNLayer,
         stands_for=("torch.rnn_relu",), adapters={"torch.rnn_relu": _unpacked_only(F.rnn_relu)},
         twins=("trainer.nn.recurrent.RNN",),
         grads=_LAYER_GRADS[:2] + ("params: W_ih Σ ∂preᵀ x;  W_hh Σ ∂preᵀ h_prev;  b Σ ∂pre  "
                                   "(∂pre = ∂h ⊙ [h > 0])",),
         saves="y (relu′ = [y > 0]); x, W_ih, h0, W_hh each only where a gradient needs it",
         examples=layer_examples("rnn_relu", 1)),
    Rule(name="lstm_cell", function=bptt.LSTMLayer,
         stands_for=("torch.lstm_cell",),
         twins=("trainer.nn.recurrent.LSTMCell",),
         grads=("input: ∂pre W_ih", "hx: (∂pre W_hh, ∂c′ ⊙ f)",
                "w_ih: ∂preᵀ x", "w_hh: ∂preᵀ h", "b_ih: Σ ∂pre", "b_hh: Σ ∂pre"),
         saves="the gates (i, f, g, o), c′ and c; x for ∂W_ih, W_ih for ∂x, h for ∂W_hh",
         examples=cell_examples("lstm_cell", 4)),
    Rule(name="gru_cell", function=bptt.GRULayer,
         stands_for=("torch.gru_cell",),
         twins=("trainer.nn.recurrent.GRUCell",),
         grads=("input: ∂x-side W_ih", "hx: ∂h′ ⊙ z + ∂h-side W_hh",
                "w_ih: ∂x-sideᵀ x", "w_hh: ∂h-sideᵀ h", "b_ih: Σ ∂x-side", "b_hh: Σ ∂h-side"),
         saves="r, z, n, h W_hnᵀ + b_hn and h; x for ∂W_ih, W_ih for ∂x, W_hh for ∂h",
         examples=cell_examples("gru_cell", 3)),
    Rule(name="rnn_tanh_cell", function=bptt.RNNLayer,
         stands_for=("torch.rnn_tanh_cell",),
         twins=("trainer.nn.recurrent.RNNCell",),
         grads=("input: ∂pre W_ih,  ∂pre = ∂h′ ⊙ (1 − h′²)", "hx: ∂pre W_hh",
                "w_ih: ∂preᵀ x", "w_hh: ∂preᵀ h", "b_ih: Σ ∂pre", "b_hh: Σ ∂pre"),
         saves="h′; x for ∂W_ih, W_ih for ∂x, h for ∂W_hh, W_hh for ∂h",
         examples=cell_examples("rnn_tanh_cell", 1)),
    Rule(name="rnn_relu_cell", function=bptt.RNNLayer,
         stands_for=("torch.rnn_relu_cell",),
         twins=("trainer.nn.recurrent.RNNCell",),
         grads=("input: ∂pre W_ih,  ∂pre = ∂h′ ⊙ [h′ > 0]", "hx: ∂pre W_hh",
                "w_ih: ∂preᵀ x", "w_hh: ∂preᵀ h", "b_ih: Σ ∂pre", "b_hh: Σ ∂pre"),
         saves="h′; x for ∂W_ih, W_ih for ∂x, h for ∂W_hh, W_hh for ∂h",
         examples=cell_examples("rnn_relu_cell", 1)),
)
