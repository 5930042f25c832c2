"""Recurrent modules (RNN, LSTM, GRU and their cells), computed by the explicit rules.

Each subclasses its ``torch.nn`` namesake (constructor, parameter names such as
``weight_hh_l0_reverse`` and ``weight_hr_l0``, initialization and ``state_dict`` are torch's)
and overrides only ``forward``, which calls :mod:`trainer.functional.recurrent` with the flat
weights in torch's order. A ``PackedSequence`` input is refused with a message: pad it.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from trainer import functional as F
from trainer.functional._util import ShapeError, shape_str
from trainer.functional.shape import Reshape

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"]


def _unsqueeze(t: Tensor, dim: int) -> Tensor:
    return Reshape.apply(t, (*t.shape[:dim], 1, *t.shape[dim:]))


def _squeeze(t: Tensor, dim: int) -> Tensor:
    return Reshape.apply(t, (*t.shape[:dim], *t.shape[dim + 1:]))


class _LayersForward:
    """``torch.nn.RNNBase.forward`` for tensors: unbatched input (L, H_in) taken as a batch of
    one, zero initial states when none is given, then the entry point of ``self.mode``."""

    def _sequence(self, input: Tensor) -> tuple[Tensor, bool]:
        if isinstance(input, PackedSequence):
            raise TypeError(f"{self!r}: a PackedSequence is not supported by the explicit "
                            "recurrent layers; pad it (torch.nn.utils.rnn.pad_packed_sequence) "
                            "and pass the padded tensor, or use torch's module (to_torch)")
        layout = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
        if (not isinstance(input, Tensor) or input.dim() not in (2, 3)
                or input.shape[-1] != self.input_size):
            got = shape_str(input) if isinstance(input, Tensor) else type(input).__name__
            raise ShapeError(f"{self!r}: expected input of shape (L, H_in) or {layout} with "
                             f"H_in = {self.input_size}, got {got}")
        batched = input.dim() == 3
        if not batched:
            input = _unsqueeze(input, 0 if self.batch_first else 1)
        return input, batched

    def _zeros(self, input: Tensor, size: int) -> Tensor:
        layers = self.num_layers * (2 if self.bidirectional else 1)
        batch = input.shape[0 if self.batch_first else 1]
        return torch.zeros(layers, batch, size, dtype=input.dtype, device=input.device)

    def _states(self, hx, batched: bool):
        if hx is None:
            return hx
        pair = isinstance(self, torch.nn.LSTM)
        states = tuple(hx) if pair and isinstance(hx, (tuple, list)) else (hx,)
        sizes = [getattr(self, "proj_size", 0) or self.hidden_size, self.hidden_size][:len(states)]
        lead = (self.num_layers * (2 if self.bidirectional else 1),)
        for i, (h, size) in enumerate(zip(states, sizes)):
            if not isinstance(h, Tensor) or h.dim() != (3 if batched else 2) or (
                    h.shape[0], h.shape[-1]) != (lead[0], size) or len(states) != 1 + pair:
                name = f"hx[{i}]" if pair else "hx"
                got = shape_str(h) if isinstance(h, Tensor) else type(h).__name__
                expected = f"({lead[0]}, N, {size})" if batched else f"({lead[0]}, {size})"
                raise ShapeError(f"{self!r}: expected {name} of shape {expected}, got {got}")
        if not batched:
            states = tuple(_unsqueeze(h, 1) for h in states)
        return states if pair else states[0]

    def _finish(self, output: Tensor, states, batched: bool):
        if batched:
            return output, states
        output = _squeeze(output, 0 if self.batch_first else 1)
        if isinstance(states, tuple):
            return output, tuple(_squeeze(h, 1) for h in states)
        return output, _squeeze(states, 1)

    def _run(self, entry, input: Tensor, hx):
        return entry(input, hx, self._flat_weights, self.bias, self.num_layers,
                     float(self.dropout), self.training, self.bidirectional, self.batch_first)


class RNN(_LayersForward, torch.nn.RNN):
    """:class:`torch.nn.RNN` through :func:`trainer.functional.rnn_tanh` (or ``rnn_relu``)."""

    def forward(self, input: Tensor, hx: Tensor | None = None):
        input, batched = self._sequence(input)
        hx = self._states(hx, batched)
        if hx is None:
            hx = self._zeros(input, self.hidden_size)
        entry = F.rnn_tanh if self.nonlinearity == "tanh" else F.rnn_relu
        return self._finish(*self._run(entry, input, hx), batched)


class GRU(_LayersForward, torch.nn.GRU):
    """:class:`torch.nn.GRU` through :func:`trainer.functional.gru`."""

    def forward(self, input: Tensor, hx: Tensor | None = None):
        input, batched = self._sequence(input)
        hx = self._states(hx, batched)
        if hx is None:
            hx = self._zeros(input, self.hidden_size)
        return self._finish(*self._run(F.gru, input, hx), batched)


class LSTM(_LayersForward, torch.nn.LSTM):
    """:class:`torch.nn.LSTM` through :func:`trainer.functional.lstm`; with ``proj_size`` h
    is projected by ``weight_hr_l{k}``."""

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        input, batched = self._sequence(input)
        hx = self._states(hx, batched)
        if hx is None:
            hx = (self._zeros(input, self.proj_size or self.hidden_size),
                  self._zeros(input, self.hidden_size))
        output, h, c = self._run(F.lstm, input, hx)
        return self._finish(output, (h, c), batched)


class _CellForward:
    """``torch.nn.RNNCellBase`` forwards: unbatched input (H_in,) as a batch of one, a zero
    state when none is given."""

    def _step(self, entry, input: Tensor, hx, pair: bool = False):
        if (not isinstance(input, Tensor) or input.dim() not in (1, 2)
                or input.shape[-1] != self.input_size):
            got = shape_str(input) if isinstance(input, Tensor) else type(input).__name__
            raise ShapeError(f"{self!r}: expected input of shape (H_in,) or (N, H_in) with "
                             f"H_in = {self.input_size}, got {got}")
        batched = input.dim() == 2
        if not batched:
            input = _unsqueeze(input, 0)
            if hx is not None:
                hx = tuple(_unsqueeze(h, 0) for h in hx) if pair else _unsqueeze(hx, 0)
        if hx is None:
            zeros = torch.zeros(input.shape[0], self.hidden_size, dtype=input.dtype,
                                device=input.device)
            hx = (zeros, zeros) if pair else zeros
        out = entry(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if batched:
            return out
        return tuple(_squeeze(h, 0) for h in out) if pair else _squeeze(out, 0)


class RNNCell(_CellForward, torch.nn.RNNCell):
    """:class:`torch.nn.RNNCell` through :func:`trainer.functional.rnn_tanh_cell` (or
    ``rnn_relu_cell``)."""

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        entry = F.rnn_tanh_cell if self.nonlinearity == "tanh" else F.rnn_relu_cell
        return self._step(entry, input, hx)


class GRUCell(_CellForward, torch.nn.GRUCell):
    """:class:`torch.nn.GRUCell` through :func:`trainer.functional.gru_cell`."""

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(F.gru_cell, input, hx)


class LSTMCell(_CellForward, torch.nn.LSTMCell):
    """:class:`torch.nn.LSTMCell` through :func:`trainer.functional.lstm_cell`."""

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        return self._step(F.lstm_cell, input, hx, pair=True)
