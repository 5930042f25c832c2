"""More losses: binary cross-entropy (with logits), L1, smooth L1, Huber, KL divergence, cosine embedding."""

from __future__ import annotations

__all__: list[str] = []
