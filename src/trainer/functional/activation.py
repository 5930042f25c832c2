"""Activations and (log-)softmax, each with its derivative written out.

Two ways through a backward, same formula:
- a first-order backward (grad mode off, ``not records_graph()``): the terms accumulate in place in
  one or two fresh buffers, which saves allocations (and, on CPU, page faults) per call. Where
  g may be batched (``batched``: autograd vmaps this path over batched grad_outputs, with
  ``is_grads_batched``, and then g is batched and the saved tensors not), g never goes in place
  into a buffer built from saved tensors, nor through ``out=``.
- double backward and torch.func's grad (grad mode on): out-of-place ops, in place only with
  scalars, so that autograd records a graph it can differentiate.

On CPU, ``exp``, ``erf`` and ``tanh`` go through MKL's VML, which is several times slower than
torch's own vectorised ``exp2``, ``sigmoid`` and ``gelu`` on non-Intel CPUs; the first-order
rules use the exact identities eᶻ = 2^(z·log₂e), ½(1 + tanh z) = σ(2z) and
Φ(x) = ½ + (gelu(x) − x/2)/x where that pays.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ._util import (
    LOG2_E,
    Function,
    ShapeError,
    batched,
    check_float,
    fail,
    records_graph,
    shape_str,
    to_dtype,
)

_SQRT1_2 = math.sqrt(0.5)
_LOG2_INV_SQRT_2PI = -0.5 * math.log2(2.0 * math.pi)  # log₂ of 1/√(2π)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715


def _times_g(dydx: Tensor, g: Tensor) -> Tensor:
    """g · dydx, in place in the fresh buffer ``dydx`` unless g may be batched and it not."""
    return g * dydx if batched(g) else dydx.mul_(g)


class ReLU(Function):
    r"""y = max(x, 0)

    Backward, with g = ∂L/∂y:
        ∂L/∂x = g · [y ≠ 0]          (= g · [x > 0]; 0 at x = 0, and NaN passes g, as in torch)

    Saves: a bit-packed mask [y ≠ 0], 1 bit per element (⌈n/8⌉ bytes, 1/32 of the float32 y
    torch keeps), because the derivative is a 0/1 step and one bit holds all of it; see
    :func:`_pack_bits`. ``g · mask`` stays differentiable in g, so double backward gives ∂/∂g
    and a zero second derivative in x.

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
        packed = None
        if ctx.needs_input_grad[0]:
            # A cast to bool is y ≠ 0: several times faster on CPU than the comparison y > 0.
            packed = _pack_bits(output.bool())
            ctx.shape = output.shape
        ctx.save_for_backward(packed)

    @staticmethod
    def backward(ctx, g: Tensor):
        (packed,) = ctx.saved_tensors
        positive = _unpack_bits(packed, ctx.shape)  # uint8 0/1
        if not records_graph():
            return _as_float_like(g, positive).mul_(g), None
        return g * positive, None  # differentiable in g


