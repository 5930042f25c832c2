"""The activation modules beyond activation.py's, computed by the explicit rules of
:mod:`trainer.functional.activation_piecewise` and :mod:`trainer.functional.activation_smooth`."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer import functional as F


class Hardtanh(torch.nn.Hardtanh):
    """:class:`torch.nn.Hardtanh` through :func:`trainer.functional.hardtanh`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)


class ReLU6(torch.nn.ReLU6):
    """:class:`torch.nn.ReLU6` through :func:`trainer.functional.hardtanh` between its bounds
    (0 and 6), which torch's forward reads as this one does."""

    def forward(self, input: Tensor) -> Tensor:
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)


class Hardswish(torch.nn.Hardswish):
    """:class:`torch.nn.Hardswish` through :func:`trainer.functional.hardswish`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.hardswish(input, self.inplace)


class Hardsigmoid(torch.nn.Hardsigmoid):
    """:class:`torch.nn.Hardsigmoid` through :func:`trainer.functional.hardsigmoid`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.hardsigmoid(input, self.inplace)


class PReLU(torch.nn.PReLU):
    """:class:`torch.nn.PReLU` through :func:`trainer.functional.prelu`: its learned slopes
    (``num_parameters`` of them, each ``init``) are torch's own parameter."""

    def forward(self, input: Tensor) -> Tensor:
        return F.prelu(input, self.weight)


class ELU(torch.nn.ELU):
    """:class:`torch.nn.ELU` through :func:`trainer.functional.elu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.elu(input, self.alpha, self.inplace)


class SELU(torch.nn.SELU):
    """:class:`torch.nn.SELU` through :func:`trainer.functional.selu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.selu(input, self.inplace)


class CELU(torch.nn.CELU):
    """:class:`torch.nn.CELU` through :func:`trainer.functional.celu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.celu(input, self.alpha, self.inplace)


class Softplus(torch.nn.Softplus):
    """:class:`torch.nn.Softplus` through :func:`trainer.functional.softplus`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.softplus(input, self.beta, self.threshold)


class Mish(torch.nn.Mish):
    """:class:`torch.nn.Mish` through :func:`trainer.functional.mish`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.mish(input, self.inplace)


class GLU(torch.nn.GLU):
    """:class:`torch.nn.GLU` through :func:`trainer.functional.glu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.glu(input, self.dim)


class LogSigmoid(torch.nn.LogSigmoid):
    """:class:`torch.nn.LogSigmoid` through :func:`trainer.functional.logsigmoid`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.logsigmoid(input)
