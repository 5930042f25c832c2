"""The activations of mobile nets and transformers beyond activation.py's (hardtanh, relu6, hardswish, hardsigmoid, elu, softplus, mish, glu, logsigmoid), each with its derivative written out."""

from __future__ import annotations

__all__: list[str] = []
