"""Linear layer and cross-entropy fused, so the (N, V) logits never exist all at once."""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import (
    LOW_PRECISION,
    Function,
    autocast_lower,
    check_float,
    fail,
    records_graph,
    shape_str,
)

#: Without an explicit ``chunk_size``, each chunk's logits block holds at most this many
#: elements (16 MiB in float32): small enough that the temporaries stay far below the full
#: (N, V) logits, large enough that each chunk's matmuls still run at full speed.
AUTO_CHUNK_ELEMENTS = 1 << 22



class LinearCrossEntropy(Function):
    r"""loss = reduce_r CE(x[r] Wᵀ + b, t[r]),   x: (N, H),  W: (V, H),  b: (V,),  t: (N,)

    Per row r with logits z = x[r] Wᵀ + b, ε = label_smoothing and lse = log Σ_c exp(z_c):
        ℓ_r = lse - (1 - ε) z_t - (ε / V) Σ_c z_c          (0 for rows with t = ignore_index)
        loss = Σ_r ℓ_r (reduction='sum')  or  Σ_r ℓ_r / #{r : t[r] ≠ ignore_index} ('mean')

    Gradients, with s = 1 for 'sum', 1 / #non-ignored for 'mean', and m_r = [t[r] ≠ ignore]:
        ∂loss/∂z[r] = s m_r (softmax(z) - (1 - ε) onehot(t[r]) - ε / V) =: D[r]   (V,)
        ∂loss/∂x[r] = D[r] W                         -> (N, H)
        ∂loss/∂W    = Σ_r D[r]ᵀ x[r]                 -> (V, H)
        ∂loss/∂b    = Σ_r D[r]                       -> (V,)
    and backward, given g = ∂L/∂loss (a scalar), returns g times each of them; for g = 1
    (``loss.backward()``) it returns the saved tensors themselves, which autograd then adopts
    as ``.grad`` without a copy, so the backward pass allocates nothing.

    The rows are processed ``chunk_size`` at a time; a chunk's logits are turned into its loss
    and, in place, into D for those rows, which is pushed through the three products above and
    then dropped (the Liger-Kernel design). So forward already computes the gradients, and
    they are what it saves: ∂loss/∂x (N×H), ∂loss/∂W (V×H) and ∂loss/∂b (V), each only when
    that input needs a gradient. Neither x, W nor any (N, V) tensor is kept; unfused,
    autograd keeps the log-softmax output, (N, V), which for a large vocabulary dwarfs the rest.

    Saves: ∂loss/∂x, ∂loss/∂W and ∂loss/∂b, computed in forward, each only when that input
    needs a gradient; never x, W nor an (N, V) tensor.

    Not supported, by design:
      * double backward: the saved gradients were computed without a graph, so a second
        derivative through them would be silently wrong; backward with ``create_graph=True``
        raises instead.
      * reduction='none': each row's weight in ∂L/∂W would be its own g[r], unknown until
        backward, so the weight gradient could not be precomputed (the op would have to keep
        x and recompute every chunk's logits). The wrapper refuses it.
      * vmap: the forward accumulates ∂loss/∂W for all rows into one V×H buffer and writes
        each chunk's ∂loss/∂x into a preallocated one; under vmap both would have to carry the
        batch dim, and per-sample V×H weight gradients are exactly the memory this op exists
        to avoid. ``vmap`` raises, naming the op.
    """

    @staticmethod
    def forward(input: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None,
                ignore_index: int, reduction: str, label_smoothing: float, chunk_size: int,
                needs_grads: tuple[bool, bool, bool]):
        device_type = input.device.type
        autocast_on = torch.is_autocast_enabled(device_type)
        x, w, b = autocast_lower(device_type, input, weight, bias)
        mm_dtype = x.dtype
        # The softmax math runs in float32 for half-precision matmuls, as autocast would run
        # cross_entropy (and as Liger does): logsumexp over a large vocabulary in bf16 is coarse.
        ce_dtype = torch.float32 if mm_dtype in LOW_PRECISION else mm_dtype
        loss_dtype = ce_dtype if autocast_on else input.dtype
        need_x, need_w, need_b = needs_grads
        need_b = need_b and b is not None
        any_grad = need_x or need_w or need_b

        rows = x.reshape(-1, x.shape[-1])
        target = target.reshape(-1)
        n_rows, num_classes = rows.shape[0], w.shape[0]
        valid = target != ignore_index
        safe_target = torch.where(valid, target, 0)  # any in-range index; masked out below
        if reduction == "mean":
            # A tensor, not a Python number: no host sync, and torch.compile keeps one graph.
            # All rows ignored gives 0/0 = nan, as torch's cross_entropy does.
            scale = 1.0 / valid.sum().to(ce_dtype)
        else:
            scale = torch.ones((), dtype=ce_dtype, device=x.device)

        grad_rows = torch.empty_like(rows) if need_x else None
        # Sums over many chunks: kept in float32 when the matmuls run in half precision.
        grad_weight = torch.zeros(w.shape, dtype=ce_dtype, device=x.device) if need_w else None
        grad_bias = torch.zeros(num_classes, dtype=ce_dtype, device=x.device) if need_b else None
        loss_sum = torch.zeros((), dtype=ce_dtype, device=x.device)
        w_t = w.t()
        with torch.autocast(device_type, enabled=False):  # the casts above are all it takes
            for start in range(0, n_rows, chunk_size):
                stop = min(start + chunk_size, n_rows)
                x_c, t_c, valid_c = rows[start:stop], safe_target[start:stop], valid[start:stop]
                logits = torch.addmm(b, x_c, w_t) if b is not None else x_c.mm(w_t)
                logits = logits.to(ce_dtype)
                lse = logits.logsumexp(1)
                row_loss = lse - (1.0 - label_smoothing) * logits.gather(1, t_c[:, None])[:, 0]
                if label_smoothing:
                    row_loss = row_loss - label_smoothing * logits.mean(1)
                loss_sum = loss_sum + torch.where(valid_c, row_loss, 0).sum()
                if not any_grad:
                    continue
                # D = s m (softmax(z) - (1-ε) onehot(t) - ε/V), built in the logits' own buffer.
                d_logits = logits.sub_(lse[:, None]).exp_()
                d_logits.scatter_add_(
                    1, t_c[:, None], torch.full_like(lse[:, None], label_smoothing - 1.0))
                if label_smoothing:
                    d_logits.sub_(label_smoothing / num_classes)
                d_logits.mul_(torch.where(valid_c, scale, 0)[:, None])
                if need_b:
                    grad_bias += d_logits.sum(0)
                d_logits = d_logits.to(mm_dtype)
                if need_x:
                    torch.mm(d_logits, w, out=grad_rows[start:stop])
                if need_w and grad_weight.dtype == mm_dtype:
                    grad_weight.addmm_(d_logits.t(), x_c)
                elif need_w:
                    grad_weight += d_logits.t().mm(x_c)
        loss = (loss_sum * scale).to(loss_dtype)
        grad_input = None if grad_rows is None else grad_rows.reshape(input.shape).to(input.dtype)
        grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
        grad_bias = None if grad_bias is None else grad_bias.to(bias.dtype)
        return loss, grad_input, grad_weight, grad_bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, grad_input, grad_weight, grad_bias = output
        ctx.mark_non_differentiable(*(t for t in (grad_input, grad_weight, grad_bias)
                                      if t is not None))
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grad_input, grad_weight, grad_bias)

    @staticmethod
    def backward(ctx, g: Tensor | None, *_unused_grads):
        if records_graph():
            raise RuntimeError(
                "linear_cross_entropy: double backward (create_graph=True) is not supported: "
                "the gradients were precomputed in forward, with no graph to differentiate")
        grad_input, grad_weight, grad_bias = ctx.saved_tensors
        if g is None:  # the loss itself got no gradient
            grad_input = grad_weight = grad_bias = None
        elif torch.compiler.is_compiling() or not bool(g == 1):
            grad_input, grad_weight, grad_bias = (
                None if t is None else t * g for t in (grad_input, grad_weight, grad_bias))
        # else: loss.backward()'s g = 1, the common case: hand the saved gradients over as they
        # are. Once autograd frees this node's saved tensors, AccumulateGrad can adopt them as
        # .grad without a copy, so the backward pass allocates nothing (a product with g would
        # cost another N×H + V×H). With retain_graph, autograd copies them instead.
        # target, ignore_index, reduction, label_smoothing, chunk_size, needs_grads: no gradient
        return grad_input, grad_weight, None, grad_bias, None, None, None, None, None

    @staticmethod
    def vmap(info, in_dims, *args):
        raise NotImplementedError(
            "linear_cross_entropy: vmap is not supported (per-sample weight gradients would "
            "need a (batch, V, H) buffer); use cross_entropy(linear(...)) under vmap")


