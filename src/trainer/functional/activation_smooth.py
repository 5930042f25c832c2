"""The activations built on exponentials and logarithms: elu (with selu and celu, torch's
parametrisations of its one elu kernel), softplus, mish, glu and logsigmoid, each with its
derivative written out.

Forward is torch's own kernel, so values are torch's bit for bit. Each ``backward`` reads as
the formula in its docstring, out of place and from differentiable torch ops, so it serves
double backward too; half and bfloat16 are computed in float32 there, as torch's kernels do.
At x = 0 ELU's derivative takes torch's convention (the e^x branch).

ELU keeps its output, from which the derivative follows; the others keep x, as their
derivatives are functions of x that y does not determine. See each Function on what it saves
and why.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._elementwise import Elementwise, KeepsX, in_place_if_free, opmath
from ._fast import activation as fast
from ._util import Function, ShapeError, check_float, fail, shape_str, to_dtype

__all__ = ["celu", "elu", "glu", "logsigmoid", "mish", "selu", "softplus"]

# torch's SELU constants (aten's SELU_ALPHA and SELU_SCALE, the same doubles)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class _DimError(ShapeError, IndexError):
    """A dim out of range: torch raises IndexError there, so this is one too."""


class ELU(Elementwise):
    r"""y = s·x                   where x > 0
        s·α·(e^(i·x) − 1)     where x ≤ 0
    (α = alpha, s = scale, i = input_scale: elu is s = i = 1; selu is α = 1.6733, s = 1.0507,
    i = 1; celu is s = 1, i = 1/α, torch's own parametrisations of its one elu kernel)

    Backward, with g = ∂L/∂y; for x ≤ 0, y + s·α = s·α·e^(i·x), so
        ∂L/∂x = g · i·(y + s·α)     where x ≤ 0    (at x = 0: g·i·s·α, as torch)
                g · s               where x > 0, and for a NaN x
    Its derivative in x goes through y (a saved output), so double backward is exact too.

    Saves: y, the output, not x: y gives the derivative without an exponential, and a
    network often keeps y anyway (the next layer's input), where x is kept for this op alone.
    Which branch applies is read off y as [y ≤ 0] whenever sign(y) = sign(x) there, that is
    α·i ≥ 0 (every elu with α ≥ 0, every selu and celu); an elu with α < 0 (y > 0 on both
    branches) also saves the branch [¬(x ≤ 0)] bit-packed, ⌈n/8⌉ bytes. (torch keeps x.)

    ``inplace=True`` computes y in place (``mark_dirty``), exactly, as y is all the backward
    needs. With α < 0 torch refuses that backward (its in-place form cannot know the sign of
    x), and so does this one, for elu and celu alike.
    """

    @staticmethod
    def forward(input: Tensor, alpha: float, scale: float, input_scale: float,
                inplace: bool) -> Tensor:
        if inplace:
            torch._C._nn.elu_(input, alpha, scale, input_scale)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch._C._nn.elu(input, alpha, scale, input_scale)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, alpha, scale, input_scale, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.alpha, ctx.scale, ctx.input_scale = alpha, scale, input_scale
        ctx.slope_lost = inplace and alpha < 0
        y = packed = None
        if ctx.needs_input_grad[0] and not ctx.slope_lost:
            y = output
            if alpha * input_scale < 0:  # y > 0 on both branches: keep which one
                packed = fast.pack_bits(torch.le(input, 0).logical_not_())  # ¬(x ≤ 0)
                ctx.shape = output.shape
        ctx.save_for_backward(y, packed)

    @staticmethod
    def backward(ctx, g: Tensor):
        if ctx.slope_lost:
            raise RuntimeError(
                "elu: in-place backward with a negative alpha is not supported (the sign of x "
                "is lost); call it with inplace=False, as torch also requires"
            )
        y, packed = ctx.saved_tensors
        dtype = g.dtype
        y, g = opmath(to_dtype(y, dtype)), opmath(g)
        alpha, scale, input_scale = ctx.alpha, ctx.scale, ctx.input_scale
        negative_branch = input_scale * (y + scale * alpha)  # i·s·α·e^(i·x)
        if packed is None:
            slope = torch.where(y <= 0, negative_branch, scale)
        else:
            positive = fast.unpack_bits(packed, ctx.shape).bool()  # ¬(x ≤ 0)
            slope = torch.where(positive, scale, negative_branch)
        return (g * slope).to(dtype), None, None, None, None


class Softplus(Function):
    r"""y = log(1 + e^(β·x)) / β,   or y = x where β·x > threshold (torch's linear switch)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · σ(β·x)     where β·x ≤ threshold (NaN included)
                g              where β·x > threshold
    The switch is torch's: its derivative is 1 exactly where its forward is x. The derivative
    in x is g·β·σ(βx)(1 − σ(βx)) below the switch and 0 above, as torch's double backward.

    Saves: x, as torch does. y would give σ(β·x) = −expm1(−β·y) below the switch, but not
    which side of the switch x lies on (near it, y > threshold/β on both sides), so it would
    take a bit more per element than x.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, beta: float, threshold: float) -> Tensor:
        return torch._C._nn.softplus(input, beta, threshold)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, beta, threshold = inputs
        ctx.beta, ctx.threshold = beta, threshold
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        dtype = g.dtype
        x, g = opmath(to_dtype(x, dtype)), opmath(g)
        bx = x * ctx.beta
        slope = torch.where(bx > ctx.threshold, 1.0, torch.sigmoid(bx))
        return (g * slope).to(dtype), None, None


class Mish(KeepsX):
    r"""y = x · tanh(softplus(x)),   softplus(x) = log(1 + eˣ)

    Backward, with g = ∂L/∂y, t = tanh(softplus(x)) and s = σ(x) (softplus′ = σ):
        ∂L/∂x = g · (t + x·s·(1 − t²))
    Built from differentiable ops of x, so double backward is exact too.

    Saves: x, because t and s are functions of x that y does not determine (mish is not
    invertible for x < 0).

    ``inplace=True`` overwrites x only when autograd is not recording through it; when it is,
    the result is computed out of place and x is left untouched (torch would keep a full copy
    of x to do the same), since the backward needs the original x.
    """

    @staticmethod
    def forward(input: Tensor, inplace: bool) -> Tensor:
        if inplace:
            torch._C._nn.mish_(input)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch._C._nn.mish(input)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        dtype = g.dtype
        x, g = opmath(to_dtype(x, dtype)), opmath(g)
        t = torch.tanh(torch.nn.functional.softplus(x))
        s = torch.sigmoid(x)
        return (g * (t + x * s * (1 - t * t))).to(dtype), None


class GLU(Function):
    r"""y = a ⊙ σ(b),   (a, b) = x split in two halves along dim

    Backward, with g = ∂L/∂y and s = σ(b):
        ∂L/∂a = g · s
        ∂L/∂b = g · a · s(1 − s)
        ∂L/∂x = cat(∂L/∂a, ∂L/∂b) along dim
    Built from differentiable ops of x, so double backward is exact too.

    Saves: x (a and b), as torch does: ∂a needs σ(b), ∂b needs a and σ(b), and y = a·σ(b)
    gives back neither where a = 0.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int) -> Tensor:
        return torch._C._nn.glu(input, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, dim = inputs
        ctx.dim = dim
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        dtype = g.dtype
        x, g = opmath(to_dtype(x, dtype)), opmath(g)
        a, b = x.chunk(2, ctx.dim)
        s = torch.sigmoid(b)
        grad_a = g * s
        grad_b = grad_a * a * (1 - s)
        return torch.cat([grad_a, grad_b], ctx.dim).to(dtype), None


class LogSigmoid(Function):
    r"""y = log σ(x) = −softplus(−x)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · σ(−x)          (= g · (1 − σ(x)), exact for large x)

    Saves: x only; torch keeps x and, on CPU, a buffer of e^(−|x|) as large again. (y would
    do at the same bytes, σ(−x) = −expm1(y), but through an exponential; x takes one σ.)
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch._C._nn.log_sigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0] if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        dtype = g.dtype
        x, g = opmath(to_dtype(x, dtype)), opmath(g)
        return (g * torch.sigmoid(-x)).to(dtype)


# -- the functionals ----------------------------------------------------------------------------


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.elu`."""
    check_float("elu", "input", input)
    return ELU.apply(input, float(alpha), 1.0, 1.0, inplace)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.selu`: elu with torch's SELU constants."""
    check_float("selu", "input", input)
    return ELU.apply(input, SELU_ALPHA, SELU_SCALE, 1.0, inplace)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.celu`: elu with input_scale 1/α."""
    if alpha == 0:  # a RuntimeError, as torch's
        raise fail("celu", "alpha != 0 (it divides x)", f"alpha={alpha}")
    check_float("celu", "input", input)
    return ELU.apply(input, float(alpha), 1.0, 1.0 / alpha, inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.softplus`."""
    check_float("softplus", "input", input)
    return Softplus.apply(input, float(beta), float(threshold))


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.mish` (see :class:`Mish` on ``inplace``)."""
    check_float("mish", "input", input)
    return Mish.apply(input, in_place_if_free(input, inplace))


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.glu`."""
    if input.dim() == 0:
        raise fail("glu", "an input of 1 or more dims (a size to halve)", "a 0-d input")
    ndim = input.dim()
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise _DimError(f"glu: expected dim in [{-ndim}, {ndim - 1}] for input "
                        f"{shape_str(input)}, got dim={dim}")
    dim %= ndim
    if input.shape[dim] % 2:
        raise fail("glu", f"an even size along dim {dim} to halve",
                   f"input of shape {shape_str(input)}")
    check_float("glu", "input", input)
    return GLU.apply(input, dim)


def logsigmoid(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.logsigmoid`."""
    check_float("logsigmoid", "input", input)
    return LogSigmoid.apply(input)
