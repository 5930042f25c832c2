"""Backpropagation through time: the Functions behind the recurrent layers and cells of
:mod:`trainer.functional.recurrent` (RNN, LSTM, GRU), each gradient written out.

One Function per layer and direction runs the whole sequence. Its forward computes every
step's input part x_t W_ihᵀ + b_ih at once, then loops over time for the recurrent part; its
backward loops t = T−1, …, 0, carrying ∂L/∂h (and the LSTM's ∂L/∂c) back one step at a time,
and then finds ∂x, ∂W_ih, ∂W_hh and the biases' gradients as a few matmuls over all steps.
A cell is one step of its layer: the same Function over a sequence of length 1.

Shapes: x: (T, N, I), h: (N, H), W_ih: (G·H, I), W_hh: (G·H, H), with G gates (RNN 1, GRU 3,
LSTM 4); "h_prev_t" is the state step t read (h0 at the first step, reversed for the reverse
direction).

Double backward: the gates (and the LSTM's cell states) that backward reads are outputs of
the Function too, differentiable ones, and backward takes their gradients as well (none in
a first-order pass). So everything a backward reads is an input or an output of its
Function, and a second derivative goes through the same backward: nothing is recomputed,
and what is saved follows ``ctx.needs_input_grad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as torch_F
from torch import Tensor

from ._util import LOW_PRECISION, Function, autocast_lower, to_dtype

__all__: list[str] = []  # the Functions only; the ops are trainer.functional.recurrent's


def _steps(length: int, reverse: bool) -> range:
    """The time indices in the order a direction visits them."""
    return range(length - 1, -1, -1) if reverse else range(length)


def _previous(seq: Tensor | None, first: Tensor, reverse: bool) -> Tensor:
    """The state each step read: (first, seq_0, …, seq_{T−2}), or the reverse direction's
    (seq_1, …, seq_{T−1}, first); seq None: a single step, which read first."""
    if seq is None:
        return first.unsqueeze(0)
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


def _start(g: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """The gradient carried into the last step: that of the final state, or zeros."""
    if g is None:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return to_dtype(g, like.dtype)


def _save_states(ctx, input: Tensor, h0: Tensor, w_hh_at: int) -> tuple[bool, bool, bool]:
    """What every layer's backward needs of the states: h0 and y for ∂W_hh (h_prev; y only
    past one step), W_hh to carry δ back past one step or into ∂L/∂h0. Returns (keep h0,
    keep y, keep W_hh), and records the step count and h's shape."""
    need_h0, need_w_hh = ctx.needs_input_grad[1], ctx.needs_input_grad[w_hh_at]
    ctx.steps, ctx.h_shape = input.shape[0], tuple(h0.shape)
    many = input.shape[0] > 1
    return need_w_hh, need_w_hh and many, many or need_h0


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

    Saves: y (φ′ is a function of the output alone); x only for ∂W_ih, W_ih only for ∂x,
    h0 for ∂W_hh, W_hh to carry δ back past one step. Native (a loop of built-in ops on
    the CPU) saves the same.
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
        need_x, _, need_w_ih = ctx.needs_input_grad[:3]
        keep_h0, _, keep_w_hh = _save_states(ctx, input, h0, 3)
        ctx.save_for_backward(input if need_w_ih else None, h0 if keep_h0 else None,
                              w_ih if need_x else None, w_hh if keep_w_hh else None, output[0])

    @staticmethod
    def backward(ctx, g_y: Tensor | None, g_n: Tensor | None):
        need_x, need_h0, *need_w = ctx.needs_input_grad[:6]
        if g_y is None and g_n is None:
            return (None,) * 8
        dtype = _work_dtype(ctx.saved_tensors[4])
        x, h0, w_ih, w_hh, y = (to_dtype(t, dtype) for t in ctx.saved_tensors)
        slope = 1 - y * y if ctx.nonlinearity == "tanh" else (y > 0).to(dtype)  # φ′
        delta, d_pre = _start(g_n, ctx.h_shape, y), [None] * ctx.steps
        for t in reversed(_steps(ctx.steps, ctx.reverse)):
            d_pre[t] = _from_output(delta, g_y, t) * slope[t]
            if w_hh is not None:
                delta = d_pre[t] @ w_hh  # ∂L/∂h_{t−1}
        d_pre = torch.stack(d_pre)
        h_prev = _previous(y if ctx.steps > 1 else None, h0, ctx.reverse) if need_w[1] else None
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
    Outputs: y = (h_1 … h_T), h_T, c_T, and the gates (i, f, g, o) and cell states c of
    every step (which backward reads, so that double backward differentiates through them).

    Backpropagation through time, with g_y = ∂L/∂y, and δh, δc carried back from step T
    (δh = ∂L/∂h_T, δc = ∂L/∂c_T) to step 1:
        ∂L/∂h_t = g_y[t] + δh
        ∂L/∂m_t = ∂L/∂h_t W_hr   (projection)   or   ∂L/∂h_t
        δc     += ∂L/∂m_t ⊙ o ⊙ (1 − tanh²c_t)  + g_c[t]       (∂L/∂c_t)
        ∂pre_i  = δc ⊙ g ⊙ i(1 − i),       ∂pre_f = δc ⊙ c_{t−1} ⊙ f(1 − f)
        ∂pre_g  = δc ⊙ i ⊙ (1 − g²),       ∂pre_o = ∂L/∂m_t ⊙ tanh c_t ⊙ o(1 − o)
        ∂pre_t += g_gates[t] ⊙ (i(1 − i), f(1 − f), 1 − g², o(1 − o))
        δc      ← δc ⊙ f                                        (∂L/∂c_{t−1})
        δh      ← ∂pre_t W_hh                                   (∂L/∂h_{t−1})
    (g_c, g_gates: the gradients of the cell-state and gate outputs, none but in double
    backward); the factors after δc and ∂L/∂m_t are computed for all steps before the loop.
    Then, over all steps: ∂x, ∂W_ih, ∂W_hh and the biases from ∂pre as for RNNLayer, and
        ∂L/∂W_hr = Σ_{t,n} (∂L/∂h_t)ᵀ m_t,   ∂L/∂h0 = δh,   ∂L/∂c0 = δc.

    Saves: the gates (4H per step and sample) and the cell states (H), c0 (c_{t−1} of the
    first step), W_hr; x only for ∂W_ih, W_ih only for ∂x, h0 and y for ∂W_hh, W_hh to carry
    δh back past one step. m and tanh c come back from the gates and cells. Native's fused
    kernel (oneDNN, on the CPU) keeps a workspace a few times larger; its loop of built-in
    ops (with a projection) a little more than this.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor | None, b_hh: Tensor | None, w_hr: Tensor | None, reverse: bool,
                states_low: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if states_low:  # torch.lstm's fused kernel under autocast: the states in the low dtype
            input, h0, c0, w_ih, w_hh, b_ih, b_hh = autocast_lower(
                input.device.type, input, h0, c0, w_ih, w_hh, b_ih, b_hh)
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
        ctx.set_materialize_grads(False)
        ctx.reverse = reverse
        need_x, _, _, need_w_ih = ctx.needs_input_grad[:4]
        keep_h0, keep_y, keep_w_hh = _save_states(ctx, input, h0, 4)
        ctx.save_for_backward(input if need_w_ih else None, h0 if keep_h0 else None, c0,
                              w_ih if need_x else None, w_hh if keep_w_hh else None, w_hr,
                              y if keep_y else None, gates, cells)

    @staticmethod
    def backward(ctx, g_y, g_h, g_c, g_gates, g_cells):
        need_x, need_h0, need_c0, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_w_hr = (
            ctx.needs_input_grad[:8])
        if g_y is None and g_h is None and g_c is None and g_gates is None and g_cells is None:
            return (None,) * 10
        dtype = _work_dtype(ctx.saved_tensors[7])
        x, h0, c0, w_ih, w_hh, w_hr, y, gates, cells = (
            to_dtype(t, dtype) for t in ctx.saved_tensors)
        i, f, g, o = gates.chunk(4, -1)
        tanh_c = cells.tanh()
        to_c = o * (1 - tanh_c * tanh_c)  # δc += ∂L/∂m_t ⊙ this
        from_c = torch.cat([g * i * (1 - i), _previous(cells, c0, ctx.reverse) * f * (1 - f),
                            i * (1 - g * g)], -1)  # ∂pre_{i,f,g} = δc ⊙ these
        from_m = tanh_c * o * (1 - o)  # ∂pre_o = ∂L/∂m_t ⊙ this
        if g_gates is not None:  # the gates' own gradient: g_gates ⊙ (σ′, σ′, tanh′, σ′)
            g_gates = to_dtype(g_gates, dtype) * torch.cat(
                [i * (1 - i), f * (1 - f), 1 - g * g, o * (1 - o)], -1)
        delta_h, delta_c = _start(g_h, ctx.h_shape, gates), _start(g_c, c0.shape, gates)
        d_pre, d_h = [None] * ctx.steps, [None] * ctx.steps
        for t in reversed(_steps(ctx.steps, ctx.reverse)):
            d_h[t] = _from_output(delta_h, g_y, t)
            d_m = d_h[t] if w_hr is None else d_h[t] @ w_hr
            delta_c = _from_output(delta_c + d_m * to_c[t], g_cells, t)
            d_pre[t] = torch.cat([torch.cat([delta_c] * 3, -1) * from_c[t], d_m * from_m[t]], -1)
            if g_gates is not None:
                d_pre[t] = d_pre[t] + g_gates[t]
            delta_c = delta_c * f[t]
            if w_hh is not None:
                delta_h = d_pre[t] @ w_hh
        d_pre = torch.stack(d_pre)
        h_prev = _previous(y, h0, ctx.reverse) if need_w_hh else None
        grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh = _through_weights(
            d_pre, d_pre, x, h_prev, w_ih, (need_x, need_w_ih, need_w_hh, need_b_ih, need_b_hh))
        grad_w_hr = None
        if w_hr is not None and need_w_hr:
            grad_w_hr = _outer(torch.stack(d_h), o * tanh_c)  # Σ (∂L/∂h_t)ᵀ m_t
        return (grad_x, delta_h if need_h0 else None, delta_c if need_c0 else None, grad_w_ih,
                grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr, None, None)


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
        n = tanh(x_t W_inᵀ + b_in + r ⊙ a),   a = h_{t−1} W_hnᵀ + b_hn
        h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
    Outputs: y = (h_1 … h_T), h_T, and (r, z, n, a) of every step (which backward reads, so
    that double backward differentiates through them).

    Backpropagation through time, with g_y = ∂L/∂y and δ carried back from step T
    (δ = ∂L/∂h_T) to step 1; "x-side" is ∂ of x_t W_ihᵀ + b_ih, "h-side" of h W_hhᵀ + b_hh,
    and (g_r, g_z, g_n, g_a) the gate outputs' gradients (none but in double backward):
        ∂L/∂h_t = g_y[t] + δ
        ∂pre_n  = (∂L/∂h_t ⊙ (1 − z) + g_n) ⊙ (1 − n²)
        ∂pre_z  = (∂L/∂h_t ⊙ (h_{t−1} − n) + g_z) ⊙ z(1 − z)
        ∂pre_r  = (∂pre_n ⊙ a + g_r) ⊙ r(1 − r)
        x-side  = (∂pre_r, ∂pre_z, ∂pre_n),   h-side = (∂pre_r, ∂pre_z, ∂pre_n ⊙ r + g_a)
        δ       ← ∂L/∂h_t ⊙ z + h-side W_hh                    (∂L/∂h_{t−1})
    each side an affine function of ∂L/∂h_t whose factors and terms are computed for all
    steps before the loop. Then, over all steps: ∂x = x-side W_ih, ∂W_ih = Σ x-sideᵀ x,
    ∂W_hh = Σ h-sideᵀ h_{t−1}, ∂b_ih = Σ x-side, ∂b_hh = Σ h-side, and ∂L/∂h0 = δ.

    Saves: r, z, n and a (4H per step and sample), h0 and y (h_{t−1}, in ∂pre_z); x only
    for ∂W_ih, W_ih only for ∂x, W_hh to carry δ back past one step. Native (a loop of
    built-in ops on the CPU) saves its gates and products step by step.
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
        ctx.set_materialize_grads(False)
        ctx.reverse = reverse
        need_x, _, need_w_ih = ctx.needs_input_grad[:3]
        _, _, keep_w_hh = _save_states(ctx, input, h0, 3)
        ctx.save_for_backward(input if need_w_ih else None, h0, w_ih if need_x else None,
                              w_hh if keep_w_hh else None, y if ctx.steps > 1 else None, gates)

    @staticmethod
    def backward(ctx, g_y, g_n, g_gates):
        need_x, need_h0, *need_w = ctx.needs_input_grad[:6]
        if g_y is None and g_n is None and g_gates is None:
            return (None,) * 7
        dtype = _work_dtype(ctx.saved_tensors[5])
        x, h0, w_ih, w_hh, y, gates = (to_dtype(t, dtype) for t in ctx.saved_tensors)
        h_prev = _previous(y, h0, ctx.reverse)
        r, z, n, a = gates.chunk(4, -1)
        # x-side = ∂L/∂h_t ⊙ x_factor + x_term, h-side = ∂L/∂h_t ⊙ h_factor + h_term
        to_n, r_slope, z_slope = 1 - n * n, r * (1 - r), z * (1 - z)
        x_factor = torch.cat([(1 - z) * to_n * a * r_slope, (h_prev - n) * z_slope,
                              (1 - z) * to_n], -1)
        h_factor = x_factor * torch.cat([torch.ones_like(r), torch.ones_like(z), r], -1)
        x_term = h_term = None
        if g_gates is not None:
            g_r, g_z, g_n_gate, g_a = to_dtype(g_gates, dtype).chunk(4, -1)
            pre_n = g_n_gate * to_n
            x_term = torch.cat([(pre_n * a + g_r) * r_slope, g_z * z_slope, pre_n], -1)
            h_term = x_term * torch.cat([torch.ones_like(r), torch.ones_like(z), r], -1)
            h_term = h_term + torch.cat([torch.zeros_like(r), torch.zeros_like(z), g_a], -1)
        delta, d_x, d_h = _start(g_n, ctx.h_shape, gates), [None] * ctx.steps, [None] * ctx.steps
        for t in reversed(_steps(ctx.steps, ctx.reverse)):
            d_y = _from_output(delta, g_y, t)
            d_three = torch.cat([d_y] * 3, -1)
            d_x[t], d_h[t] = d_three * x_factor[t], d_three * h_factor[t]
            if g_gates is not None:
                d_x[t], d_h[t] = d_x[t] + x_term[t], d_h[t] + h_term[t]
            delta = d_y * z[t]
            if w_hh is not None:
                delta = delta + d_h[t] @ w_hh
        grad_x, *grad_w = _through_weights(torch.stack(d_x), torch.stack(d_h), x, h_prev, w_ih,
                                           (need_x, *need_w))
        return grad_x, delta if need_h0 else None, *grad_w, None
