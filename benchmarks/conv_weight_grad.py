"""Every way we can write a 3x3 conv's weight gradient from torch ops, against native's.

    python -m benchmarks.conv_weight_grad [--batch 128 --in 32 --out 64 --size 14] [--threads T]

∂L/∂W[o, c, kh, kw] = Σ_n Σ_{h,w} g[n, o, h, w] · x_pad[n, c, h + kh, w + kw] is one GEMM of
(out) x (in·9) x (batch·h·w) multiply-adds. Native calls oneDNN's dedicated backward-weights
kernel, which we may not call (it is the op's built-in backward). Each candidate below is an
explicit formulation; each is timed against native's weight gradient (``autograd.grad`` of
``F.conv2d`` to W alone) in one process, interleaved, and checked against it (max abs error).

  swapped conv       conv2d with batch and channels swapped: x_padᵀ (C, N, H+2, W+2) with gᵀ
                     (O, N, H, W) as the kernel: a 14x14 kernel, a 3x3 output
  width-folded       the same, with the in-channels folded into the width (the library's
                     choice on CPU: `trainer.functional._fast.conv.weight_grad_width_folded`)
  im2col + bmm       unfold x into (N, C·9, H·W) and multiply by g per sample (MKL GEMM)
  shifted rows + mm  x channels-last with its rows padded, so that each tap is a contiguous
                     slice: nine (O x N·Hp·Wp) @ (N·Hp·Wp x C) GEMMs, no im2col copy
  (floor)            the single (O x N·H·W) @ (N·H·W x C·9) GEMM with both operands already
                     laid out: no formulation through torch.mm can beat it

The GFLOP/s column is 2·O·C·9·N·H·W over the time: it says how far each is from the machine's
GEMM rate, and why no explicit formulation reaches native here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks import harness
from trainer.functional._fast.conv import weight_grad_width_folded
from trainer.functional.conv import _params


def formulations(x: torch.Tensor, g: torch.Tensor, weight_shape) -> dict:
    n, c, h, w = x.shape
    o = weight_shape[0]
    params = _params("conv2d", 2, x, torch.empty(weight_shape), None, 1, 1, 1, 1)
    hp, wp = h + 2, w + 2

    def swapped():
        x_pad = F.pad(x, (1, 1, 1, 1))
        return F.conv2d(x_pad.transpose(0, 1), g.transpose(0, 1)).transpose(0, 1)

    def width_trick():
        return weight_grad_width_folded(x, g, weight_shape, params, params.pad_lo)

    def im2col_bmm():
        cols = F.unfold(x, 3, padding=1)  # (N, C·9, H·W)
        return torch.bmm(g.reshape(n, o, h * w), cols.transpose(1, 2)).sum(0).reshape(
            weight_shape)

    def shifted_rows():
        rows = n * hp * wp
        x_rows = x.new_zeros(rows + 2 * wp + 2, c)  # tail: the last taps read past the end
        x_rows[:rows].view(n, hp, wp, c)[:, 1:h + 1, 1:w + 1].copy_(x.permute(0, 2, 3, 1))
        g_rows = g.new_zeros(o, n, hp, wp)  # zero where a tap's slice wraps into the next row
        g_rows[:, :, :h, :w].copy_(g.transpose(0, 1))
        g_rows = g_rows.view(o, rows)
        out = g.new_empty(3, 3, o, c)
        for kh in range(3):
            for kw in range(3):
                start = kh * wp + kw
                torch.mm(g_rows, x_rows[start:start + rows], out=out[kh, kw])
        return out.permute(2, 3, 0, 1)

    # the floor of any GEMM formulation: the one product alone, its operands made beforehand
    g_matrix = g.transpose(0, 1).reshape(o, -1)
    cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, c * 9)

    def gemm_alone():
        return torch.mm(g_matrix, cols).reshape(weight_shape)

    return {"swapped conv": swapped, "width-folded (library)": width_trick,
            "im2col + bmm": im2col_bmm, "shifted rows + mm": shifted_rows,
            "(floor) one mm, operands ready": gemm_alone}


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0], repeats=9, min_time=0.05)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--in", dest="in_channels", type=int, default=32)
    p.add_argument("--out", dest="out_channels", type=int, default=64)
    p.add_argument("--size", type=int, default=14)
    args = p.parse_args(argv)
    n, c, o, s = args.batch, args.in_channels, args.out_channels, args.size
    harness.setup(args, f"conv2d 3x3 pad 1, {n}x{c}x{s}x{s} -> {o}: weight gradient only, "
                        "explicit formulations against native's backward")
    torch.manual_seed(0)
    x = torch.randn(n, c, s, s, requires_grad=True)
    weight = torch.randn(o, c, 3, 3, requires_grad=True)
    g = torch.randn(n, o, s, s)
    y = F.conv2d(x, weight, None, 1, 1)

    def native():
        return torch.autograd.grad(y, (weight,), g, retain_graph=True)[0]

    reference = native()
    flop = 2 * o * c * 9 * n * s * s
    rows = []
    x_, g_ = x.detach(), g
    for name, fn in formulations(x_, g_, weight.shape).items():
        error = (fn() - reference).abs().max().item()
        timing = harness.compare(fn, native, args)
        rows.append((name, harness.fmt_time(timing.a), f"{flop / timing.a / 1e9:.0f}",
                     harness.fmt_time(timing.b), f"{flop / timing.b / 1e9:.0f}",
                     timing.summary(), f"{error:.1e}"))
    print(harness.table(["formulation", "time", "GFLOP/s", "native w-grad", "GFLOP/s",
                         "ratio [IQR]", "max abs err"], rows))
    print(f"\n({flop / 1e9:.2f} GFLOP per weight gradient)")


if __name__ == "__main__":
    main()
