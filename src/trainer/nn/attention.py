"""MultiheadAttention, computed by the explicit rules."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from trainer import functional as F
from trainer.functional._util import ShapeError, shape_str

__all__: list[str] = ["MultiheadAttention"]


class MultiheadAttention(torch.nn.MultiheadAttention):
    r""":class:`torch.nn.MultiheadAttention` through :mod:`trainer.functional`: same arguments,
    parameters, initialization and ``state_dict`` (``out_proj`` stays torch's
    ``NonDynamicallyQuantizableLinear``, whose weights forward reads).

    With x_q, x_k, x_v the inputs, h = 1..H heads of width d = E/H, and B the additive mask
    (attn_mask, key_padding_mask and is_causal, bool ones as 0/−∞, summed):

        Q = x_q W_qᵀ + b_q,  K = x_k W_kᵀ + b_k,  V = x_v W_vᵀ + b_v           (linear)
        K, V += the rows bias_k, bias_v (add_bias_kv), then a zero row (add_zero_attn)
        P_h = softmax(Q_h K_hᵀ / √d + B),   A_h = dropout(P_h) V_h
        O = [A_1 … A_H] W_oᵀ + b_o                                            (linear)

    need_weights=False: A_h = scaled_dot_product_attention(Q_h, K_h, V_h, B, p, is_causal),
    which saves Q, K, V and recomputes P in backward. need_weights=True: P is returned, so
    it is built from matmul, mul, add and softmax (softmax saves P, which is the output
    anyway), averaged over heads with mean when average_attn_weights; dropout multiplies P
    by the mask torch's CPU dropout draws (bernoulli(1 − p)/(1 − p), a constant to the mul
    rule), so a seeded run equals torch's. Every gradient is those rules'; heads are split
    and joined by views and transposes. Neither torch's fast path
    (``torch._native_multi_head_attention``) nor ``F.multi_head_attention_forward`` runs.
    """

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        batched = self._check(query, key, value, key_padding_mask, attn_mask)
        if is_causal and attn_mask is None:
            raise ShapeError(f"{self._name()}: expected an attn_mask with is_causal=True (the "
                             "hint needs the mask, as torch's), got attn_mask=None")
        padding = _additive(key_padding_mask, "key_padding_mask", query.dtype, attn_mask)
        sdpa_causal = is_causal and padding is None and not need_weights
        mask = None if sdpa_causal else _additive(attn_mask, "attn_mask", query.dtype, None)

        # (N, L, E) batch first throughout; "is" is kept, as it picks the projection's form
        same_kv, same_qkv = key is value, query is key and key is value
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q, k, v = self._project(query, key, value, same_kv, same_qkv)
        n, tgt = q.shape[:2]
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(n, 1, self.embed_dim)], dim=1)
            v = torch.cat([v, self.bias_v.expand(n, 1, self.embed_dim)], dim=1)
            mask, padding = _pad_key(mask), _pad_key(padding)

        q, k, v = (t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
                   for t in (q, k, v))  # (N, H, L or S, d)
        if self.add_zero_attn:
            zeros = k.new_zeros(n, self.num_heads, 1, self.head_dim)
            k, v = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)
            mask, padding = _pad_key(mask), _pad_key(padding)
        mask = self._merge(mask, padding, n)
        p = self.dropout if self.training else 0.0

        if need_weights:
            scores = F.matmul(F.mul(q, math.sqrt(1.0 / self.head_dim)), k.transpose(-2, -1))
            weights = F.softmax(scores if mask is None else F.add(scores, mask), -1)
            if p > 0:
                weights = F.mul(weights, _dropout_noise(weights, p))
            heads = F.matmul(weights, v)
            if average_attn_weights:
                weights = F.mean(weights, dim=1)
        else:
            heads = F.scaled_dot_product_attention(q, k, v, mask, p, sdpa_causal)
            weights = None
        heads = heads.transpose(1, 2).reshape(n, tgt, self.embed_dim)
        output = F.linear(heads, self.out_proj.weight, self.out_proj.bias)

        if not batched:
            output = output.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        elif not self.batch_first:
            output = output.transpose(0, 1)
        return output, weights

    def _project(self, query, key, value, same_kv, same_qkv):
        """Q, K, V: one linear over the packed weight for self-attention, two (q; k and v)
        when key is value, three otherwise, as torch's ``_in_projection_packed``."""
        e, bias = self.embed_dim, self.in_proj_bias
        if not self._qkv_same_embed_dim:
            b_q, b_k, b_v = bias.chunk(3) if bias is not None else (None, None, None)
            return (F.linear(query, self.q_proj_weight, b_q),
                    F.linear(key, self.k_proj_weight, b_k),
                    F.linear(value, self.v_proj_weight, b_v))
        weight = self.in_proj_weight
        if same_qkv:
            return F.linear(query, weight, bias).unflatten(-1, (3, e)).unbind(-2)
        if same_kv:
            q = F.linear(query, weight[:e], bias[:e] if bias is not None else None)
            kv = F.linear(key, weight[e:], bias[e:] if bias is not None else None)
            return (q, *kv.unflatten(-1, (2, e)).unbind(-2))
        w_q, w_k, w_v = weight.chunk(3)
        b_q, b_k, b_v = bias.chunk(3) if bias is not None else (None, None, None)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def _merge(self, mask, padding, n):
        """One additive mask broadcastable to (N, H, L, S): attn_mask (L, S) as it is, or
        (N·H, L, S) as (N, H, L, S); key_padding_mask (N, S) as (N, 1, 1, S); their sum."""
        if mask is not None and mask.dim() == 3:
            mask = mask.unflatten(0, (n, self.num_heads))
        if padding is not None:
            padding = padding.reshape(n, 1, 1, padding.shape[-1])
            mask = padding if mask is None else F.add(mask, padding)
        return mask

    def _name(self) -> str:
        return f"MultiheadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads})"

    def _check(self, query, key, value, key_padding_mask, attn_mask) -> bool:
        """torch's checks of ``F._mha_shape_check`` and more, raised as ShapeError naming the
        layer and the shapes; returns whether the input is batched."""
        name, got = self._name(), (f"query {shape_str(query)}, key {shape_str(key)}, "
                                   f"value {shape_str(value)}")
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise ShapeError(f"{name}: expected query, key and value all 3-D (batched) or all "
                             f"2-D (unbatched), got {got}")
        batched = query.dim() == 3
        seq, batch = (1, 0) if batched and self.batch_first else (0, 1)
        widths = (self.embed_dim, self.kdim, self.vdim)
        if tuple(t.shape[-1] for t in (query, key, value)) != widths:
            raise ShapeError(f"{name}: expected query, key and value of last dims "
                             f"{widths[0]}, {widths[1]}, {widths[2]}, got {got}")
        if key.shape[:-1] != value.shape[:-1] or (
                batched and query.shape[batch] != key.shape[batch]):
            raise ShapeError(f"{name}: expected key and value of one sequence length and one "
                             f"batch size, query's, got {got}")
        n, tgt, src = (query.shape[batch] if batched else None), query.shape[seq], key.shape[seq]
        if key_padding_mask is not None:
            expected = (n, src) if batched else (src,)
            if tuple(key_padding_mask.shape) != expected:
                raise ShapeError(f"{name}: expected key_padding_mask of shape {expected}, got "
                                 f"{shape_str(key_padding_mask)}")
        if attn_mask is not None:
            heads = self.num_heads * (n if batched else 1)
            if tuple(attn_mask.shape) not in ((tgt, src), (heads, tgt, src)):
                raise ShapeError(f"{name}: expected attn_mask of shape {(tgt, src)} or "
                                 f"{(heads, tgt, src)}, got {shape_str(attn_mask)}")
        return batched


def _additive(mask: Tensor | None, name: str, dtype: torch.dtype,
              other: Tensor | None) -> Tensor | None:
    """A mask as the scores' additive term, as ``F._canonical_mask``: True (ignore) is −∞, a
    float mask is added as it is (and keeps its graph)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ShapeError(f"MultiheadAttention: expected a {name} of dtype torch.bool or "
                         f"floating, got {mask.dtype}")
    if other is not None and other.dtype != mask.dtype:
        warnings.warn(f"Support for mismatched {name} and attn_mask is deprecated. Use same "
                      "type for both instead.", stacklevel=3)
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, float("-inf"))
    return mask


def _pad_key(mask: Tensor | None) -> Tensor | None:
    """One more key, attended by every query: a 0 column at the end."""
    return None if mask is None else F.pad(mask, (0, 1))


def _dropout_noise(weights: Tensor, p: float) -> Tensor:
    """The factor torch's CPU dropout multiplies by: bernoulli(1 − p) / (1 − p), drawn from
    the global generator as torch draws it (none for p = 1: all zero)."""
    if p >= 1:
        return torch.zeros((), dtype=weights.dtype, device=weights.device)
    with torch.no_grad():
        return torch.empty_like(weights).bernoulli_(1 - p).div_(1 - p)
