"""What the recurrent layers (:mod:`trainer.functional.recurrent`) share besides their math:
the moves that assemble a stack of layers (each an explicit Function, so that not even a
transpose or a concatenation leaves a built-in node in the graph), and the argument checks
that name the op and the shapes it expected and got.

Each move only relocates gradient entries: its backward is the inverse move of g.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._util import Function, check_float, fail, shape_str


class SwapTime(Function):
    r"""y = xᵀ over dims 0 and 1: (N, T, *) <-> (T, N, *), for ``batch_first``.

    A transpose moves values only:
        ∂L/∂x = gᵀ over dims 0 and 1
    Saves: nothing.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return input.transpose(0, 1).contiguous().clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g: Tensor):
        return SwapTime.apply(g)


class Unbind(Function):
    r"""(y_0, …, y_{K−1}) = (x[0], …, x[K−1]): the initial state of each layer and direction.

    Backward, with g_k = ∂L/∂y_k (zero where y_k got none):
        ∂L/∂x = stack(g_0, …, g_{K−1})
    Saves: nothing (x's shape only).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> tuple[Tensor, ...]:
        return tuple(part.clone() for part in input.unbind(0))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)
        ctx.part_shape = inputs[0].shape[1:]

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        like = next((g for g in grads if g is not None), None)
        if like is None:
            return None
        return torch.stack([torch.zeros_like(like) if g is None else g for g in grads])


class Stack(Function):
    r"""y = stack(x_0, …, x_{K−1}) along a new dim 0: the final states h_n (and c_n).

    Backward, with g = ∂L/∂y:
        ∂L/∂x_k = g[k]
    Saves: nothing.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(*parts: Tensor) -> Tensor:
        return torch.stack(parts)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g: Tensor):
        return g.unbind(0)


class CatFeatures(Function):
    r"""y = cat(x_0, x_1) along the last dim: a bidirectional layer's two output sequences.

    Backward, with g = ∂L/∂y:
        ∂L/∂x_k = g's slice of x_k's features
    Saves: nothing (the feature counts only).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(*parts: Tensor) -> Tensor:
        return torch.cat(parts, -1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.sizes = [part.shape[-1] for part in inputs]

    @staticmethod
    def backward(ctx, g: Tensor):
        return g.split(ctx.sizes, -1)


# --- argument checks, as torch makes them, but naming the op and the shapes -----------------


def check_sequence(op: str, input: Tensor, batch_first: bool) -> None:
    if isinstance(input, torch.nn.utils.rnn.PackedSequence):
        raise TypeError(f"{op}: a PackedSequence is not supported by the explicit recurrent "
                        "layers; pad it (torch.nn.utils.rnn.pad_packed_sequence) and pass the "
                        "padded tensor")
    layout = "(N, T, input_size)" if batch_first else "(T, N, input_size)"
    if not isinstance(input, Tensor) or input.dim() != 3:
        raise fail(op, f"input of shape {layout}", f"input {_shape(input)}")
    if input.shape[1 if batch_first else 0] == 0:
        raise fail(op, "a sequence of at least one step", f"input {shape_str(input)}")
    check_float(op, "input", input)


def check_state(op: str, name: str, state: Tensor, expected: tuple[int, ...]) -> None:
    if not isinstance(state, Tensor) or tuple(state.shape) != expected:
        raise fail(op, f"{name} of shape ({', '.join(map(str, expected))})",
                   f"{name} {_shape(state)}")


def check_weights(op: str, where: str, input_size: int, hidden: int, gates: int, out: int,
                  w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
                  w_hr: Tensor | None = None) -> None:
    """Each weight's shape for a layer of ``gates``·``hidden`` rows reading ``input_size``
    features and a state of ``out`` features (the projection's, or ``hidden``)."""
    expected = [("w_ih", w_ih, (gates * hidden, input_size)),
                ("w_hh", w_hh, (gates * hidden, out)),
                ("b_ih", b_ih, (gates * hidden,)), ("b_hh", b_hh, (gates * hidden,))]
    if w_hr is not None:
        expected.append(("w_hr", w_hr, (out, hidden)))
    for name, t, shape in expected:
        if t is not None and tuple(t.shape) != shape:
            raise fail(op, f"{name}{where} of shape ({', '.join(map(str, shape))})",
                       f"{name}{where} {shape_str(t)}")


def _shape(t: object) -> str:
    return shape_str(t) if isinstance(t, Tensor) else f"a {type(t).__name__}"
