"""Transposed convolution: the adjoint of convolution, with its gradient written out."""

from __future__ import annotations

__all__: list[str] = []
