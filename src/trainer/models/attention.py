"""A small self-attention classifier: samples become sequences of tokens.

Images ``(C, H, W)`` give one token per row (``C·W`` features), signals ``(C, L)`` one token per
chunk of ``patch`` samples (``C·patch`` features), points ``(D,)`` one token per coordinate.
"""

from __future__ import annotations

import torch
from torch import Tensor

import trainer.functional as F
import trainer.nn as nn
from trainer.functional.shape import reshape

from .common import ModelInputError


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``softmax(Q Kᵀ / √d) V`` per head, heads joined by ``out``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ModelInputError("model.heads", f"must divide model.dim={dim}, got {heads}")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        # (B, T, D) -> (B, T, H, D/H) -> (B, H, T, D/H): attention runs over T, per head.
        return reshape(x, (batch, tokens, self.heads, dim // self.heads)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = (self._split_heads(layer(x)) for layer in (self.query, self.key, self.value))
        mixed = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(reshape(mixed.transpose(1, 2), (batch, tokens, dim)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(),
                                 nn.Linear(dim * mlp_ratio, dim))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x)))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class AttentionClassifier(nn.Module):
    """Tokens -> Linear embedding + learned positions -> blocks -> LayerNorm -> mean -> Linear."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, dim: int = 64,
                 heads: int = 4, layers: int = 2, mlp_ratio: int = 2, patch: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.patch = patch
        tokens, features = self.token_layout(self.input_shape, patch)
        self.embed = nn.Linear(features, dim)
        # A plain parameter, one learned vector per position (no Embedding lookup needed).
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio, dropout)
                                      for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    @staticmethod
    def token_layout(input_shape: tuple[int, ...], patch: int) -> tuple[int, int]:
        """``(tokens, features per token)`` for samples of ``input_shape``."""
        if len(input_shape) == 3:
            channels, height, width = input_shape
            return height, channels * width
        if len(input_shape) == 2:
            channels, length = input_shape
            if length % patch:
                raise ModelInputError("model.patch", f"must divide the signal length {length}, "
                                      f"got {patch}")
            return length // patch, channels * patch
        if len(input_shape) == 1:
            return input_shape[0], 1
        raise ModelInputError("model", f"attention takes points (D,), signals (C, L) or images "
                              f"(C, H, W); the data gives {input_shape}")

    def tokenize(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        tokens, features = self.token_layout(self.input_shape, self.patch)
        if x.dim() == 4:  # (B, C, H, W) -> (B, H, C, W): rows first, then flatten each row
            return reshape(x.transpose(1, 2), (batch, tokens, features))
        if x.dim() == 3:  # (B, C, L) -> (B, C, T, P) -> (B, T, C, P)
            chunks = reshape(x, (batch, x.shape[1], tokens, self.patch))
            return reshape(chunks.transpose(1, 2), (batch, tokens, features))
        return reshape(x, (batch, tokens, features))

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(self.tokenize(x)) + self.position
        h = self.norm(self.blocks(h))
        return self.classifier(h.mean(dim=1))


def attention(input_shape: tuple[int, ...], num_classes: int, **options) -> AttentionClassifier:
    return AttentionClassifier(input_shape, num_classes, **options)
