"""nanoGPT's GPT (Karpathy's model.py), built from :mod:`trainer.nn` and :mod:`trainer.functional`.

Token ids ``(B, T)`` -> token embedding ``wte`` + position embedding ``wpe`` -> dropout ->
``n_layer`` pre-LayerNorm blocks -> ``ln_f`` -> ``lm_head`` (whose weight *is* ``wte.weight``)
-> logits ``(B, T, vocab)``. Module names, initialization and ``state_dict`` keys are
nanoGPT's, so its weights load as they are.

Each layer is a ``trainer.nn`` twin, and the model's own arithmetic (the residual sums, the
causal attention, the fused loss) calls :mod:`trainer.functional`, so every gradient is a
hand-written rule. :func:`trainer.nn.to_torch` turns the layers back into ``torch.nn``
classes; the model's own arithmetic follows them (see :func:`_ops`), so ``to_torch(gpt)`` is
the same model on PyTorch's built-in autograd: the reference the tests compare against.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

import trainer.functional as F
import trainer.nn as nn
from trainer.functional._util import fail, shape_str

from .common import ModelInputError


class _Ops(NamedTuple):
    add: Callable[..., Tensor]
    attention: Callable[..., Tensor]
    explicit: bool


_EXPLICIT = _Ops(F.add, F.scaled_dot_product_attention, True)
_NATIVE = _Ops(torch.add, torch.nn.functional.scaled_dot_product_attention, False)


def _ops(layer: torch.nn.Module) -> _Ops:
    """trainer's rules while ``layer`` is a trainer.nn twin; torch's own ops once
    :func:`trainer.nn.to_torch` has made it a plain ``torch.nn`` layer again."""
    return _EXPLICIT if isinstance(layer, nn.Linear) else _NATIVE


class CausalSelfAttention(nn.Module):
    """``c_proj(heads joined(softmax(Q Kᵀ/√d + causal) V))``, Q, K, V from one ``c_attn``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.dropout = n_head, n_embd, dropout

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        # (B, T, C) -> (B, n_head, T, head size) for each of q, k, v: shape ops only.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(self.n_embd, dim=2))
        y = _ops(self.c_attn).attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                        is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def after_norm(self, x: Tensor, norm: torch.nn.LayerNorm) -> Tensor:
        """``self(norm(x))`` through the fused rules: ``norm`` -> ``c_attn`` as one
        (:func:`trainer.functional.layer_norm_linear`), the causal attention -> ``c_proj`` as
        another (:func:`trainer.functional.causal_attention_proj`). It has no attention
        dropout: :class:`Block` calls it only when dropout does not draw."""
        qkv = F.layer_norm_linear(x, norm.weight, norm.bias, self.c_attn.weight,
                                  self.c_attn.bias, norm.eps)
        y = F.causal_attention_proj(qkv, self.c_proj.weight, self.c_proj.bias,
                                    n_head=self.n_head)
        return self.resid_dropout(y)


