"""Recurrent cells and layers (RNN, LSTM, GRU), backpropagation through time written out."""

from __future__ import annotations

__all__: list[str] = []
