"""The ops the per-op bar flags, timed over a range of sizes: where does the gap come from?

    python -m benchmarks.op_sizes [--only NAME ...] [--threads T] [--repeats N]

``benchmarks.layers`` times each op at one size. An explicit rule can be slower than native
for two different reasons, and the size sweep tells them apart:

* a fixed cost per call (Python in the rule, its argument checks, a few more small kernel
  launches): it shows as ``explicit - native`` staying about the same in microseconds while
  the ratio falls toward 1 as the op grows;
* more passes over memory (native runs one fused kernel where the explicit rule composes
  several tensor ops): the ratio stays put as the op grows.

Each cell is explicit / native forward+backward time, with the same protocol as
``benchmarks.layers`` (same inputs and grad_output, warm-up, interleaved A/B, medians); the
last column is the difference at the largest size, per million elements of the op's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks import harness, layers
from benchmarks.layers import Case, batch_norm_inputs, classes, conv_inputs, randn


@dataclass
class Sweep:
    name: str  # the op, as flagged by benchmarks.layers
    sizes: list[int]  # the swept size (rows, or batch)
    case: Callable[[int], Case]  # the op at one size
    numel: Callable[[int], int]  # elements of the op's input at that size


WIDTH = 1024  # row length of the row-wise ops, as in benchmarks.layers
ROWS = [4, 64, 256, 2048]


def rowwise(op: str, **kwargs) -> Sweep:
    return Sweep(f"{op} Nx{WIDTH}", ROWS,
                 lambda n: Case(f"{op} {n}x{WIDTH}", op, lambda: [randn(n, WIDTH)],
                                kwargs=kwargs),
                 lambda n: n * WIDTH)


SWEEPS = [
    Sweep("conv2d 3x3 N,32->64 @14 pad1", [8, 32, 128, 256],
          lambda n: Case(f"conv2d {n}", "conv2d", lambda: conv_inputs(n, 32, 64, 14, 3, 2),
                         layers.WEIGHT_AND_BIAS, {"padding": 1}),
          lambda n: n * 32 * 14 * 14),
    *[rowwise(op) for op in ("relu", "leaky_relu", "gelu", "silu")],
    rowwise("softmax", dim=-1),
    rowwise("log_softmax", dim=-1),
    Sweep(f"batch_norm 1d train Nx{WIDTH}", ROWS,
          lambda n: Case(f"batch_norm {n}", "batch_norm", lambda: batch_norm_inputs(n, WIDTH),
                         lambda inputs: inputs[3:5], {"training": True}),
          lambda n: n * WIDTH),
    Sweep(f"layer_norm Nx{WIDTH}", ROWS,
          lambda n: Case(f"layer_norm {n}", "layer_norm",
                         lambda: [randn(n, WIDTH), (WIDTH,), randn(WIDTH), randn(WIDTH)],
                         lambda inputs: inputs[2:4]),
          lambda n: n * WIDTH),
    Sweep("cross_entropy Nx1000", [4, 128, 1024, 8192],
          lambda n: Case(f"cross_entropy {n}", "cross_entropy",
                         lambda: [randn(n, 1000), classes(n, 1000)]),
          lambda n: n * 1000),
    Sweep("nll_loss Nx1000", [4, 128, 1024, 8192],
          lambda n: Case(f"nll_loss {n}", "nll_loss",
                         lambda: [torch.randn(n, 1000).log_softmax(-1).requires_grad_(),
                                  classes(n, 1000)]),
          lambda n: n * 1000),
]


def cell(timing: harness.Timing) -> str:
    return (f"{timing.ratio:.2f} ({harness.fmt_time(timing.a)} / "
            f"{harness.fmt_time(timing.b)})")


def run_sweep(sweep: Sweep, args) -> tuple[list[str], float]:
    """One cell per size, and explicit − native at the largest size per million elements."""
    cells, timing = [], None
    for n in sweep.sizes:
        prepared = layers.prepare(sweep.case(n))
        timing = harness.compare(prepared.explicit_step, prepared.native_step, args)
        cells.append(cell(timing))
    per_million = (timing.a - timing.b) / (sweep.numel(sweep.sizes[-1]) / 1e6)
    return cells, per_million


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0])
    harness.add_only_flag(p, "sweeps")
    args = p.parse_args(argv)
    harness.setup(args, "flagged ops over sizes: explicit / native forward+backward")
    sweeps = harness.only(SWEEPS, args.only)
    rows = []
    for sweep in sweeps:
        cells, per_million = run_sweep(sweep, args)
        sizes = ", ".join(str(n) for n in sweep.sizes)
        rows.append((sweep.name, f"N = {sizes}", *cells,
                     f"{harness.fmt_time(per_million)}"))
        print(f"  done: {sweep.name}", flush=True)
    print()
    print("ratio (explicit / native) at each size, smallest first")
    print(harness.table(["op", "sizes", "1st", "2nd", "3rd", "4th",
                         "explicit - native per 1M elements (largest)"], rows))


if __name__ == "__main__":
    main()
