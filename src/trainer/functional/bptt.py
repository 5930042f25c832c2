"""Backpropagation through time: the Functions behind the recurrent layers and cells of
:mod:`trainer.functional.recurrent` (RNN, LSTM, GRU), each gradient written out.

One Function per layer and direction runs the whole sequence. Its forward computes every
step's input part x_t W_ihᵀ + b_ih at once, then loops over time for the recurrent part; its
backward loops t = T−1, …, 0, carrying ∂L/∂h (and the LSTM's ∂L/∂c) back one step at a time,
and then finds ∂x, ∂W_ih, ∂W_hh and the biases' gradients as a few matmuls over all steps.
A cell is one step of its layer: the same Function over a sequence of length 1.

Shapes: x: (T, N, I), h: (N, H), W_ih: (G·H, I), W_hh: (G·H, H), with G gates (RNN 1, GRU 3,
LSTM 4); "h_prev_t" is the state step t read (h0 at the first step, reversed for the reverse
direction). Double backward: a first-order backward takes the gates (and cell states) that
forward saved; one that builds a graph recomputes them from x, the outputs y and the weights
(the gates all at once, the LSTM's cell states by their elementwise recurrence), so that a
second derivative sees how they depend on the inputs, as LayerNorm does with its statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from ._util import LOW_PRECISION, Function, autocast_lower, records_graph, to_dtype

__all__: list[str] = []  # the Functions only; the ops are trainer.functional.recurrent's


def _steps(length: int, reverse: bool) -> range:
    """The time indices in the order a direction visits them."""
    return range(length - 1, -1, -1) if reverse else range(length)


def _previous(seq: Tensor, first: Tensor, reverse: bool) -> Tensor:
    """The state each step read: (first, seq_0, …, seq_{T−2}), or the reverse direction's
    (seq_1, …, seq_{T−1}, first)."""
    if reverse:
        return torch.cat([seq[1:], first.unsqueeze(0)])
    return torch.cat([first.unsqueeze(0), seq[:-1]])


def _work_dtype(t: Tensor) -> torch.dtype:
    """Backward computes in float32 for half types (autocast's outputs), else in t's dtype."""
    return torch.float32 if t.dtype in LOW_PRECISION else t.dtype


def _outer(d: Tensor, v: Tensor) -> Tensor:
    """Σ_{t,n} d[t,n]ᵀ v[t,n]: (T, N, G), (T, N, K) -> (G, K)."""
    return d.flatten(0, 1).mT @ v.flatten(0, 1)


def _through_weights(d_x: Tensor, d_h: Tensor, x: Tensor, h_prev: Tensor, w_ih: Tensor,
                     needs: tuple[bool, ...]) -> tuple[Tensor | None, ...]:
    """From ∂pre over all steps, (T, N, G·H) each for the input part (d_x) and the recurrent
    part (d_h), the gradients every cell shares: ∂x = d_x W_ih, ∂W_ih = Σ d_xᵀ x,
    ∂W_hh = Σ d_hᵀ h_prev, ∂b_ih = Σ d_x, ∂b_hh = Σ d_h. ``needs``: x, W_ih, W_hh, b_ih, b_hh."""
    need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh = needs
    return (d_x @ w_ih if need_x else None,
            _outer(d_x, x) if need_w_ih else None,
            _outer(d_h, h_prev) if need_w_hh else None,
            d_x.sum((0, 1)) if need_b_ih else None,
            d_h.sum((0, 1)) if need_b_hh else None)


def _start(g: Tensor | None, like: Tensor) -> Tensor:
    """The gradient carried into the last step: that of the final state, or zeros."""
    return torch.zeros_like(like) if g is None else to_dtype(g, like.dtype)


def _from_output(d: Tensor, g_y: Tensor | None, t: int) -> Tensor:
    """∂L/∂h_t: what the later steps carried back, plus the output's own gradient g_y[t]."""
    return d if g_y is None else d + to_dtype(g_y[t], d.dtype)


# ---------------------------------------------------------------------------------- RNN


class RNNLayer(Function):
    r"""h_t = φ(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh),  φ = tanh or relu;  y = (h_1 … h_T)

    Backpropagation through time, with g_y = ∂L/∂y, g_n = ∂L/∂h_T, and δ carried back from
    step T (δ = g_n) to step 1:
        ∂L/∂h_t   = g_y[t] + δ
        ∂pre_t    = ∂L/∂h_t ⊙ φ′,   φ′ = 1 − h_t² (tanh) or [h_t > 0] (relu)
        δ         ← ∂pre_t W_hh                     (∂L/∂h_{t−1}; after step 1, ∂L/∂h0)
    then, over all steps at once:
        ∂L/∂x     = ∂pre W_ih
        ∂L/∂W_ih  = Σ_{t,n} ∂pre_tᵀ x_t,    ∂L/∂W_hh = Σ_{t,n} ∂pre_tᵀ h_{t−1}
        ∂L/∂b_ih  = ∂L/∂b_hh = Σ_{t,n} ∂pre_t
    φ′ is a function of the output alone, so double backward needs nothing recomputed.

    Saves: x and the weights (for ∂W_ih, ∂x) and y (φ′, and h_{t−1} for ∂W_hh); h0 for
    ∂W_hh's first step. Native (a loop of built-in ops on the CPU) saves the same.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                b_hh: Tensor | None, nonlinearity: str, reverse: bool) -> tuple[Tensor, Tensor]:
        act = torch.tanh if nonlinearity == "tanh" else torch.relu
        x_part = torch_F.linear(input, w_ih, b_ih)  # every step's x_t W_ihᵀ + b_ih
        h, ys = h0, [None] * input.shape[0]
        for t in _steps(input.shape[0], reverse):
            h = ys[t] = act(x_part[t] + torch_F.linear(h, w_hh, b_hh))
        return torch.stack(ys), h

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse = inputs
        ctx.set_materialize_grads(False)
        ctx.nonlinearity, ctx.reverse = nonlinearity, reverse
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(input, h0, w_ih, w_hh, output[0])

    @staticmethod
    def backward(ctx, g_y: Tensor | None, g_n: Tensor | None):
        need_x, need_h0, *need_w = ctx.needs_input_grad[:6]
        if g_y is None and g_n is None:
            return (None,) * 8
        x, h0, w_ih, w_hh, y = ctx.saved_tensors
        dtype = _work_dtype(y)
        x, h0, w_ih, w_hh, y = (to_dtype(t, dtype) for t in (x, h0, w_ih, w_hh, y))
        slope = 1 - y * y if ctx.nonlinearity == "tanh" else (y > 0).to(dtype)  # φ′
        delta, d_pre = _start(g_n, h0), [None] * y.shape[0]
        for t in reversed(_steps(y.shape[0], ctx.reverse)):
            d_pre[t] = _from_output(delta, g_y, t) * slope[t]
            delta = d_pre[t] @ w_hh  # ∂L/∂h_{t−1}
        d_pre = torch.stack(d_pre)
        h_prev = _previous(y, h0, ctx.reverse)
        grad_x, *grad_w = _through_weights(d_pre, d_pre, x, h_prev, w_ih, (need_x, *need_w))
        return grad_x, delta if need_h0 else None, *grad_w, None, None


# ---------------------------------------------------------------------------------- LSTM


def _lstm_gates(pre: Tensor) -> Tensor:
    """(i, f, g, o) = (σ, σ, tanh, σ) of the four quarters of pre, as one (…, 4H) tensor."""
    i, f, g, o = pre.chunk(4, -1)
    return torch.cat([i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()], -1)


class LSTMLayer(Function):
    r"""LSTM over a sequence, one direction; with a projection (proj_size P) h is P wide:
        i, f, g, o = σ, σ, tanh, σ of  x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh   (4 quarters)
        c_t = f ⊙ c_{t−1} + i ⊙ g
        m_t = o ⊙ tanh(c_t)
        h_t = m_t W_hrᵀ   (projection)   or   h_t = m_t
    Outputs y = (h_1 … h_T), h_T, c_T; and the gates (i, f, g, o) and the cell states c as
    non-differentiable outputs for backward.

    Backpropagation through time, with g_y = ∂L/∂y, and δh, δc carried back from step T
    (δh = ∂L/∂h_T, δc = ∂L/∂c_T) to step 1:
        ∂L/∂h_t = g_y[t] + δh
        ∂L/∂m_t = ∂L/∂h_t W_hr   (projection)   or   ∂L/∂h_t
        δc     += ∂L/∂m_t ⊙ o ⊙ (1 − tanh²c_t)               (∂L/∂c_t)
        ∂pre_i  = δc ⊙ g ⊙ i(1 − i),       ∂pre_f = δc ⊙ c_{t−1} ⊙ f(1 − f)
        ∂pre_g  = δc ⊙ i ⊙ (1 − g²),       ∂pre_o = ∂L/∂m_t ⊙ tanh c_t ⊙ o(1 − o)
        δc      ← δc ⊙ f                                      (∂L/∂c_{t−1})
        δh      ← ∂pre_t W_hh                                 (∂L/∂h_{t−1})
    the factors after δc and ∂L/∂m_t computed for all steps at once before the loop; then,
    over all steps: ∂x, ∂W_ih, ∂W_hh and the biases from ∂pre as for RNNLayer, and
        ∂L/∂W_hr = Σ_{t,n} (∂L/∂h_t)ᵀ m_t,   ∂L/∂h0 = δh,   ∂L/∂c0 = δc.

    Saves: the gates (4H per step and sample) and the cell states c (H), x, h0, c0, the
    weights and y (h_{t−1} for ∂W_hh); m and tanh c are recomputed from them. Native (oneDNN
    on the CPU) keeps a workspace about ten times larger; with a projection its loop of
    built-in ops saves every intermediate product.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor | None, b_hh: Tensor | None, w_hr: Tensor | None, reverse: bool,
                states_low: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if states_low:  # torch.lstm under autocast: the states too in the low dtype
            input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = autocast_lower(
                input.device.type, input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
        x_part = torch_F.linear(input, w_ih, b_ih)  # every step's x_t W_ihᵀ + b_ih
        steps = input.shape[0]
        h, c, ys, cs, gates = h0, c0, [None] * steps, [None] * steps, [None] * steps
        for t in _steps(steps, reverse):
            gates[t] = _lstm_gates(x_part[t] + torch_F.linear(h, w_hh, b_hh))
            i, f, g, o = gates[t].chunk(4, -1)
            c = cs[t] = f * c + i * g
            h = o * c.tanh()
            if w_hr is not None:
                h = torch_F.linear(h, w_hr)
            ys[t] = h
        return torch.stack(ys), h, c, torch.stack(gates), torch.stack(cs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, _ = inputs
        y, _, _, gates, cells = output
        ctx.mark_non_differentiable(gates, cells)
        ctx.set_materialize_grads(False)
        ctx.reverse = reverse
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, cells)

    @staticmethod
    def backward(ctx, g_y, g_h, g_c, _g_gates, _g_cells):
        need_x, need_h0, need_c0, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_w_hr = (
            ctx.needs_input_grad[:8])
        if g_y is None and g_h is None and g_c is None:
            return (None,) * 10
        saved = ctx.saved_tensors
        dtype = _work_dtype(saved[8])
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, cells = (
            to_dtype(t, dtype) for t in saved)
        h_prev = _previous(y, h0, ctx.reverse)
        if records_graph():  # gates and cells as functions of x, y and the weights
            gates = _lstm_gates(torch_F.linear(x, w_ih, b_ih) + torch_F.linear(h_prev, w_hh, b_hh))
            cells = _cell_states(gates, c0, ctx.reverse)
        i, f, g, o = gates.chunk(4, -1)
        tanh_c = cells.tanh()
        to_c = o * (1 - tanh_c * tanh_c)  # ∂c_t/∂m_t's factor: o ⊙ (1 − tanh²c_t)
        from_c = torch.cat([g * i * (1 - i), _previous(cells, c0, ctx.reverse) * f * (1 - f),
                            i * (1 - g * g)], -1)  # ∂pre_{i,f,g} = δc ⊙ these
        from_m = tanh_c * o * (1 - o)  # ∂pre_o = ∂L/∂m_t ⊙ this
        delta_h, delta_c = _start(g_h, h0), _start(g_c, c0)
        d_pre, d_h = [None] * y.shape[0], [None] * y.shape[0]
        for t in reversed(_steps(y.shape[0], ctx.reverse)):
            d_h[t] = _from_output(delta_h, g_y, t)
            d_m = d_h[t] if w_hr is None else d_h[t] @ w_hr
            delta_c = delta_c + d_m * to_c[t]
            d_pre[t] = torch.cat([torch.cat([delta_c] * 3, -1) * from_c[t], d_m * from_m[t]], -1)
            delta_c = delta_c * f[t]
            delta_h = d_pre[t] @ w_hh
        d_pre = torch.stack(d_pre)
        grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh = _through_weights(
            d_pre, d_pre, x, h_prev, w_ih, (need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh))
        grad_w_hr = None
        if w_hr is not None and need_w_hr:
            grad_w_hr = _outer(torch.stack(d_h), o * tanh_c)  # Σ (∂L/∂h_t)ᵀ m_t
        return (grad_x, delta_h if need_h0 else None, delta_c if need_c0 else None, grad_w_ih,
                grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr, None, None)


def _cell_states(gates: Tensor, c0: Tensor, reverse: bool) -> Tensor:
    """c_t = f ⊙ c_{t−1} + i ⊙ g over the steps, from the gates: backward's recomputation when
    it builds a graph, elementwise only."""
    i, f, g, _ = gates.chunk(4, -1)
    c, cs = c0, [None] * gates.shape[0]
    for t in _steps(gates.shape[0], reverse):
        c = cs[t] = f[t] * c + i[t] * g[t]
    return torch.stack(cs)


# ---------------------------------------------------------------------------------- GRU


def _gru_gates(x_part: Tensor, h_part: Tensor) -> Tensor:
    """(r, z, n, h_n) from the input part x W_ihᵀ + b_ih and the recurrent part h W_hhᵀ + b_hh
    (3 thirds each): r, z = σ(x_r + h_r), σ(x_z + h_z); n = tanh(x_n + r ⊙ h_n)."""
    x_r, x_z, x_n = x_part.chunk(3, -1)
    h_r, h_z, h_n = h_part.chunk(3, -1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    return torch.cat([r, z, (x_n + r * h_n).tanh(), h_n], -1)


class GRULayer(Function):
    r"""GRU over a sequence, one direction (r, z, n: reset, update, new; thirds of W and b):
        r = σ(x_t W_irᵀ + b_ir + h_{t−1} W_hrᵀ + b_hr)
        z = σ(x_t W_izᵀ + b_iz + h_{t−1} W_hzᵀ + b_hz)
        n = tanh(x_t W_inᵀ + b_in + r ⊙ (h_{t−1} W_hnᵀ + b_hn))
        h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
    Outputs y = (h_1 … h_T), h_T; and (r, z, n, h_{t−1} W_hnᵀ + b_hn) as a non-differentiable
    output for backward.

    Backpropagation through time, with g_y = ∂L/∂y and δ carried back from step T
    (δ = ∂L/∂h_T) to step 1; "x-side" is ∂ of x_t W_ihᵀ + b_ih, "h-side" of h W_hhᵀ + b_hh:
        ∂L/∂h_t = g_y[t] + δ
        ∂pre_n  = ∂L/∂h_t ⊙ (1 − z) ⊙ (1 − n²)
        ∂pre_z  = ∂L/∂h_t ⊙ (h_{t−1} − n) ⊙ z(1 − z)
        ∂pre_r  = ∂pre_n ⊙ (h_{t−1} W_hnᵀ + b_hn) ⊙ r(1 − r)
        x-side  = (∂pre_r, ∂pre_z, ∂pre_n),   h-side = (∂pre_r, ∂pre_z, ∂pre_n ⊙ r)
        δ       ← ∂L/∂h_t ⊙ z + h-side W_hh                    (∂L/∂h_{t−1})
    the factors after ∂L/∂h_t computed for all steps at once before the loop; then, over
    all steps: ∂x = x-side W_ih, ∂W_ih = Σ x-sideᵀ x, ∂W_hh = Σ h-sideᵀ h_{t−1},
    ∂b_ih = Σ x-side, ∂b_hh = Σ h-side, and ∂L/∂h0 = δ.

    Saves: r, z, n and h W_hnᵀ + b_hn (4H per step and sample), x, h0, the weights and y
    (h_{t−1}). Native (a loop of built-in ops on the CPU) saves every intermediate product.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                b_hh: Tensor | None, reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
        x_part = torch_F.linear(input, w_ih, b_ih)  # every step's x_t W_ihᵀ + b_ih
        h, ys, gates = h0, [None] * input.shape[0], [None] * input.shape[0]
        for t in _steps(input.shape[0], reverse):
            gates[t] = _gru_gates(x_part[t], torch_F.linear(h, w_hh, b_hh))
            _, z, n, _ = gates[t].chunk(4, -1)
            h = ys[t] = n + z * (h - n)  # (1 − z) ⊙ n + z ⊙ h
        return torch.stack(ys), h, torch.stack(gates)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, h0, w_ih, w_hh, b_ih, b_hh, reverse = inputs
        y, _, gates = output
        ctx.mark_non_differentiable(gates)
        ctx.set_materialize_grads(False)
        ctx.reverse = reverse
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(input, h0, w_ih, w_hh, b_ih, b_hh, y, gates)

    @staticmethod
    def backward(ctx, g_y, g_n, _g_gates):
        need_x, need_h0, *need_w = ctx.needs_input_grad[:6]
        if g_y is None and g_n is None:
            return (None,) * 7
        saved = ctx.saved_tensors
        dtype = _work_dtype(saved[6])
        x, h0, w_ih, w_hh, b_ih, b_hh, y, gates = (to_dtype(t, dtype) for t in saved)
        h_prev = _previous(y, h0, ctx.reverse)
        if records_graph():  # the gates as functions of x, y and the weights
            gates = _gru_gates(torch_F.linear(x, w_ih, b_ih), torch_F.linear(h_prev, w_hh, b_hh))
        r, z, n, h_n = gates.chunk(4, -1)
        to_n = (1 - z) * (1 - n * n)  # ∂pre_n = ∂L/∂h_t ⊙ this
        x_side = torch.cat([to_n * h_n * r * (1 - r), (h_prev - n) * z * (1 - z), to_n], -1)
        h_side = x_side * torch.cat([torch.ones_like(r), torch.ones_like(z), r], -1)
        delta, d_x, d_h = _start(g_n, h0), [None] * y.shape[0], [None] * y.shape[0]
        for t in reversed(_steps(y.shape[0], ctx.reverse)):
            d_y = _from_output(delta, g_y, t)
            d_three = torch.cat([d_y] * 3, -1)
            d_x[t], d_h[t] = d_three * x_side[t], d_three * h_side[t]
            delta = d_y * z[t] + d_h[t] @ w_hh
        grad_x, *grad_w = _through_weights(torch.stack(d_x), torch.stack(d_h), x, h_prev, w_ih,
                                           (need_x, *need_w))
        return grad_x, delta if need_h0 else None, *grad_w, None
