"""The embedding lookup, with its gradient written out."""

from __future__ import annotations

import torch
from torch import Tensor

from ._fast import embedding as fast
from ._util import Function, ShapeError, fail, records_graph, shape_str


class EmbeddingIndexError(ShapeError, IndexError):
    """An index outside [0, num_embeddings): an ``IndexError`` as torch raises, and a
    ``ShapeError`` like every other bad input here."""


class PaddingIdxError(ShapeError, AssertionError):
    """padding_idx outside [-num_embeddings, num_embeddings): torch raises ``AssertionError``."""


class Embedding(Function):
    r"""y[i] = W[idx[i]],   idx: (*) integer,  W: (V, D),  y: (*, D)

    Backward, with g = ∂L/∂y: each looked-up row sends its gradient back to the row it came from,
        ∂L/∂W[v] = Σ_{i: idx[i] = v} s_i·g[i]          (an index_add of g's rows into zeros)
    where s_i = 1/count(idx[i] in idx) with scale_grad_by_freq, else 1, and the padding_idx row
    gets none (∂L/∂W[padding_idx] = 0). idx gets no gradient. With sparse=True ∂L/∂W is the
    uncoalesced COO tensor torch produces: indices idx (padding dropped), values s_i·g[i].
    The map g ↦ ∂L/∂W is linear and built from differentiable ops, so double backward works.

    Saves: the indices only (to route the rows back); never W, which no gradient needs.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, weight: Tensor, padding_idx: int, scale_grad_by_freq: bool,
                sparse: bool) -> Tensor:
        return torch.embedding(weight, input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, padding_idx, scale_grad_by_freq, sparse = inputs
        ctx.save_for_backward(input if ctx.needs_input_grad[1] else None)
        ctx.num_weights = weight.shape[0]
        ctx.padding_idx, ctx.sparse = padding_idx, sparse
        ctx.scale_grad_by_freq = scale_grad_by_freq

    @staticmethod
    def backward(ctx, g: Tensor):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None, None
        (input,) = ctx.saved_tensors
        num_weights, padding_idx = ctx.num_weights, ctx.padding_idx
        dim = g.shape[-1]
        index = input.reshape(-1)
        rows = g.reshape(-1, dim)
        if ctx.scale_grad_by_freq:
            # count in float32 at least: bf16 cannot count past 256 exactly
            count_dtype = torch.promote_types(g.dtype, torch.float32)
            ones = torch.ones_like(index, dtype=count_dtype)
            counts = torch.zeros(num_weights, dtype=count_dtype, device=g.device).index_add(
                0, index, ones)
            rows = rows * counts.index_select(0, index).reciprocal().to(g.dtype).unsqueeze(1)
        if ctx.sparse:
            if padding_idx >= 0:  # torch drops the padding entries (a data-dependent size)
                keep = index != padding_idx
                index, rows = index[keep], rows[keep]
            grad_weight = torch.sparse_coo_tensor(index.reshape(1, -1).long(), rows,
                                                  (num_weights, dim), check_invariants=False)
        elif not records_graph():
            grad_weight = fast.embedding_backward(rows, index, num_weights, padding_idx)
        else:  # ∂L/∂W[v] = Σ_{i: idx[i] = v} g[i], and 0 for the padding row
            grad_weight = rows.new_zeros(num_weights, dim).index_add(0, index, rows)
            if padding_idx >= 0:
                grad_weight = grad_weight.index_fill(
                    0, torch.full((1,), padding_idx, dtype=torch.long, device=g.device), 0)
        return None, grad_weight, None, None, None


def _renorm_rows_(weight: Tensor, index: Tensor, max_norm: float, norm_type: float) -> None:
    """Scale, in place, each looked-up row of ``weight`` whose p-norm exceeds max_norm down to
    max_norm, as torch.embedding_renorm_ does: row *= max_norm / (norm + 1e-7).

    A repeated index rewrites its row with the same value, so no (data-dependent) unique() is
    needed and torch.compile keeps one graph.
    """
    rows = weight.index_select(0, index)
    norms = torch.linalg.vector_norm(rows, ord=norm_type, dim=1, keepdim=True)
    scale = torch.where(norms > max_norm, max_norm / (norms + 1e-7), torch.ones_like(norms))
    weight.index_copy_(0, index, rows * scale)


def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.embedding`.

    ``sparse=True`` gives the sparse COO gradient torch gives (not under torch.compile, which
    does not trace sparse tensors), and like torch refuses it with scale_grad_by_freq.
    """
    op = "embedding"
    if weight.dim() != 2:
        raise fail(op, "weight of shape (num_embeddings, embedding_dim)",
                   f"weight {shape_str(weight)}")
    if input.dtype not in (torch.int64, torch.int32):
        raise fail(op, "input (indices) of dtype torch.int64 or torch.int32",
                   f"input of dtype {input.dtype}")
    num_weights = weight.shape[0]
    if padding_idx is None:
        padding_idx = -1
    elif not -num_weights <= padding_idx < num_weights:
        raise PaddingIdxError(f"{op}: expected padding_idx in [{-num_weights}, {num_weights}) "
                              f"(num_embeddings={num_weights}), got padding_idx={padding_idx}")
    elif padding_idx < 0:
        padding_idx += num_weights
    if sparse and scale_grad_by_freq and weight.requires_grad and torch.is_grad_enabled():
        raise fail(op, "scale_grad_by_freq=False with sparse=True (torch has no sparse scaled "
                   "gradient either)", "both True")
    if num_weights == 0 and input.numel():
        raise EmbeddingIndexError(f"{op}: expected no indices for an empty table "
                                  f"(num_embeddings=0), got input {shape_str(input)}")
    try:
        if max_norm is not None:
            # as torch: rows renormalized in place, outside autograd, before the lookup
            input = input.contiguous()
            with torch.no_grad():
                _renorm_rows_(weight, input.reshape(-1), max_norm, norm_type)
        return Embedding.apply(input, weight, padding_idx, bool(scale_grad_by_freq), bool(sparse))
    except (IndexError, RuntimeError) as err:  # an index outside the table: say which
        low, high = int(input.min()), int(input.max())
        if 0 <= low and high < num_weights:
            raise  # something else (a table of width 0 raises RuntimeError, not IndexError)
        raise EmbeddingIndexError(
            f"{op}: expected indices in [0, {num_weights}) for num_embeddings={num_weights}, "
            f"got indices in [{low}, {high}]"
        ) from err
