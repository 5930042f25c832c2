"""Scaled dot-product attention, with its gradient written out."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from ._batch_chunks import Plan
from ._util import LOW_PRECISION, Function, fail, records_graph, shape_str, sum_to_shape

_OP = "scaled_dot_product_attention"


class ScaledDotProductAttention(Function):
    r"""O = P̃ V,   P̃ = P ⊙ M / (1 − p),   P = softmax(S),   S = scale · Q Kᵀ + B

    Q: (*, L, E),  K: (*, S, E),  V: (*, S, Ev),  batch dims broadcast;  O: (*, L, Ev).
    B is the additive bias: a float attn_mask, or 0 / −∞ from a bool attn_mask (True = attend)
    or from is_causal (−∞ where column j > row i).  M ~ Bernoulli(1 − p) is the dropout
    keep-mask (p = 0: none).  A row whose every score is −∞ gives P = 0, so O = 0, as torch's
    math path does: its bias row is replaced by 0 and its row of O is scaled by 0.
    enable_gqa repeats each K/V head Hq/H times along dim −3 (repeat_interleave).

    Backward, with g = ∂L/∂O and rowsum over the last (key) dim:
        ∂L/∂V  = P̃ᵀ g
        dP̃     = g Vᵀ,      dP = dP̃ ⊙ M / (1 − p)
        dS     = P ⊙ (dP − rowsum(dP ⊙ P))
        ∂L/∂Q  = scale · dS K
        ∂L/∂K  = scale · dSᵀ Q
        ∂L/∂B  = dS          (float attn_mask: summed to the mask's shape)
    Broadcast batch dims are summed back to each input's shape (sum_to_shape), and a repeated
    GQA head's gradient is summed over its Hq/H copies.  Large inputs are walked in parts of
    about _CHUNK_SCORES scores along a batch dim, so the (L, S) temporaries stay in cache
    (flash-attention's blocking, at the granularity of whole heads).

    Saves: Q, K and attn_mask (inputs: no new memory), so backward recomputes P with the same
    fused softmax; V only when dS is needed (∂L/∂Q, ∂L/∂K or ∂L/∂mask); the dropout mask M as
    bool (1 byte per score), returned as a second, non-differentiable output so that it can be
    saved.  Neither P (*, L, S) nor a logsumexp (*, L) is saved: the recomputation is one
    chunked Q Kᵀ and a softmax, cheaper than exp(S − logsumexp), and since it is built from
    differentiable ops of the saved Q and K, double backward is exact (a saved P or
    logsumexp would be a constant to autograd).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Tensor | None,
        dropout_p: float,
        is_causal: bool,
        scale: float,
        kv_repeats: tuple[int, int],
        amp_dtype: torch.dtype | None,
    ):
        out_dtype = _output_dtype(query.dtype, amp_dtype)
        with _autocast_off(query.device.type):
            q, k, v, mask = _operands(query, key, value, attn_mask, kv_repeats, amp_dtype)
            bias, row_keep = _mask_terms(mask, q.dtype)
            causal = _causal_bias(q, k) if is_causal else None
            drop_keep = None
            if dropout_p > 0:
                drop_keep = _dropout_keep(q, k, dropout_p)
            plan = Plan(q.shape, k.shape, v.shape)
            outputs = []
            for part in plan:
                probs = _probs(part(q) * scale, part(k), part(bias), causal)
                if drop_keep is not None:
                    probs = probs * part(drop_keep)
                outputs.append(torch.matmul(probs, part(v)))
            output = plan.cat(outputs, len(plan.batch))
            factor = _row_factor(row_keep, dropout_p)
            if factor is not None:
                output = output * factor
            output = output.to(out_dtype)
        return output if drop_keep is None else (output, drop_keep)

    @staticmethod
    def setup_context(ctx, inputs, output):
        query, key, value, attn_mask, dropout_p, is_causal, scale, kv_repeats, amp_dtype = inputs
        need_q, need_k, need_v, need_mask = ctx.needs_input_grad[:4]
        need_scores = need_q or need_k or need_mask
        need_any = need_scores or need_v
        drop_keep = None
        if dropout_p > 0:
            drop_keep = output[1]
            ctx.mark_non_differentiable(drop_keep)
        ctx.save_for_backward(
            query if need_any else None,
            key if need_any else None,
            value if need_scores else None,
            attn_mask if need_any else None,
            drop_keep,
        )
        ctx.dropout_p, ctx.is_causal, ctx.scale = dropout_p, is_causal, scale
        ctx.kv_repeats, ctx.amp_dtype = kv_repeats, amp_dtype
        ctx.value_shape = _repeated_shape(value.shape, kv_repeats[1])

    @staticmethod
    def backward(ctx, grad_output: Tensor, *_unused):
        query, key, value, attn_mask, drop_keep = ctx.saved_tensors
        need_q, need_k, need_v, need_mask = ctx.needs_input_grad[:4]
        need_scores = need_q or need_k or need_mask
        grad_q = grad_k = grad_v = grad_mask = None
        if not (need_scores or need_v):
            return None, None, None, None, None, None, None, None, None
        # Without create_graph nothing differentiates these ops, so buffers may be reused.
        inplace = not records_graph()
        with _autocast_off(grad_output.device.type):
            q, k, v, mask = _operands(query, key, value, attn_mask, ctx.kv_repeats, ctx.amp_dtype)
            bias, row_keep = _mask_terms(mask, q.dtype)
            causal = _causal_bias(q, k) if ctx.is_causal else None
            g = grad_output.to(q.dtype)
            factor = _row_factor(row_keep, ctx.dropout_p)
            if factor is not None:
                g = g * factor  # the 1/(1-p) and dead-row factors scale rows of O
            plan = Plan(q.shape, k.shape, ctx.value_shape)
            parts_q, parts_k, parts_v, parts_mask = [], [], [], []
            for part in plan:
                q_scaled = part(q) * ctx.scale
                probs = _probs(q_scaled, part(k), part(bias), causal)
                attn = probs if drop_keep is None else probs * part(drop_keep)
                g_part = part(g)
                if need_v:
                    grad_v_part = torch.matmul(attn.transpose(-2, -1), g_part)
                    parts_v.append(sum_to_shape(grad_v_part, part.shape(ctx.value_shape)))
                if not need_scores:
                    continue
                grad_attn = torch.matmul(g_part, part(v).transpose(-2, -1))
                # P ⊙ dP = P ⊙ M ⊙ dP̃ = attn ⊙ dP̃ (the 1/(1-p) is already in g)
                probs_dprobs = grad_attn.mul_(attn) if inplace else grad_attn * attn
                row_dot = probs_dprobs.sum(-1, keepdim=True)
                if inplace:
                    grad_scores = probs_dprobs.addcmul_(probs, row_dot, value=-1)
                else:
                    grad_scores = torch.addcmul(probs_dprobs, probs, row_dot, value=-1)
                if need_q:
                    grad_q_part = torch.matmul(grad_scores, part(k)).mul_(ctx.scale)
                    parts_q.append(sum_to_shape(grad_q_part, part.shape(q.shape)))
                if need_k:
                    grad_k_part = torch.matmul(grad_scores.transpose(-2, -1), q_scaled)
                    parts_k.append(sum_to_shape(grad_k_part, part.shape(k.shape)))
                if need_mask:
                    parts_mask.append(sum_to_shape(grad_scores, part.shape(mask.shape)))
            if need_q:
                grad_q = plan.join(parts_q, q.shape)
            if need_k:
                grad_k = _ungroup(plan.join(parts_k, k.shape), ctx.kv_repeats[0])
            if need_v:
                grad_v = _ungroup(plan.join(parts_v, ctx.value_shape), ctx.kv_repeats[1])
            if need_mask:
                grad_mask = plan.join(parts_mask, mask.shape)
        return grad_q, grad_k, grad_v, grad_mask, None, None, None, None, None


def _repeated_shape(shape, repeats: int) -> tuple[int, ...]:
    shape = tuple(shape)
    if repeats == 1:
        return shape
    return shape[:-3] + (shape[-3] * repeats,) + shape[-2:]


def _output_dtype(dtype: torch.dtype, amp_dtype: torch.dtype | None) -> torch.dtype:
    return amp_dtype if amp_dtype is not None and dtype != torch.float64 else dtype


def _autocast_off(device_type: str):
    # Autocast would run the matmuls in its low dtype; torch's math path keeps fp32 there.
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _working(t: Tensor | None, amp_dtype: torch.dtype | None) -> Tensor | None:
    """The value attention computes with: autocast's rounding first, then fp32 for fp16/bf16
    (torch's math path keeps fp32 intermediates for them)."""
    if t is None or not t.is_floating_point() or t.dtype == torch.float64:
        return t
    if amp_dtype is not None and t.dtype != amp_dtype:
        t = t.to(amp_dtype)
    return t.float() if t.dtype in LOW_PRECISION else t


def _operands(query, key, value, attn_mask, kv_repeats, amp_dtype):
    q, k, v, mask = (_working(t, amp_dtype) for t in (query, key, value, attn_mask))
    if kv_repeats[0] > 1:
        k = k.repeat_interleave(kv_repeats[0], dim=-3)
    if v is not None and kv_repeats[1] > 1:
        v = v.repeat_interleave(kv_repeats[1], dim=-3)
    if mask is not None and mask.is_floating_point() and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)  # torch allows a float32 mask with float64 q
    return q, k, v, mask


