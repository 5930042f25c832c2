"""A recurrent classifier: samples read as sequences, through a GRU, LSTM or plain RNN.

Signals ``(C, L)`` (MNIST-1D: ``(1, 40)``) are L steps of C features, images ``(C, H, W)`` H
steps (rows) of ``C·W`` features, points ``(D,)`` D steps of one feature. The last layer's final
state (both directions' when bidirectional) goes through LayerNorm and a Linear head.
"""

from __future__ import annotations

from torch import Tensor

import trainer.nn as nn
from trainer.functional.shape import reshape

from .common import ModelInputError

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class RecurrentClassifier(nn.Module):
    """sequence -> GRU | LSTM | RNN (num_layers, bidirectional) -> h_T -> LayerNorm -> Linear."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, cell: str = "gru",
                 hidden: int = 64, layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ModelInputError("model.cell", f"unknown cell {cell!r}; known: "
                                  f"{', '.join(CELLS)}")
        self.input_shape = tuple(input_shape)
        steps, features = self.sequence_layout(self.input_shape)
        self.recurrent = CELLS[cell](features, hidden, num_layers=layers, batch_first=True,
                                     bidirectional=bidirectional,
                                     dropout=dropout if layers > 1 else 0.0)
        width = hidden * (2 if bidirectional else 1)
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)

    @staticmethod
    def sequence_layout(input_shape: tuple[int, ...]) -> tuple[int, int]:
        """``(steps, features per step)`` for samples of ``input_shape``."""
        if len(input_shape) == 3:
            return input_shape[1], input_shape[0] * input_shape[2]
        if len(input_shape) == 2:
            return input_shape[1], input_shape[0]
        if len(input_shape) == 1:
            return input_shape[0], 1
        raise ModelInputError("model", f"rnn takes points (D,), signals (C, L) or images "
                              f"(C, H, W); the data gives {input_shape}")

    def sequence(self, x: Tensor) -> Tensor:
        """(B, *sample) -> (B, steps, features), batch first."""
        batch = x.shape[0]
        steps, features = self.sequence_layout(self.input_shape)
        if x.dim() == 4:  # (B, C, H, W) -> (B, H, C, W): rows are the steps
            x = x.transpose(1, 2)
        elif x.dim() == 3 and x.shape[1] > 1:  # (B, C, L) -> (B, L, C)
            x = x.transpose(1, 2)
        return reshape(x, (batch, steps, features))

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.recurrent(self.sequence(x))
        h = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        directions = 2 if self.recurrent.bidirectional else 1
        last = h[-directions:].transpose(0, 1)  # the last layer's final states, (B, D, H)
        return self.classifier(self.norm(reshape(last, (x.shape[0], -1))))


def rnn(input_shape: tuple[int, ...], num_classes: int, **options) -> RecurrentClassifier:
    return RecurrentClassifier(input_shape, num_classes, **options)
