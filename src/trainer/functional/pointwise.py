"""Pointwise arithmetic and math (add, mul, exp, clamp, where, ...), each with its derivative written out."""

from __future__ import annotations

__all__: list[str] = []