class MLP(nn.Module):
    """``c_proj(gelu(c_fc(x)))``, 4x wide, with nanoGPT's exact (erf) GELU."""

    def __init__(self, n_embd: int, dropout: float, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    def after_norm(self, x: Tensor, norm: torch.nn.LayerNorm) -> Tensor:
        """``self(norm(x))`` as one fused rule, :func:`trainer.functional.layer_norm_mlp`,
        which keeps x and the pre-activation only."""
        return self.dropout(F.layer_norm_mlp(
            x, norm.weight, norm.bias, self.c_fc.weight, self.c_fc.bias, self.c_proj.weight,
            self.c_proj.bias, norm.eps, self.gelu.approximate))


class Block(nn.Module):
    """``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``.

    On the rules (``_ops(...).explicit``) each norm goes into the rule after it: ``ln_1`` with
    ``c_attn``, ``ln_2`` with the whole MLP (see ``after_norm``), so backward recomputes the
    normed activations, the GELU output and the attention output instead of keeping them.
    With dropout drawing in training, every layer runs its own rule, as ``to_torch`` runs
    torch's."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: Tensor) -> Tensor:
        ops = _ops(self.attn.c_attn)
        if ops.explicit and not (self.training and self.attn.dropout > 0):
            x = F.add(x, self.attn.after_norm(x, self.ln_1))
            return F.add(x, self.mlp.after_norm(x, self.ln_2))
        x = ops.add(x, self.attn(self.ln_1(x)))
        return ops.add(x, self.mlp(self.ln_2(x)))


class GPT(nn.Module):
    """nanoGPT's GPT: ``forward(idx)`` gives logits ``(B, T, vocab_size)`` for token ids
    ``(B, T)``, ``T <= block_size``; ``hidden(idx)`` the final normed states ``(B, T, n_embd)``;
    ``loss(idx, targets)`` the mean cross-entropy through the fused
    :func:`trainer.functional.linear_cross_entropy`, which never holds the ``(B·T, vocab)``
    logits. ``lm_head.weight`` and ``transformer.wte.weight`` are one parameter (weight tying).

    Initialization as nanoGPT's: every Linear and Embedding weight ~ N(0, 0.02²), biases 0,
    LayerNorms 1 and 0, and each residual projection (``c_proj``) ~ N(0, (0.02/√(2·n_layer))²)
    so the residual stream's variance does not grow with depth.
    """

    def __init__(self, vocab_size: int, block_size: int, *, n_layer: int = 4, n_head: int = 4,
                 n_embd: int = 128, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        if n_embd % n_head:
            raise ModelInputError("model.n_head", f"must divide model.n_embd={n_embd}, "
                                                  f"got {n_head}")
        self.vocab_size, self.block_size, self.n_layer = vocab_size, block_size, n_layer
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList([Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, bias=bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied: one parameter, two names
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: torch.nn.Module) -> None:
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def _checked(self, idx: Tensor) -> Tensor:
        if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.is_floating_point() \
                or idx.is_complex() or idx.dtype == torch.bool:
            got = f"idx {shape_str(idx)} of dtype {idx.dtype}" if isinstance(idx, Tensor) \
                else type(idx).__name__
            raise fail("GPT", "token ids idx of shape (B, T), an integer tensor", got)
        if idx.shape[1] > self.block_size:
            raise fail("GPT", f"idx (B, T) with T <= block_size={self.block_size}",
                       f"idx {shape_str(idx)}: T={idx.shape[1]} > block_size={self.block_size}")
        return idx

    def hidden(self, idx: Tensor) -> Tensor:
        """The final normed hidden states ``ln_f(...)``, ``(B, T, n_embd)``: what
        ``lm_head`` turns into logits."""
        T = self._checked(idx).shape[1]
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        wte, wpe = self.transformer.wte, self.transformer.wpe
        x = self.transformer.drop(_ops(self.lm_head).add(wte(idx), wpe(pos)))
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def forward(self, idx: Tensor) -> Tensor:
        return self.lm_head(self.hidden(idx))

    def loss(self, idx: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
        """Mean cross-entropy of the next-token targets ``(B, T)`` (``ignore_index``: skipped),
        the same number as ``cross_entropy(self(idx).flatten(0, 1), targets.flatten())``, from
        the fused rule that goes through the vocabulary in chunks (first-order only)."""
        h = self.hidden(idx)
        if tuple(targets.shape) != tuple(idx.shape):
            raise fail("GPT.loss", f"targets of the shape of idx {shape_str(idx)}",
                       f"targets {shape_str(targets)}")
        if _ops(self.lm_head).explicit:
            return F.linear_cross_entropy(h, self.lm_head.weight, targets,
                                          ignore_index=ignore_index)
        return torch.nn.functional.cross_entropy(self.lm_head(h).flatten(0, 1), targets.flatten(),
                                                 ignore_index=ignore_index)


def gpt_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: ``weight_decay`` on the weights of Linear layers only; none on
    biases, LayerNorm weights and embeddings (``wte``, ``wpe``). ``lm_head.weight`` *is*
    ``wte.weight`` (weight tying), so as an embedding it is not decayed either. (nanoGPT's own
    configure_optimizers decays every parameter of two or more dims, embeddings included.)

    Every parameter that requires grad lies in exactly one group, a tied one once.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay = {id(m.weight) for m in model.modules()
             if isinstance(m, torch.nn.Linear) and id(m.weight) not in embeddings}
    params = [p for p in model.parameters() if p.requires_grad]  # each shared one once
    return [
        {"params": [p for p in params if id(p) in decay], "weight_decay": float(weight_decay)},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]


def gpt(input_shape: tuple[int, ...], num_classes: int, *, n_layer: int = 4, n_head: int = 4,
        n_embd: int = 128, block_size: int | None = None, dropout: float = 0.0,
        bias: bool = False) -> GPT:
    """nanoGPT's GPT for token sequences ``(T,)`` over a vocabulary of ``num_classes``;
    ``block_size`` (the longest context) is the data's ``T``: None takes it, a number must
    equal it."""
    if len(input_shape) != 1:
        raise ModelInputError("model", f"gpt takes token sequences (T,); the data gives "
                                       f"{tuple(input_shape)}")
    length = int(input_shape[0])
    if block_size is not None and block_size != length:
        raise ModelInputError("model.block_size", f"must equal the data's sequence length "
                              f"{length} (input_shape {tuple(input_shape)}), got {block_size}; "
                              "set it to null to take the data's")
    return GPT(num_classes, length, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
               dropout=dropout, bias=bias)


__all__ = ["GPT", "gpt", "gpt_param_groups"]
