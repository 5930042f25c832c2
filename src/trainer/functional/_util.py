"""Small helpers that several explicit rules share.

Everything here is plain tensor code or plain Python; none of it builds autograd graph of its
own, so calling it inside a Function's ``forward`` or ``backward`` keeps the graph explicit.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Sequence

import torch
from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers


#: The half-precision dtypes, which the rules compute in float32 where native kernels do.
LOW_PRECISION = (torch.float16, torch.bfloat16)
#: log₂(e): e^t = 2^(t·log₂e), and exp2's derivative needs only its result.
LOG2_E = 1.0 / math.log(2.0)


class Function(torch.autograd.Function):
    """``torch.autograd.Function`` with a leaner ``apply`` for a plain eager call; every op's
    Function derives from it.

    ``Function.apply`` binds the arguments to ``forward``'s signature on every call (for the
    defaults and keywords of the setup_context style), a cost that weighs on small ops
    (benchmarks/README.md has the numbers). The ops here always pass every argument
    positionally, so when that is so (and no
    torch.func transform is active) the call goes straight to the C++ apply, as
    ``Function.apply`` itself ends. Anything else (keywords, missing arguments, transforms)
    takes the full ``Function.apply``, which finds forward's signature cached here.
    torch.compile traces ``apply`` by name and never runs this.
    """

    _arity = -1  # forward's parameter count, set for each subclass that defines forward

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" in vars(cls):
            signature = inspect.signature(cls.forward)
            cls.forward.__signature__ = signature  # Function.apply's lookup becomes free
            cls._arity = len(signature.parameters)

    @classmethod
    def apply(cls, *args, **kwargs):
        if torch._C._is_torch_function_mode_enabled():  # trainer.explicit() may be open
            return _apply_marked(cls, args, kwargs)
        if (kwargs or len(args) != cls._arity
                or torch._C._are_functorch_transforms_active()):
            return super().apply(*args, **kwargs)
        # as Function.apply: tensors left behind by a finished torch.func transform unwrapped
        return super(torch.autograd.Function, cls).apply(*_unwrap_dead_wrappers(args))


_rule_depth = threading.local()


def inside_rule() -> bool:
    """Whether one of the rules' Functions is running (its forward) in this thread: then
    :func:`trainer.explicit` leaves torch's calls alone, so no rule is applied to its own
    insides."""
    return getattr(_rule_depth, "value", 0) > 0


def _apply_marked(cls, args, kwargs):
    _rule_depth.value = getattr(_rule_depth, "value", 0) + 1
    try:
        return torch.autograd.Function.apply.__func__(cls, *args, **kwargs)
    finally:
        _rule_depth.value -= 1


class ShapeError(RuntimeError, ValueError):
    """Bad input for an explicit op: names the op, what it expected, and what it got.

    It is both a ``RuntimeError`` (what torch raises for the same mistakes, so code written
    against ``torch.nn.functional`` keeps catching it) and a ``ValueError``.
    """


def fail(op: str, expected: str, got: str) -> ShapeError:
    """Build the one error format every op uses: ``op: expected X, got Y``."""
    return ShapeError(f"{op}: expected {expected}, got {got}")


def shape_str(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_float(op: str, name: str, t: torch.Tensor) -> None:
    if not (t.is_floating_point() or t.is_complex()):
        raise fail(op, f"{name} of a floating dtype", f"{name} of dtype {t.dtype}")


def ntuple(op: str, name: str, value: int | Sequence[int], n: int) -> tuple[int, ...]:
    """Expand an int or a length-1/length-n sequence to an n-tuple, as torch does."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise fail(op, f"{name} as an int or a tuple of {n} ints", f"{name}={value}")
    return value


def sum_to_shape(grad: torch.Tensor, shape: torch.Size | Sequence[int]) -> torch.Tensor:
    """Undo broadcasting: sum ``grad`` over the dims that broadcasting added or stretched.

    If ``y = f(a)`` broadcast ``a`` of ``shape`` up to ``grad.shape``, then
    ``∂L/∂a = Σ_{broadcast dims} ∂L/∂y``.
    """
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    lead = grad.dim() - len(shape)
    dims = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1]
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.reshape(shape)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype an op computes ``t`` in: autocast lowers float32/16, never float64."""
    device = t.device.type
    if t.is_floating_point() and t.dtype != torch.float64 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


def check_same_dtype(op: str, input: torch.Tensor, mixed_ok: bool = False,
                     **params: torch.Tensor | None) -> None:
    """Refuse parameters of another dtype than the input (after autocast), where torch's kernel
    would stop with a bare RuntimeError. ``mixed_ok``: a float16/bfloat16 input may meet
    float32 parameters (the norms' mixed-precision kernels take that)."""
    dtype = compute_dtype(input)
    for name, t in params.items():
        if t is None or compute_dtype(t) == dtype:
            continue
        if mixed_ok and dtype in (torch.float16, torch.bfloat16) and t.dtype == torch.float32:
            continue
        raise fail(op, f"{name} of the input's dtype {dtype}", f"{name} of dtype {t.dtype}")


def to_dtype(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Cast a saved tensor to the gradient's dtype (they differ under autocast)."""
    if t is None or t.dtype == dtype:
        return t
    return t.to(dtype)


def autocast_fp32(device_type: str, *tensors: torch.Tensor | None):
    """Inside a forward, upcast low-precision inputs to float32 where autocast is on.

    Ops on autocast's float32 list (losses, for instance) do this natively; doing it inside
    ``forward`` keeps the cast out of the autograd graph.
    """
    if not torch.is_autocast_enabled(device_type):
        return tensors
    return tuple(
        t.float() if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t
        for t in tensors
    )


def autocast_lower(device_type: str, *tensors: torch.Tensor | None):
    """Inside a forward, cast float inputs to autocast's low-precision dtype, as autocast
    does natively for matmul-like ops that it runs in that dtype."""
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(
        t.to(dtype) if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t
        for t in tensors
    )


def records_graph() -> bool:
    """Whether autograd records the ops that run now. Inside a backward: True while it builds
    a graph for double backward (``create_graph=True``, ``torch.func.grad``), when every op
    must stay out of place and differentiable; False in a plain first-order backward, which
    may reuse its buffers in place."""
    return torch.is_grad_enabled()


def batched(g: torch.Tensor) -> bool:
    """Whether g may carry a vmapped dim that the saved tensors lack: under a torch.func
    transform, or autograd's own (legacy) vmap over batched grad_outputs (``is_grads_batched``).
    In-place ops that g feeds into a buffer built from saved tensors, and ``out=``, fail there.
    (Neither happens while torch.compile traces, which cannot call the second check.)"""
    if torch.compiler.is_compiling():
        return False
    return (torch._C._are_functorch_transforms_active()
            or torch._C._functorch.is_legacy_batchedtensor(g))
