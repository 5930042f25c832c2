"""Recurrent modules (RNN, LSTM, GRU and their cells), computed by the explicit rules."""

from __future__ import annotations

__all__: list[str] = []
