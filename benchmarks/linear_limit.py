"""How close linear's forward+backward comes to the three GEMMs it cannot avoid.

    python -m benchmarks.linear_limit [--rows 256 --in 1024 --out 1024] [--repeats N]

A linear layer's forward and backward is, at heart, three matrix products on the same tensors:
    forward   y  = x Wᵀ + b     (torch.addmm)
    ∂L/∂x      = g W            (torch.mm)
    ∂L/∂W      = gᵀ x           (torch.mm)
plus ∂L/∂b = Σ g. "bare" runs exactly those four kernels, with no autograd at all: the floor
any implementation is measured against. Prints explicit / bare and native / bare.
"""

from __future__ import annotations

import torch
import torch.nn.functional as native_F

import trainer.functional as explicit_F
from benchmarks import harness


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--in", dest="in_features", type=int, default=1024)
    p.add_argument("--out", dest="out_features", type=int, default=1024)
    args = p.parse_args(argv)
    harness.setup(args, f"linear {args.rows}x{args.in_features} -> {args.out_features}: "
                        "forward+backward against its bare GEMMs")
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.in_features, requires_grad=True)
    w = torch.randn(args.out_features, args.in_features, requires_grad=True)
    b = torch.randn(args.out_features, requires_grad=True)
    g = torch.randn(args.rows, args.out_features)
    x_, w_, b_ = x.detach(), w.detach(), b.detach()

    def bare() -> None:
        torch.addmm(b_, x_, w_.t())
        torch.mm(g, w_)
        torch.mm(g.t(), x_)
        g.sum(0)

    explicit = harness.forward_backward(explicit_F.linear, [x, w, b], [g])
    native = harness.forward_backward(native_F.linear, [x, w, b], [g])
    rows = []
    for name, fn in (("explicit", explicit), ("native", native)):
        timing = harness.compare(fn, bare, args)
        rows.append((name, harness.fmt_time(timing.a), harness.fmt_time(timing.b),
                     timing.summary()))
    flops = 3 * 2 * args.rows * args.in_features * args.out_features
    print(harness.table(["implementation", "fwd+bwd", "bare GEMMs", "ratio to bare [IQR]"],
                        rows))
    print(f"\n(3 GEMMs = {flops / 1e9:.2f} GFLOP per call)")


if __name__ == "__main__":
    main()
