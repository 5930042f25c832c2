"""Matrix products (matmul, mm, bmm, addmm, baddbmm, einsum), each with its gradients written out."""

from __future__ import annotations

__all__: list[str] = []
