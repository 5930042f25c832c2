"""More loss modules, computed by the explicit rules."""

from __future__ import annotations

__all__: list[str] = []
