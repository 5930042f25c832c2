"""Reshapes as explicit Functions, so that not even a flatten leaves a built-in node."""

from __future__ import annotations

from torch import Tensor

from ._util import Function, fail, shape_str


class Reshape(Function):
    r"""y = reshape(x, shape)

    A reshape moves no values, so the gradient is the same numbers put back in x's shape:
        ∂L/∂x = reshape(g, x.shape)
    Saves: nothing (only x's shape, as a tuple of ints).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, shape: tuple[int, ...]) -> Tensor:
        return input.reshape(shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.input_shape = inputs[0].shape

    @staticmethod
    def backward(ctx, g: Tensor):
        return Reshape.apply(g, tuple(ctx.input_shape)), None


def reshape(input: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Explicit twin of :meth:`torch.Tensor.reshape`."""
    return Reshape.apply(input, tuple(shape))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Explicit twin of :func:`torch.flatten` (``nn.Flatten`` uses ``start_dim=1``)."""
    if input.dim() == 0:
        return Reshape.apply(input, (1,))
    nd = input.dim()
    if not (-nd <= start_dim < nd and -nd <= end_dim < nd):
        raise fail("flatten", f"start_dim and end_dim in [{-nd}, {nd - 1}] for input {shape_str(input)}",
                   f"start_dim={start_dim}, end_dim={end_dim}")
    start, end = start_dim % nd, end_dim % nd
    if start > end:
        raise fail("flatten", "start_dim <= end_dim", f"start_dim={start_dim}, end_dim={end_dim}")
    shape = (*input.shape[:start], _prod(input.shape[start : end + 1]), *input.shape[end + 1 :])
    return Reshape.apply(input, shape)


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p
