"""Transposed convolutions, upsampling, adaptive max pooling and pixel shuffle modules, computed by the explicit rules."""

from __future__ import annotations

__all__: list[str] = []