def linear_cross_entropy(input: Tensor, weight: Tensor, target: Tensor,
                         bias: Tensor | None = None, ignore_index: int = -100,
                         reduction: str = "mean", label_smoothing: float = 0.0,
                         chunk_size: int | None = None) -> Tensor:
    """``cross_entropy(linear(input, weight, bias), target)`` without the (N, V) logits.

    ``input`` is (*, H), ``weight`` (V, H), ``bias`` (V,) and ``target`` (*) holds class
    indices: the same as flattening ``input`` to rows and calling
    ``torch.nn.functional.cross_entropy(F.linear(rows, weight, bias), target.reshape(-1), ...)``
    (an LM head's layout: class scores last, unlike cross_entropy's (N, C, d1, ...)).
    ``reduction`` is 'mean' or 'sum'; ``chunk_size`` is how many rows share one logits block
    (by default as many as keep that block near ``AUTO_CHUNK_ELEMENTS`` elements). Backward
    is first-order only; see :class:`LinearCrossEntropy` for the formulas and what is saved.
    """
    op = "linear_cross_entropy"
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{op}: expected Tensor input and weight")
    check_float(op, "input", input)
    if weight.dim() != 2:
        raise fail(op, "weight of shape (num_classes, in_features)", f"weight {shape_str(weight)}")
    num_classes, in_features = weight.shape
    if input.dim() == 0 or input.shape[-1] != in_features:
        raise fail(op, f"input of shape (*, {in_features}) for weight {shape_str(weight)}",
                   f"input {shape_str(input)}")
    if bias is not None and tuple(bias.shape) != (num_classes,):
        raise fail(op, f"bias of shape ({num_classes},)", f"bias {shape_str(bias)}")
    if not isinstance(target, Tensor) or target.is_floating_point() or target.is_complex():
        got = f"target of dtype {target.dtype}" if isinstance(target, Tensor) else type(target)
        raise fail(op, "target of class indices (an integer tensor)", str(got))
    if tuple(target.shape) != tuple(input.shape[:-1]):
        raise fail(op, f"target of shape {tuple(input.shape[:-1])} for input {shape_str(input)}",
                   f"target {shape_str(target)}")
    if reduction == "none":
        raise fail(op, "reduction 'mean' or 'sum' ('none' cannot precompute the weight "
                   "gradient; use cross_entropy(linear(...), reduction='none'))",
                   "reduction='none'")
    if reduction not in ("mean", "sum"):
        raise fail(op, "reduction 'mean' or 'sum'", f"reduction={reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise fail(op, "label_smoothing in [0, 1]", f"label_smoothing={label_smoothing}")
    if chunk_size is None:
        chunk_size = max(1, AUTO_CHUNK_ELEMENTS // max(num_classes, 1))
    elif not isinstance(chunk_size, int) or chunk_size < 1:
        raise fail(op, "chunk_size a positive int", f"chunk_size={chunk_size!r}")
    if not torch.compiler.is_compiling() and target.numel():
        # A host sync, so only in eager; compiled, an out-of-range index fails inside gather.
        bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
        if bad.any():
            value = int(target[bad][0])
            raise fail(op, f"target values in [0, {num_classes}) or ignore_index={ignore_index}",
                       f"target value {value}")
    grad_on = torch.is_grad_enabled()
    needs_grads = (grad_on and input.requires_grad, grad_on and weight.requires_grad,
                   grad_on and bias is not None and bias.requires_grad)
    loss, *_grads = LinearCrossEntropy.apply(input, weight, target, bias, ignore_index,
                                             reduction, float(label_smoothing), chunk_size,
                                             needs_grads)
    return loss
