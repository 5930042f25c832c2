"""Reductions (sum, mean, var, amax, logsumexp, ...), each with its gradient written out."""

from __future__ import annotations

__all__: list[str] = []
