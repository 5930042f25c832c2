"""Resampling: interpolate / upsample (nearest, linear, bilinear) and pixel shuffle."""

from __future__ import annotations

__all__: list[str] = []
