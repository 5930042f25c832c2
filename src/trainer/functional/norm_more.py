"""RMS and group normalization, with their gradients written out."""

from __future__ import annotations

__all__: list[str] = []