class LeakyReLU(Function):
    r"""y = x if x > 0 else s·x,   s = negative_slope

    Backward, with g = ∂L/∂y and m = [x > 0]:
        ∂L/∂x = g · (m + s·(1 − m)) = s·g + (1 − s)·g·m       (slope s at x = 0, as in torch)

    Saves: the mask m bit-packed, 1 bit per element (⌈n/8⌉ bytes, 1/32 of the float32 x torch
    keeps), because the derivative takes only the two values 1 and s; see :func:`_pack_bits`.
    With ``inplace=True`` the mask is read off the output (y > 0 ⇔ x > 0 for s ≥ 0); for s < 0
    that is impossible, and, as torch does, backward then raises.
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
        packed = None
        if ctx.needs_input_grad[0] and not ctx.slope_lost:
            packed = _pack_bits(_positive(output if inplace else input))
            ctx.shape = output.shape
        ctx.save_for_backward(packed)

    @staticmethod
    def backward(ctx, g: Tensor):
        if ctx.slope_lost:
            raise RuntimeError(
                "leaky_relu: in-place backward with a negative slope is not supported (the "
                "sign of x is lost); call it with inplace=False, as torch also requires"
            )
        (packed,) = ctx.saved_tensors
        positive = _unpack_bits(packed, ctx.shape)  # uint8 0/1
        slope = ctx.negative_slope
        dydx = _as_float_like(g, positive).mul_(1.0 - slope).add_(slope)  # m + s·(1 − m)
        return (dydx.mul_(g) if not records_graph() else g * dydx), None, None


def _positive(x: Tensor) -> Tensor:
    """The mask [x > 0] as 0/1 bytes (False for NaN, as torch's rule), ready to pack.

    On CPU a comparison that writes bool (or uint8) runs torch's scalar loop; writing int8 is
    vectorised and over twice as fast, with the same bytes. ``out=`` is not available under
    torch.func transforms, which take the plain comparison.
    """
    if torch._C._are_functorch_transforms_active():
        return x > 0
    return torch.gt(x, 0, out=torch.empty_like(x, dtype=torch.int8))


# Bit packing: 8 bools, read as one little-endian int64 (byte i = element i), times SPREAD
# (bits 0, 9, 18, …, 63) put element i at bit 63 − i: the top byte is the 8 bits, element 0
# first. Unpacking multiplies a byte by SPREAD again, which puts bit 7 − i at bit 8i + 7 (the
# shifted copies do not overlap, so nothing carries); >> 7 and a mask leave byte i = element i.
# int64 products wrap mod 2⁶⁴, in torch's CPU and CUDA kernels alike.
_SPREAD = 0x8040201008040201 - (1 << 64)  # the constant as a signed int64
_LOW_BITS = 0x0101010101010101


def _pack_bits(mask: Tensor) -> Tensor:
    """A fresh 0/1 ``mask`` of bytes (bool or int8; overwritten here) → uint8 of ⌈n/8⌉ bytes,
    1 bit per element in row-major order (zero bits pad the last byte).

    When the last dim is a multiple of 8 and the mask contiguous, this is a view (no copy);
    otherwise the mask is flattened, padded and made contiguous (under vmap a per-sample view
    may not be, and a dtype view needs it).
    """
    last = mask.shape[-1] if mask.dim() else 0
    if last and last % 8 == 0 and mask.is_contiguous():
        mask = mask.view(-1, last)  # standard strides, whatever a size-1 dim had
    else:
        mask = mask.reshape(-1)
        pad = -mask.numel() % 8
        mask = torch.nn.functional.pad(mask, (0, pad)) if pad else mask.contiguous()
    return mask.view(torch.int64).mul_(_SPREAD).bitwise_right_shift_(56).to(torch.uint8)


def _unpack_bits(packed: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of :func:`_pack_bits`: the mask as uint8 0/1 of ``shape``."""
    words = packed.to(torch.int64).mul_(_SPREAD).bitwise_right_shift_(7)
    mask = words.bitwise_and_(_LOW_BITS).view(torch.uint8)
    numel = math.prod(shape)
    if mask.numel() != numel:  # the padding of the last byte
        mask = mask.reshape(-1)[:numel]
    return mask.view(shape)


def _as_float_like(g: Tensor, mask: Tensor) -> Tensor:
    """The 0/1 ``mask`` (uint8) as a fresh tensor of g's dtype, device and (under vmap)
    batching.

    Multiplying g by it runs torch's vectorised same-dtype path, where a float × uint8 product
    takes the slower mixed-dtype one on CPU; the copy (the cast) itself is vectorised.
    """
    return torch.empty_like(g).copy_(mask)


class GELU(Function):
    r"""approximate='none':  y = x·Φ(x),   Φ(x) = ½(1 + erf(x/√2)),   φ(x) = e^(−x²/2)/√(2π)
    approximate='tanh':  y = ½x(1 + tanh u) = x·σ(2u),   u = √(2/π)(x + 0.044715x³)

    Backward, with g = ∂L/∂y:
        'none':  ∂L/∂x = g · (Φ(x) + x·φ(x))
        'tanh':  ∂L/∂x = g · (s + 2x·s(1 − s)·u′),   s = σ(2u) = ½(1 + tanh u),
                 u′ = √(2/π)(1 + 3·0.044715x²)
    Both are built from differentiable ops of x, so double backward is exact too. A first-order
    backward takes Φ(x) = ½ + (gelu(x) − x/2)/x from torch's vectorised gelu forward, several
    times faster on CPU than erf (same accuracy: both lose Φ's relative precision only where
    Φ < ulp(1)), and φ(x) as a power of 2.

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
        if not records_graph():
            return _gelu_grad_first_order(x, g), None
        # φ(x) = 2^(log₂φ(x)),  log₂φ(x) = −x²·log₂e/2 − log₂√(2π)
        pdf = torch.addcmul(x.new_full((), _LOG2_INV_SQRT_2PI), x, x, value=-0.5 * LOG2_E)
        pdf = pdf.exp2_()  # exp2's derivative needs only its result, so in place is safe
        cdf = torch.erf(x * _SQRT1_2).mul_(0.5).add_(0.5)  # erf saved its input, not this
        return g * torch.addcmul(cdf, x, pdf), None


def _gelu_grad_first_order(x: Tensor, g: Tensor) -> Tensor:
    """g·(Φ(x) + x·φ(x)) in two buffers, with Φ(x) − ½ = (gelu(x) − x/2)/x: torch's vectorised
    gelu rather than VML's erf. That is exact for subnormal x too (gelu(x) and x/2 round alike
    there); at x = 0 it is 0/0, which nan_to_num sets to Φ(0) − ½ = 0 (a NaN x still gives NaN,
    through x·φ). Half and bfloat16 are computed in float32, as torch's own kernels do, so
    that a subnormal x/2 (below 6·10⁻⁵ in half) and the roundings between steps cost nothing.
    """
    dtype = g.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x, g = x.float(), g.float()
    # φ(x) = 2^(log₂φ(x)),  log₂φ(x) = −x²·log₂e/2 − log₂√(2π)
    pdf = torch.addcmul(x.new_full((), _LOG2_INV_SQRT_2PI), x, x, value=-0.5 * LOG2_E).exp2_()
    dydx = torch.nn.functional.gelu(x).sub_(x, alpha=0.5).div_(x).nan_to_num_(0.0)
    return _times_g(dydx.addcmul_(x, pdf).add_(0.5), g).to(dtype)  # (Φ + xφ)·g


def _gelu_tanh_grad(x: Tensor, g: Tensor) -> Tensor:
    """g·(s + 2x·u′·s(1 − s)) with s = σ(2u), 2u = 2k·x(1 + c·x²), 2u′ = 2k(1 + 3c·x²)."""
    k, c = _SQRT_2_OVER_PI, _GELU_TANH_CUBIC
    two_k = x.new_full((), 2.0 * k)
    if not records_graph():  # two buffers: s, and one like g that ends as the result
        x_sq = torch.empty_like(g).copy_(x).square_()
        s = torch.add(two_k, x_sq, alpha=2.0 * k * c).mul_(x).sigmoid_()
        x_two_du_s = x_sq.mul_(6.0 * k * c).add_(2.0 * k).mul_(x).mul_(s)
        return x_two_du_s.addcmul_(x_two_du_s, s, value=-1.0).add_(s).mul_(g)
    x_sq = x * x
    s = torch.sigmoid(torch.add(two_k, x_sq, alpha=2.0 * k * c) * x)
    x_two_du = x * torch.add(two_k, x_sq, alpha=6.0 * k * c)
    return g * torch.addcmul(s, x_two_du, torch.addcmul(s, s, s, value=-1.0))


class SiLU(Function):
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
        if not records_graph():
            v = torch.addcmul(x, x, s, value=-1.0)  # x(1 − s)
            return _times_g(s.addcmul_(s, v), g), None  # s + s·v = s(1 + x(1 − s)), times g
        # g·s·(1 + x(1 − s)) = g·s + x·(g·s − g·s·s)
        g_s = g * s
        return torch.addcmul(g_s, x, torch.addcmul(g_s, g_s, s, value=-1.0)), None


class Sigmoid(Function):
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
        dydx = torch.addcmul(y, y, y, value=-1.0)  # y − y²
        return _times_g(dydx, g) if not records_graph() else g * dydx


class Tanh(Function):
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
        if not records_graph():
            return _times_g(torch.addcmul(y.new_ones(()), y, y, value=-1.0), g)  # (1 − y²)·g
        return torch.addcmul(g, g * y, y, value=-1.0)


class Softmax(Function):
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
        if not records_graph():
            return g_y.addcmul_(y, sum_g_y, value=-1.0), None, None
        return torch.addcmul(g_y, y, sum_g_y, value=-1.0), None, None


class LogSoftmax(Function):
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
        softmax = (y * LOG2_E).exp2_()  # = e^y; exp2's derivative needs only its result
        if not records_graph() and not batched(g):  # g − e^y·Σg, into e^y's buffer
            return torch.addcmul(g, softmax, sum_g, value=-1.0, out=softmax), None, None
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