def _mask_terms(mask: Tensor | None, dtype: torch.dtype):
    """(additive bias of the mask's shape, 0/1 factor per row): a row with no attended key
    gets bias 0 (so its softmax stays finite) and factor 0."""
    if mask is None:
        return None, None
    if mask.dtype == torch.bool:
        dead_rows = ~mask.any(-1, keepdim=True)
        bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        bias = bias.masked_fill(~(mask | dead_rows), float("-inf"))
    else:
        dead_rows = (mask == float("-inf")).all(-1, keepdim=True)
        bias = mask.masked_fill(dead_rows, 0.0)
    return bias, (~dead_rows).to(dtype)


def _causal_bias(q: Tensor, k: Tensor) -> Tensor:
    """(L, S): 0 on and below the diagonal (top-left aligned), −∞ above it."""
    above = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
    return torch.zeros(above.shape, dtype=q.dtype, device=q.device).masked_fill_(
        above, float("-inf")
    )


def _probs(q_scaled: Tensor, k: Tensor, bias: Tensor | None, causal: Tensor | None) -> Tensor:
    scores = torch.matmul(q_scaled, k.transpose(-2, -1))
    if causal is not None:
        scores = scores.add_(causal)  # a constant (L, S) into a fresh buffer
    if bias is not None:
        scores = scores + bias  # out of place: under vmap the bias may be batched, scores not
    return torch.softmax(scores, dim=-1)


