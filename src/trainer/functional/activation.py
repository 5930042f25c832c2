"""Activations and (log-)softmax, each with its derivative written out.

Two ways through a backward, same formula:
- a first-order backward (grad mode off, ``_in_place_ok()``): the terms accumulate in place in
  one or two fresh buffers, which saves allocations (and, on CPU, page faults) per call. A
  buffer that takes g in place is derived from g itself: autograd may vmap this path over
  batched grad_outputs (``is_grads_batched``), where g is batched and the saved tensors not.
- double backward and torch.func's grad (grad mode on): out-of-place ops, in place only with
  scalars, so that autograd records a graph it can differentiate.

On CPU, ``exp``, ``erf`` and ``tanh`` go through MKL's VML, which is several times slower than
torch's own vectorised ``exp2`` and ``sigmoid`` on non-Intel CPUs; the rules use the exact
identities eᶻ = 2^(z·log₂e) and ½(1 + tanh z) = σ(2z) where that pays.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ._util import ShapeError, check_float, fail, shape_str, to_dtype

_LOG2E = 1.0 / math.log(2.0)
_SQRT1_2 = math.sqrt(0.5)
_LOG2_INV_SQRT_2PI = -0.5 * math.log2(2.0 * math.pi)  # log₂ of 1/√(2π)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715


def _in_place_ok() -> bool:
    """True when no graph is being recorded through the backward (create_graph=False)."""
    return not torch.is_grad_enabled()


class ReLU(torch.autograd.Function):
    r"""y = max(x, 0)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · [y ≠ 0]          (= g · [x > 0]; 0 at x = 0, and NaN passes g, as in torch)

    Saves: a bool mask [y ≠ 0] (1 byte/elem, not the 4-byte y torch keeps): the derivative is
    a 0/1 step, so the mask is all it needs. ``g · mask`` stays differentiable in g, so double
    backward gives ∂/∂g and a zero second derivative in x.

    ``inplace=True`` clamps x in place (``mark_dirty``), exactly as ``torch.relu_``: the mask
    comes from the output, so nothing the backward needs is overwritten.
    """

    @staticmethod
    def vmap(info, in_dims, input, inplace):
        # Elementwise: the vmapped dim is one more dim of the physical tensor. (The generated
        # rule would not keep an in-place input's identity, which mark_dirty needs.)
        return ReLU.apply(input, inplace), in_dims[0]

    @staticmethod
    def forward(input: Tensor, inplace: bool) -> Tensor:
        if inplace:
            torch.relu_(input)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch.relu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        # A cast to bool is y ≠ 0: several times faster on CPU than the comparison y > 0.
        ctx.save_for_backward(output.bool() if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (positive,) = ctx.saved_tensors
        if _in_place_ok():
            return _as_float_like(g, positive).mul_(g), None
        return g * positive.view(torch.uint8), None  # differentiable in g


class LeakyReLU(torch.autograd.Function):
    r"""y = x if x > 0 else s·x,   s = negative_slope

    Backward, with g = ∂L/∂y and m = [x > 0]:
        ∂L/∂x = g · (m + s·(1 − m)) = s·g + (1 − s)·g·m       (slope s at x = 0, as in torch)

    Saves: the bool mask m (1 byte/elem; torch keeps the 4-byte x). With ``inplace=True`` the
    mask is read off the output (y > 0 ⇔ x > 0 for s ≥ 0); for s < 0 that is impossible, and,
    as torch does, backward then raises.
    """

    @staticmethod
    def vmap(info, in_dims, input, negative_slope, inplace):
        # Elementwise: the vmapped dim is one more dim of the physical tensor. (The generated
        # rule would not keep an in-place input's identity, which mark_dirty needs.)
        return LeakyReLU.apply(input, negative_slope, inplace), in_dims[0]

    @staticmethod
    def forward(input: Tensor, negative_slope: float, inplace: bool) -> Tensor:
        if inplace:
            torch.nn.functional.leaky_relu(input, negative_slope, inplace=True)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch.nn.functional.leaky_relu(input, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, negative_slope, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.negative_slope = negative_slope
        ctx.slope_lost = inplace and negative_slope < 0
        positive = None
        if ctx.needs_input_grad[0] and not ctx.slope_lost:
            positive = (output if inplace else input) > 0  # NaN → False, as torch's rule
        ctx.save_for_backward(positive)

    @staticmethod
    def backward(ctx, g: Tensor):
        if ctx.slope_lost:
            raise RuntimeError(
                "leaky_relu: in-place backward with a negative slope is not supported (the "
                "sign of x is lost); call it with inplace=False, as torch also requires"
            )
        (positive,) = ctx.saved_tensors
        slope = ctx.negative_slope
        dydx = _as_float_like(g, positive).mul_(1.0 - slope).add_(slope)  # m + s·(1 − m)
        return (dydx.mul_(g) if _in_place_ok() else g * dydx), None, None


def _as_float_like(g: Tensor, mask: Tensor) -> Tensor:
    """The 0/1 ``mask`` as a fresh tensor of g's dtype, device and (under vmap) batching.

    Multiplying g by it runs torch's vectorised same-dtype path, which a float × bool (or
    uint8) product does not on CPU; the uint8 view makes the cast itself vectorised too.
    """
    return torch.empty_like(g).copy_(mask.view(torch.uint8))


class GELU(torch.autograd.Function):
    r"""approximate='none':  y = x·Φ(x),   Φ(x) = ½(1 + erf(x/√2)),   φ(x) = e^(−x²/2)/√(2π)
    approximate='tanh':  y = ½x(1 + tanh u) = x·σ(2u),   u = √(2/π)(x + 0.044715x³)

    Backward, with g = ∂L/∂y:
        'none':  ∂L/∂x = g · (Φ(x) + x·φ(x))
        'tanh':  ∂L/∂x = g · (s + 2x·s(1 − s)·u′),   s = σ(2u) = ½(1 + tanh u),
                 u′ = √(2/π)(1 + 3·0.044715x²)
    Both are built from differentiable ops of x, so double backward is exact too.

    Saves: x, because the derivative is a function of x that y alone does not determine
    (gelu is not invertible for x < 0).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, approximate: str) -> Tensor:
        return torch.nn.functional.gelu(input, approximate=approximate)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, approximate = inputs
        ctx.approximate = approximate
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        x = to_dtype(x, g.dtype)
        if ctx.approximate == "tanh":
            return _gelu_tanh_grad(x, g), None
        # φ(x) = 2^(log₂φ(x)),  log₂φ(x) = −x²·log₂e/2 − log₂√(2π)
        pdf = torch.addcmul(x.new_full((), _LOG2_INV_SQRT_2PI), x, x, value=-0.5 * _LOG2E)
        pdf = pdf.exp2_()  # exp2's derivative needs only its result, so in place is safe
        if _in_place_ok():  # Φ + xφ, built in a buffer like g, then times g
            dydx = torch.empty_like(g).copy_(x).mul_(_SQRT1_2).erf_().mul_(0.5).add_(0.5)
            return dydx.addcmul_(x, pdf).mul_(g), None
        cdf = torch.erf(x * _SQRT1_2).mul_(0.5).add_(0.5)  # erf saved its input, not this
        return g * torch.addcmul(cdf, x, pdf), None


