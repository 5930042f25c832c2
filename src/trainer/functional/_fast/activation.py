"""First-order backwards of the activations, in place, and the 1-bit masks ReLU saves.

Each function is the formula of the rule named in its docstring, computed in one or two fresh
buffers instead of a new tensor per term (fewer allocations and, on CPU, fewer page faults).
Where g may be batched (``batched``: autograd vmaps a backward over batched grad_outputs with
``is_grads_batched``, and then g is batched and the saved tensors not), g never goes in place
into a buffer built from saved tensors, nor through ``out=``.

On CPU, ``exp``, ``erf`` and ``tanh`` go through MKL's VML, slower than torch's own vectorised
``exp2``, ``sigmoid`` and ``gelu`` on non-Intel CPUs; the variants use the exact identities
eᶻ = 2^(z·log₂e), ½(1 + tanh z) = σ(2z) and Φ(x) = ½ + (gelu(x) − x/2)/x where that pays.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._util import LOG2_E, LOW_PRECISION, batched

LOG2_INV_SQRT_2PI = -0.5 * math.log2(2.0 * math.pi)  # log₂ of 1/√(2π)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_CUBIC = 0.044715


def times_g(dydx: Tensor, g: Tensor) -> Tensor:
    """g · dydx, in place in the fresh buffer ``dydx`` unless g may be batched and it not."""
    return g * dydx if batched(g) else dydx.mul_(g)


# -- 1-bit masks ------------------------------------------------------------------------------

# 8 bools, read as one little-endian int64 (byte i = element i), times SPREAD (bits 0, 9, 18,
# …, 63) put element i at bit 63 − i: the top byte is the 8 bits, element 0 first. Unpacking
# multiplies a byte by SPREAD again, which puts bit 7 − i at bit 8i + 7 (the shifted copies do
# not overlap, so nothing carries); >> 7 and a mask leave byte i = element i. int64 products
# wrap mod 2⁶⁴, in torch's CPU and CUDA kernels alike.
_SPREAD = 0x8040201008040201 - (1 << 64)  # the constant as a signed int64
_LOW_BITS = 0x0101010101010101


def pack_bits(mask: Tensor) -> Tensor:
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


def unpack_bits(packed: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of :func:`pack_bits`: the mask as uint8 0/1 of ``shape``."""
    words = packed.to(torch.int64).mul_(_SPREAD).bitwise_right_shift_(7)
    mask = words.bitwise_and_(_LOW_BITS).view(torch.uint8)
    numel = math.prod(shape)
    if mask.numel() != numel:  # the padding of the last byte
        mask = mask.reshape(-1)[:numel]
    return mask.view(shape)


def positive(x: Tensor) -> Tensor:
    """The mask [x > 0] as 0/1 bytes (False for NaN, as torch's rule), ready to pack.

    On CPU a comparison that writes bool (or uint8) runs torch's scalar loop; writing int8 is
    vectorised and over twice as fast, with the same bytes. ``out=`` is not available under
    torch.func transforms, which take the plain comparison.
    """
    if torch._C._are_functorch_transforms_active():
        return x > 0
    return torch.gt(x, 0, out=torch.empty_like(x, dtype=torch.int8))


def as_float_like(g: Tensor, mask: Tensor) -> Tensor:
    """The 0/1 ``mask`` (uint8) as a fresh tensor of g's dtype, device and (under vmap)
    batching: g times it then runs torch's vectorised same-dtype product, where a float ×
    uint8 product takes the slower mixed-dtype one on CPU."""
    return torch.empty_like(g).copy_(mask)


# -- first-order backwards --------------------------------------------------------------------


def relu_backward(g: Tensor, mask: Tensor) -> Tensor:
    """ReLU: g · [y ≠ 0], in the buffer of the mask made float."""
    return as_float_like(g, mask).mul_(g)


def leaky_relu_backward(g: Tensor, mask: Tensor, slope: float) -> Tensor:
    """LeakyReLU: g · (m + s·(1 − m)), in the buffer of the mask made float."""
    return as_float_like(g, mask).mul_(1.0 - slope).add_(slope).mul_(g)