def _dropout_keep(q: Tensor, k: Tensor, p: float) -> Tensor:
    """Bool keep-mask of the scores' shape.  It is the draw torch's CPU math path makes:
    bernoulli_(1 − p) over the whole scores tensor (none for p = 1: all dropped)."""
    shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
    keep = q.new_empty(shape, dtype=torch.bool)
    if p >= 1:
        return keep.fill_(False)
    return keep.bernoulli_(1 - p)


def _row_factor(row_keep: Tensor | None, p: float):
    drop_scale = None
    if p > 0:
        drop_scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    if row_keep is None:
        return drop_scale
    return row_keep if drop_scale is None else row_keep * drop_scale


def _ungroup(grad: Tensor, repeats: int) -> Tensor:
    """Sum the gradient of a repeat_interleave'd head dim back onto the original heads."""
    if repeats == 1:
        return grad
    return grad.unflatten(-3, (grad.shape[-3] // repeats, repeats)).sum(-3)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.scaled_dot_product_attention`.

    Fully masked rows give zeros (and zero gradients), as torch's CPU math path does.
    ``enable_gqa`` is supported: key/value heads (dim −3) are repeated to query's heads.
    Dropout applies whenever ``dropout_p > 0``; on CPU it draws the same mask as torch.
    """
    amp_dtype = _check(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa)
    kv_repeats = (1, 1)
    if enable_gqa:
        kv_repeats = (query.shape[-3] // key.shape[-3], query.shape[-3] // value.shape[-3])
    if scale is None:  # torch's 1/sqrt(E), inf for E = 0
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] > 0 else math.inf
    dropout_p = float(dropout_p) if dropout_p > 0 else 0.0
    args = (query, key, value, attn_mask, dropout_p, bool(is_causal), float(scale), kv_repeats,
            amp_dtype)
    if dropout_p > 0:
        output, _drop_keep = ScaledDotProductAttention.apply(*args)
        return output
    return ScaledDotProductAttention.apply(*args)


def _check(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa):
    """Raise where torch raises; return autocast's dtype if autocast would cast the inputs."""
    qkv = f"query {shape_str(query)}, key {shape_str(key)}, value {shape_str(value)}"
    if min(query.dim(), key.dim(), value.dim()) < 2:
        raise fail(_OP, "query (..., L, E), key (..., S, E), value (..., S, Ev) of >= 2 dims", qkv)
    device_type = query.device.type
    amp_dtype = None
    if torch.is_autocast_enabled(device_type):
        amp_dtype = torch.get_autocast_dtype(device_type)

    def effective(t: Tensor) -> torch.dtype:
        cast = amp_dtype is not None and t.is_floating_point() and t.dtype != torch.float64
        return amp_dtype if cast else t.dtype

    dtypes = [effective(t) for t in (query, key, value)]
    if not all(d.is_floating_point for d in dtypes) or len(set(dtypes)) != 1:
        raise fail(_OP, "query, key and value of one floating dtype",
                   f"{dtypes[0]}, {dtypes[1]}, {dtypes[2]}")
    if key.shape[-1] != query.shape[-1]:
        raise fail(_OP, f"key of shape (..., S, {query.shape[-1]}) to match query's E",
                   f"query {shape_str(query)}, key {shape_str(key)}")
    if value.shape[-2] != key.shape[-2]:
        raise fail(_OP, f"value of shape (..., {key.shape[-2]}, Ev) to match key's S",
                   f"key {shape_str(key)}, value {shape_str(value)}")
    if dropout_p > 1:
        raise fail(_OP, "dropout_p between 0 and 1", f"dropout_p={dropout_p}")
    k_batch, v_batch = list(key.shape[:-2]), list(value.shape[:-2])
    if enable_gqa:
        if min(query.dim(), key.dim(), value.dim()) < 3 or any(
            t.shape[-3] == 0 or query.shape[-3] % t.shape[-3] != 0 for t in (key, value)
        ):
            raise fail(_OP, "with enable_gqa, query (..., Hq, L, E), key (..., H, S, E) and "
                       "value (..., H, S, Ev) with H dividing Hq", qkv)
        k_batch[-1] = v_batch[-1] = query.shape[-3]
    try:
        scores_batch = torch.broadcast_shapes(query.shape[:-2], tuple(k_batch))
        torch.broadcast_shapes(scores_batch, tuple(v_batch))
    except RuntimeError:
        raise fail(_OP, "broadcastable batch dims of query, key and value", qkv) from None
    if attn_mask is None:
        return amp_dtype
    if is_causal:
        raise fail(_OP, "attn_mask=None when is_causal=True",
                   f"attn_mask {shape_str(attn_mask)}")
    mask_dtype = effective(attn_mask)
    if attn_mask.dtype != torch.bool and mask_dtype not in (torch.float32, dtypes[0]):
        raise fail(_OP, f"attn_mask of dtype torch.bool, torch.float32 or query's {dtypes[0]}",
                   f"attn_mask of dtype {attn_mask.dtype}")
    scores_shape = (*scores_batch, query.shape[-2], key.shape[-2])
    try:
        fits = torch.broadcast_shapes(attn_mask.shape, scores_shape) == torch.Size(scores_shape)
    except RuntimeError:
        fits = False
    if not fits:
        raise fail(_OP, f"attn_mask broadcastable to the scores' shape {tuple(scores_shape)}",
                   f"attn_mask {shape_str(attn_mask)}")
    return amp_dtype
