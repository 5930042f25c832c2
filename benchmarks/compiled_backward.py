"""Would a fuser close the gap? gelu's and layer_norm's backward formulas compiled by inductor.

    python -m benchmarks.compiled_backward [--rows N] [--threads T] [--repeats N]

Native gelu and layer_norm each run their backward as one fused kernel; the library's explicit
rules compose several tensor ops (``benchmarks.op_sizes``). This script writes the same
first-order formulas as plain tensor code, compiles each with ``torch.compile`` (inductor,
static shapes) and calls it from a custom ``autograd.Function``: what a fuser would buy the
explicit rules, measured against native and against the library, forward+backward, with the
protocol of ``benchmarks.layers``. An experiment, not the library: a compiled backward is not
differentiable again (no double backward) and compiles once per shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as native_F

import trainer.functional as explicit_F
from benchmarks import harness
from trainer.functional._util import Function


@torch.compile(fullgraph=True, dynamic=False)
def gelu_grad(x, g):
    """g · (Φ(x) + x·φ(x))"""
    cdf = 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))
    pdf = torch.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return g * (cdf + x * pdf)


class CompiledGelu(Function):
    @staticmethod
    def forward(x):
        return native_F.gelu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return gelu_grad(x, g)


@torch.compile(fullgraph=True, dynamic=False)
def layer_norm_grads(x, mean, rstd, gamma, g):
    """∂L/∂x = rstd/D·(D·gγ − Σ gγ − x̂·Σ gγx̂), ∂L/∂γ = Σ_rows g·x̂, ∂L/∂β = Σ_rows g"""
    x_hat = (x - mean) * rstd
    g_gamma = g * gamma
    size = x.shape[-1]
    grad_x = rstd / size * (size * g_gamma - g_gamma.sum(-1, keepdim=True)
                            - x_hat * (g_gamma * x_hat).sum(-1, keepdim=True))
    return grad_x, (g * x_hat).sum(0), g.sum(0)


class CompiledLayerNorm(Function):
    @staticmethod
    def forward(x, weight, bias):
        y, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), weight, bias, 1e-5)
        return y, mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.save_for_backward(inputs[0], output[1], output[2], inputs[1])

    @staticmethod
    def backward(ctx, g, _grad_mean, _grad_rstd):
        x, mean, rstd, weight = ctx.saved_tensors
        return layer_norm_grads(x, mean, rstd, weight, g)


def compiled_layer_norm(x, weight, bias):
    return CompiledLayerNorm.apply(x, weight, bias)[0]


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256, help="x is rows x 1024 (default 256)")
    args = p.parse_args(argv)
    harness.setup(args, "inductor-compiled backward formulas / native, forward+backward")
    torch.manual_seed(0)
    x = torch.randn(args.rows, 1024, requires_grad=True)
    weight, bias = torch.randn(1024, requires_grad=True), torch.randn(1024, requires_grad=True)
    cases = [
        ("gelu", [x], native_F.gelu,
         [("inductor-compiled backward", CompiledGelu.apply), ("library", explicit_F.gelu)]),
        ("layer_norm", [x, weight, bias],
         lambda x, w, b: native_F.layer_norm(x, (1024,), w, b),
         [("inductor-compiled backward", compiled_layer_norm),
          ("library", lambda x, w, b: explicit_F.layer_norm(x, (1024,), w, b))]),
    ]
    rows = []
    for op, inputs, native, variants in cases:
        grads = harness.fixed_grad_like(native, inputs)
        expected = torch.autograd.grad(native(*inputs), inputs, grads)
        native_step = harness.forward_backward(native, inputs, grads)
        for name, fn in variants:
            got = torch.autograd.grad(fn(*inputs), inputs, grads)
            for a, b in zip(got, expected):  # the same gradients, to float32 rounding
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
            timing = harness.compare(harness.forward_backward(fn, inputs, grads), native_step,
                                     args)
            rows.append((op, name, harness.fmt_time(timing.a), harness.fmt_time(timing.b),
                         timing.summary()))
            print(f"  done: {op}, {name}", flush=True)
    print()
    print(harness.table(["op", "explicit backward", "fwd+bwd", "native fwd+bwd",
                         "ratio [IQR]"], rows))
    print(f"\n(x: {args.rows}x1024 float32)")


if __name__ == "__main__":
    main()
