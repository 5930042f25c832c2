"""How close can an explicit ReLU backward get to native's? Every formulation, timed against it.

    python -m benchmarks.relu_floor [--rows N] [--threads T] [--repeats N]

Native ReLU is one pass forward (``relu``) and one fused pass backward (``threshold_backward``
on the saved float32 output), which an explicit rule may not call. Each row below is an
explicit backward of the same gradient, g·[y > 0], built from tensor ops; each saves what it
needs and costs the passes it needs. The last row is not a ReLU: its backward returns g
unchanged, so it measures only what a custom ``autograd.Function`` itself adds around the
forward (the floor for any explicit rule). Same protocol as ``benchmarks.layers``.
"""

from __future__ import annotations

import torch

from benchmarks import harness
from trainer import testing
from trainer.functional import relu as library_relu
from trainer.functional._util import Function


class ByteMask(Function):
    """Saves y ≠ 0 as bool (1 byte per element); backward g · mask."""

    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output.bool())

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask


class FloatMask(Function):
    """Saves sign(y) as float32 (4 bytes, as native's y); backward one multiply, g · sign(y)."""

    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(torch.sign(output))

    @staticmethod
    def backward(ctx, g):
        (step,) = ctx.saved_tensors
        return g * step


class SavedOutput(Function):
    """Saves y, as native; backward g · (y > 0), a comparison and a multiply."""

    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (y > 0)


class OverheadOnly(Function):
    """Not a ReLU: its backward passes g through. What the Function machinery costs."""

    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g


VARIANTS = [
    ("library: bit-packed mask (trainer.functional.relu)", library_relu, True),
    ("byte mask, g * mask", ByteMask.apply, True),
    ("float32 sign(y), g * sign(y)", FloatMask.apply, True),
    ("saved y, g * (y > 0)", SavedOutput.apply, True),
    ("(floor) Function overhead, backward returns g", OverheadOnly.apply, False),
]


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256, help="x is rows x 1024 (default 256)")
    args = p.parse_args(argv)
    harness.setup(args, "explicit ReLU formulations / native relu, forward+backward")
    torch.manual_seed(0)
    x = torch.randn(args.rows, 1024, requires_grad=True)
    grads = harness.fixed_grad_like(torch.relu, [x])
    native_step = harness.forward_backward(torch.relu, [x], grads)
    native_bytes = testing.saved_bytes(lambda: torch.relu(x))
    expected = torch.autograd.grad(torch.relu(x), x, grads)[0]
    rows = []
    for name, op, is_relu in VARIANTS:
        if is_relu:  # every real formulation gives native's gradient, bit for bit
            got = torch.autograd.grad(op(x), x, grads)[0]
            assert torch.equal(got, expected), name
        timing = harness.compare(harness.forward_backward(op, [x], grads), native_step, args)
        saved = testing.saved_bytes(lambda op=op: op(x))
        rows.append((name, harness.fmt_time(timing.a), harness.fmt_time(timing.b),
                     timing.summary(),
                     f"{saved / native_bytes:.3f}"))
        print(f"  done: {name}", flush=True)
    print()
    print(harness.table(["formulation", "fwd+bwd", "native fwd+bwd", "ratio [IQR]",
                         "saved bytes / native"], rows))
    print(f"\n(x: {args.rows}x1024 float32; native saves {harness.fmt_bytes(native_bytes)})")


if __name__ == "__main__":
    main()
