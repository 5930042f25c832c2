"""Causal multi-head attention over a packed q|k|v projection, through the output projection:
a GPT block's attention after ``c_attn``, as one rule that keeps only its input and the rows'
log-sum-exp (no T×T matrix, no attention output)."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from ._fast import fused as fast
from ._util import (
    LOG2_E,
    LOW_PRECISION,
    Function,
    autocast_lower,
    batched,
    check_float,
    check_same_dtype,
    fail,
    records_graph,
    shape_str,
    to_dtype,
)

__all__ = ["causal_attention_proj"]


def _split_heads(t: Tensor, n_head: int, parts: int) -> Tensor:
    """(B, T, parts·C) -> (parts, B·H, T, D), contiguous: q, k, v (or dO, parts = 1) with
    the heads as batch."""
    batch, length, width = t.shape
    head_size = width // (parts * n_head)
    return (t.view(batch, length, parts, n_head, head_size).permute(2, 0, 3, 1, 4)
            .reshape(parts, batch * n_head, length, head_size))


def _join_heads(t: Tensor, batch: int) -> Tensor:
    """(parts, B·H, T, D) -> (B, T, parts·C): the inverse of :func:`_split_heads`."""
    parts, heads_batch, length, head_size = t.shape
    n_head = heads_batch // batch
    return (t.view(parts, batch, n_head, length, head_size).permute(1, 3, 0, 2, 4)
            .reshape(batch, length, parts * n_head * head_size))


def _causal_bias(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(T, T): 0 on and below the diagonal, −∞ above it."""
    return torch.full((length, length), float("-inf"), dtype=dtype, device=device).triu_(1)


def _attend(heads: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(P V, lse) for the (3, B·H, T, D) heads, P = softmax(S), with S, P in one buffer."""
    q, k, v = heads[0], heads[1], heads[2]
    scores = torch.baddbmm(_causal_bias(q.shape[-2], q.dtype, q.device), q,
                           k.transpose(-2, -1), alpha=scale)
    row_max = scores.amax(-1, keepdim=True)
    probs = scores.sub_(row_max).mul_(LOG2_E).exp2_()  # e^(S − max)
    total = probs.sum(-1, keepdim=True)
    return torch.bmm(probs, v).div_(total), row_max.add_(total.log_())


def _autocast_off(device_type: str):
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in LOW_PRECISION else dtype


class CausalAttentionProj(Function):
    r"""z = O Wᵀ + b,   O = heads joined(P V),   P = softmax(S),   S = Q Kᵀ/√D + causal

    qkv: (B, T, 3C) packed as [Q | K | V], each (B, T, C) split into H heads of D = C/H
    (nanoGPT's ``c_attn`` output);  W: (out, C),  b: (out,);  causal is −∞ above the
    diagonal;  z: (B, T, out).  Forward also returns lse = log Σ_j e^(S_ij) per row.

    Backward, with g = ∂L/∂z, per head (rowsum over the key dim):
        ∂L/∂b = Σ_r g
        ∂L/∂W = Σ_r gᵀ O                  (O = P V recomputed)
        dO    = g W                        (split into heads)
        ∂L/∂V = Pᵀ dO
        dP    = dO Vᵀ
        dS    = P ⊙ (dP − rowsum(P ⊙ dP))
        ∂L/∂Q = dS K/√D,   ∂L/∂K = dSᵀ Q/√D   (∂L/∂qkv: the three packed back)

    Forward runs torch's fused CPU kernel on strided views of qkv (under a torch.func
    transform, or off the CPU, the same math in torch ops), which also gives lse.

    Saves: qkv (its input, the c_attn output: no new memory) and lse (B·H, T, 1), a
    forward output; W (a parameter). Not P (T×T per head), nor O, which the unfused pair keeps
    for ∂W: a first-order backward gets P back as exp(S − lse) and writes ∂Q, ∂K, ∂V in place
    (``_fast.fused``); with a graph recorded, P is softmax(S) of differentiable ops, so double
    backward is exact.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(qkv: Tensor, weight: Tensor, bias: Tensor | None, n_head: int):
        device = qkv.device.type
        low, weight, bias = autocast_lower(device, qkv, weight, bias)
        batch, length, width = qkv.shape
        head_size = width // (3 * n_head)
        scale = 1.0 / math.sqrt(head_size)
        with _autocast_off(device):
            work = low.to(_opmath(low.dtype))
            if torch._C._are_functorch_transforms_active() or device != "cpu":
                attended, lse = _attend(_split_heads(work, n_head, 3), scale)
                joined = _join_heads(attended[None], batch)
            else:  # torch's fused CPU kernel, on strided views of qkv: no copy, no T×T buffer
                q, k, v = (t.view(batch, length, n_head, head_size).transpose(1, 2)
                           for t in work.split(width // 3, dim=-1))
                attended, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    q, k, v, 0.0, True, scale=scale)
                joined = attended.transpose(1, 2).reshape(batch, length, width // 3)
                lse = lse.reshape(batch * n_head, length, 1)
            output = torch.nn.functional.linear(joined.to(low.dtype), weight, bias)
        return output, lse

    @staticmethod
    def setup_context(ctx, inputs, output):
        qkv, weight, _, n_head = inputs
        _, lse = output
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)
        need_qkv, need_w, _ = ctx.needs_input_grad[:3]
        ctx.save_for_backward(qkv if (need_qkv or need_w) else None,
                              lse if (need_qkv or need_w) else None,
                              weight if need_qkv else None)
        ctx.n_head = n_head

    @staticmethod
    def backward(ctx, g: Tensor | None, _grad_lse):
        if g is None:
            return None, None, None, None
        qkv, lse, weight = ctx.saved_tensors
        need_qkv, need_w, need_b = ctx.needs_input_grad[:3]
        dtype = _opmath(g.dtype)
        g, qkv, weight = (to_dtype(t, dtype) for t in (g, qkv, weight))
        batch = g.shape[0]
        rows_g = g.reshape(-1, g.shape[-1])
        grad_qkv = grad_w = None
        grad_b = rows_g.sum(0) if need_b else None  # ∂L/∂b = Σ_r g
        if not (need_qkv or need_w):
            return None, None, grad_b, None
        heads = _split_heads(qkv, ctx.n_head, 3)
        q, k, v = heads[0], heads[1], heads[2]
        scale = 1.0 / math.sqrt(q.shape[-1])
        causal = _causal_bias(q.shape[-2], q.dtype, q.device)
        first_order = not records_graph() and not batched(g)
        if first_order:  # P = exp(S − lse), from the saved row log-sum-exp
            probs = fast.probs_from_lse(q, k, to_dtype(lse, dtype), scale, causal)
        else:  # P = softmax(S) as a function of Q and K
            probs = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale + causal, -1)
        if need_w:
            attended = _join_heads(torch.matmul(probs, v)[None], batch)  # O = P V
            grad_w = rows_g.t().mm(attended.reshape(-1, attended.shape[-1]))  # Σ_r gᵀ O
        if need_qkv:
            grad_out = _split_heads(g.matmul(weight), ctx.n_head, 1)[0]  # dO = g W
            if first_order:
                grad_heads = fast.attention_input_grads(probs, grad_out, q, k, v, scale)
            else:
                grad_v = torch.matmul(probs.transpose(-2, -1), grad_out)  # Pᵀ dO
                grad_probs = torch.matmul(grad_out, v.transpose(-2, -1))  # dP = dO Vᵀ
                # dS = P ⊙ (dP − rowsum(P ⊙ dP))
                grad_scores = probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))
                grad_q = torch.matmul(grad_scores, k) * scale  # dS K/√D
                grad_k = torch.matmul(grad_scores.transpose(-2, -1), q) * scale  # dSᵀ Q/√D
                grad_heads = torch.stack([grad_q, grad_k, grad_v])
            grad_qkv = _join_heads(grad_heads, batch)
        return grad_qkv, grad_w, grad_b, None