def gelu_backward(x: Tensor, g: Tensor) -> Tensor:
    """GELU: g·(Φ(x) + x·φ(x)) in two buffers, with Φ(x) − ½ = (gelu(x) − x/2)/x: torch's
    vectorised gelu rather than VML's erf, and φ as a power of 2.

    That is exact for subnormal x too (gelu(x) and x/2 round alike there); at x = 0 it is 0/0,
    which nan_to_num sets to Φ(0) − ½ = 0 (a NaN x still gives NaN, through x·φ). Half and
    bfloat16 are computed in float32, as torch's own kernels do, so that a subnormal x/2
    (below 6·10⁻⁵ in half) and the roundings between steps cost nothing.
    """
    dtype = g.dtype
    if dtype in LOW_PRECISION:
        x, g = x.float(), g.float()
    # φ(x) = 2^(log₂φ(x)),  log₂φ(x) = −x²·log₂e/2 − log₂√(2π)
    pdf = torch.addcmul(x.new_full((), LOG2_INV_SQRT_2PI), x, x, value=-0.5 * LOG2_E).exp2_()
    dydx = torch.nn.functional.gelu(x).sub_(x, alpha=0.5).div_(x).nan_to_num_(0.0)
    return times_g(dydx.addcmul_(x, pdf).add_(0.5), g).to(dtype)  # (Φ + xφ)·g


def gelu_tanh_backward(x: Tensor, g: Tensor) -> Tensor:
    """GELU, approximate='tanh': g·(s + 2x·u′·s(1 − s)) with s = σ(2u), 2u = 2k·x(1 + c·x²),
    2u′ = 2k(1 + 3c·x²), in two buffers: s, and one like g that ends as the result."""
    k, c = SQRT_2_OVER_PI, GELU_TANH_CUBIC
    x_sq = torch.empty_like(g).copy_(x).square_()
    s = torch.add(x.new_full((), 2.0 * k), x_sq, alpha=2.0 * k * c).mul_(x).sigmoid_()
    x_two_du_s = x_sq.mul_(6.0 * k * c).add_(2.0 * k).mul_(x).mul_(s)
    return x_two_du_s.addcmul_(x_two_du_s, s, value=-1.0).add_(s).mul_(g)


def silu_backward(x: Tensor, g: Tensor) -> Tensor:
    """SiLU: g · s(1 + x(1 − s)), s = σ(x), as s + s·x(1 − s) in σ's buffer."""
    s = torch.sigmoid(x)
    v = torch.addcmul(x, x, s, value=-1.0)  # x(1 − s)
    return times_g(s.addcmul_(s, v), g)


def sigmoid_backward(y: Tensor, g: Tensor) -> Tensor:
    """Sigmoid: g · y(1 − y), as y − y² in one buffer."""
    return times_g(torch.addcmul(y, y, y, value=-1.0), g)


def tanh_backward(y: Tensor, g: Tensor) -> Tensor:
    """Tanh: g · (1 − y²), as 1 − y² in one buffer."""
    return times_g(torch.addcmul(y.new_ones(()), y, y, value=-1.0), g)


def softmax_backward(y: Tensor, g: Tensor, dim: int) -> Tensor:
    """Softmax: g⊙y − y · Σ_dim(g⊙y), in the buffer of g⊙y."""
    g_y = g * y
    return g_y.addcmul_(y, g_y.sum(dim, keepdim=True), value=-1.0)


def log_softmax_backward(y: Tensor, g: Tensor, dim: int) -> Tensor:
    """LogSoftmax: g − e^y · Σ_dim g, in the buffer of e^y (computed as 2^(y·log₂e))."""
    sum_g = g.sum(dim, keepdim=True)
    softmax = (y * LOG2_E).exp2_()
    if batched(g):
        return torch.addcmul(g, softmax, sum_g, value=-1.0)
    return torch.addcmul(g, softmax, sum_g, value=-1.0, out=softmax)