def _gelu_tanh_grad(x: Tensor, g: Tensor) -> Tensor:
    """g·(s + 2x·u′·s(1 − s)) with s = σ(2u), 2u = 2k·x(1 + c·x²), 2u′ = 2k(1 + 3c·x²)."""
    k, c = _SQRT_2_OVER_PI, _GELU_TANH_CUBIC
    two_k = x.new_full((), 2.0 * k)
    if _in_place_ok():  # two buffers: s, and one like g that ends as the result
        x_sq = torch.empty_like(g).copy_(x).square_()
        s = torch.add(two_k, x_sq, alpha=2.0 * k * c).mul_(x).sigmoid_()
        x_two_du_s = x_sq.mul_(6.0 * k * c).add_(2.0 * k).mul_(x).mul_(s)
        return x_two_du_s.addcmul_(x_two_du_s, s, value=-1.0).add_(s).mul_(g)
    x_sq = x * x
    s = torch.sigmoid(torch.add(two_k, x_sq, alpha=2.0 * k * c) * x)
    x_two_du = x * torch.add(two_k, x_sq, alpha=6.0 * k * c)
    return g * torch.addcmul(s, x_two_du, torch.addcmul(s, s, s, value=-1.0))


class SiLU(torch.autograd.Function):
    r"""y = x·σ(x)

    Backward, with g = ∂L/∂y and s = σ(x):
        ∂L/∂x = g · s·(1 + x·(1 − s))

    Saves: x, because s = σ(x) is not recoverable from y (silu is not invertible for x < 0).

    ``inplace=True`` overwrites x only when autograd is not recording through it; when it is,
    the result is computed out of place and x is left untouched (torch would keep a full copy
    of x to do the same), since the backward needs the original x.
    """

    @staticmethod
    def vmap(info, in_dims, input, inplace):
        # Elementwise: the vmapped dim is one more dim of the physical tensor. (The generated
        # rule would not keep an in-place input's identity, which mark_dirty needs.)
        return SiLU.apply(input, inplace), in_dims[0]

    @staticmethod
    def forward(input: Tensor, inplace: bool) -> Tensor:
        if inplace:
            torch.nn.functional.silu(input, inplace=True)
            return input  # the input object itself, as mark_dirty (and dynamo) require
        return torch.nn.functional.silu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, inplace = inputs
        if inplace:
            ctx.mark_dirty(input)
        ctx.save_for_backward(input if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        x = to_dtype(x, g.dtype)
        s = torch.sigmoid(x)
        g_s = g * s
        if _in_place_ok():
            x_one_minus_s = s.neg_().add_(1.0).mul_(x)
            return g_s.addcmul_(g_s, x_one_minus_s), None  # g·s·(1 + x(1 − s))
        # g·s·(1 + x(1 − s)) = g·s + x·(g·s − g·s·s)
        return torch.addcmul(g_s, x, torch.addcmul(g_s, g_s, s, value=-1.0)), None


class Sigmoid(torch.autograd.Function):
    r"""y = σ(x) = 1 / (1 + e^(−x))

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · y(1 − y)

    Saves: y, because σ′ is a function of y alone (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.sigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        if _in_place_ok():
            g_y = g * y
            return g_y.addcmul_(g_y, y, value=-1.0)  # g·y − g·y·y
        return g * torch.addcmul(y, y, y, value=-1.0)


class Tanh(torch.autograd.Function):
    r"""y = tanh(x)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · (1 − y²)

    Saves: y, because tanh′ is a function of y alone (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return torch.tanh(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        if _in_place_ok():
            return (g * y).mul_(y).neg_().add_(g)  # g − g·y·y
        return torch.addcmul(g, g * y, y, value=-1.0)


class Softmax(torch.autograd.Function):
    r"""y_i = e^(x_i) / Σ_j e^(x_j)   along ``dim`` (x first cast to ``dtype`` when given)

    Backward, with g = ∂L/∂y (the Jacobian is diag(y) − y yᵀ along dim):
        ∂L/∂x = y ⊙ (g − Σ_dim g ⊙ y) = g⊙y − y · Σ_dim(g⊙y)

    Saves: y, because the Jacobian is a function of y alone (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int, dtype: torch.dtype | None) -> Tensor:
        return torch.softmax(input, dim, dtype=dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        g_y = g * y
        sum_g_y = g_y.sum(ctx.dim, keepdim=True)
        if _in_place_ok():
            return g_y.addcmul_(y, sum_g_y, value=-1.0), None, None
        return torch.addcmul(g_y, y, sum_g_y, value=-1.0), None, None


class LogSoftmax(torch.autograd.Function):
    r"""y_i = x_i − log Σ_j e^(x_j)   along ``dim`` (x first cast to ``dtype`` when given)

    Backward, with g = ∂L/∂y (the Jacobian is I − 1·softmaxᵀ along dim):
        ∂L/∂x = g − e^y · Σ_dim g          (e^y = softmax(x))

    Saves: y, the output, because softmax(x) = e^y (x is not needed).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor, dim: int, dtype: torch.dtype | None) -> Tensor:
        return torch.log_softmax(input, dim, dtype=dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output if ctx.needs_input_grad[0] else None)

    @staticmethod
    def backward(ctx, g: Tensor):
        (y,) = ctx.saved_tensors
        y = to_dtype(y, g.dtype)
        sum_g = g.sum(ctx.dim, keepdim=True)
        if _in_place_ok():  # one buffer like g: e^y, then −e^y·Σg, then + g
            softmax = torch.empty_like(g).copy_(y).mul_(_LOG2E).exp2_()
            return softmax.mul_(sum_g.neg_()).add_(g), None, None
        softmax = (y * _LOG2E).exp2_()  # = e^y; exp2's derivative needs only its result
        return torch.addcmul(g, softmax, sum_g, value=-1.0), None, None


class _DimError(ShapeError, IndexError):
    """A dim out of range: torch raises IndexError there, so this is one too."""


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.relu`."""
    return ReLU.apply(input, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.leaky_relu`."""
    check_float("leaky_relu", "input", input)
    return LeakyReLU.apply(input, float(negative_slope), inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.gelu`."""
    if approximate not in ("none", "tanh"):
        raise fail("gelu", "approximate='none' or 'tanh'", f"approximate={approximate!r}")
    check_float("gelu", "input", input)
    return GELU.apply(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.silu` (see :class:`SiLU` on ``inplace``)."""
    check_float("silu", "input", input)
    recording = torch.is_grad_enabled() and input.requires_grad
    return SiLU.apply(input, inplace and not recording)


def sigmoid(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.sigmoid`."""
    return Sigmoid.apply(input)


def tanh(input: Tensor) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.tanh`."""
    return Tanh.apply(input)


def softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.softmax`."""
    dim = _softmax_dim("softmax", input, dim, _stacklevel, dtype)
    return Softmax.apply(input, dim, dtype)


def log_softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> Tensor:
    """Explicit twin of :func:`torch.nn.functional.log_softmax`."""
    dim = _softmax_dim("log_softmax", input, dim, _stacklevel, dtype)
    return LogSoftmax.apply(input, dim, dtype)


def _softmax_dim(
    op: str, input: Tensor, dim: int | None, stacklevel: int, dtype: torch.dtype | None
) -> int:
    """Validate the dim (or, for dim=None, pick it by torch's legacy rule, with its warning)."""
    result_dtype = input.dtype if dtype is None else dtype
    if not result_dtype.is_floating_point:
        raise fail(op, "a floating input or dtype", f"{result_dtype}")
    ndim = input.dim()
    if dim is None:
        # Called from softmax as torch's own helper is, so the same stacklevel points the same way.
        warnings.warn(
            f"Implicit dimension choice for {op} has been deprecated. "
            "Change the call to include dim=X as an argument.",
            stacklevel=stacklevel,
        )
        return 0 if ndim in (0, 1, 3) else 1
    low, high = -max(ndim, 1), max(ndim, 1) - 1
    if isinstance(dim, bool) or not isinstance(dim, int) or not low <= dim <= high:
        raise _DimError(f"{op}: expected dim in [{low}, {high}] for input {shape_str(input)}, "
                        f"got dim={dim}")
    return dim