def causal_attention_proj(qkv: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                          n_head: int) -> Tensor:
    """``linear(sdpa(q, k, v, is_causal=True) with heads joined, weight, bias)`` for
    ``q, k, v`` the thirds of ``qkv`` (B, T, 3C), each split into ``n_head`` heads, as
    nanoGPT's CausalSelfAttention after ``c_attn``; keeps qkv and the rows' log-sum-exp only
    (see :class:`CausalAttentionProj`). No mask, dropout or scale options: for those, call
    :func:`trainer.functional.scaled_dot_product_attention` and :func:`~trainer.functional.linear`.
    """
    op = "causal_attention_proj"
    if not isinstance(qkv, Tensor) or qkv.dim() != 3:
        got = f"qkv {shape_str(qkv)}" if isinstance(qkv, Tensor) else type(qkv).__name__
        raise fail(op, "qkv of shape (B, T, 3C)", got)
    check_float(op, "qkv", qkv)
    if isinstance(n_head, bool) or not isinstance(n_head, int) or n_head < 1:
        raise fail(op, "n_head a positive int", f"n_head={n_head!r}")
    width = qkv.shape[-1]
    if width % (3 * n_head):
        raise fail(op, f"qkv of shape (B, T, 3C) with C divisible by n_head={n_head}",
                   f"qkv {shape_str(qkv)}")
    channels = width // 3
    if weight.dim() != 2 or weight.shape[1] != channels:
        raise fail(op, f"weight of shape (out, {channels}) for qkv {shape_str(qkv)}",
                   f"weight {shape_str(weight)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise fail(op, f"bias of shape ({weight.shape[0]},)", f"bias {shape_str(bias)}")
    check_same_dtype(op, qkv, weight=weight, bias=bias)
    return CausalAttentionProj.apply(qkv, weight, bias, n_head)[0]
