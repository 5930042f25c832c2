"""What every benchmark shares: the machine line, the CLI flags, A/B timing, tables.

Timing protocol (``compare``): both sides run the same inputs; each is warmed up first (the
first calls pay for allocations, lazy init, oneDNN primitive caches); then measurements
alternate A, B, A, B, ... so that a slow spell on a shared machine hits both sides alike.
Each measurement times ``inner`` back-to-back calls, with ``inner`` chosen so one measurement
lasts at least ``--min-time`` seconds; a side's time is the median over ``--repeats``
measurements, and the ratio is A's median over B's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from trainer import allocator

SLOW_RATIO = 1.25  # an explicit op slower than this many times native gets flagged


def cpu_model() -> str:
    """The CPU's model name, with its family, model and clock where /proc/cpuinfo gives them:
    cloud CPUs often share one name ("AMD EPYC") across generations that time differently."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model", "cpu MHz") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip():  # the first processor's block is enough
                    break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    details = [f"family {fields['cpu family']} model {fields['model']}"
               if "cpu family" in fields and "model" in fields else "",
               f"{float(fields['cpu MHz']):.0f} MHz" if "cpu MHz" in fields else ""]
    details = [d for d in details if d]
    return f"{name} ({', '.join(details)})" if details else name


def machine_line() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine: {cpu_model()} | {os.cpu_count()} cores ({usable} usable) | "
            f"load avg {load} | torch {torch.__version__} | "
            f"threads {torch.get_num_threads()} | python {platform.python_version()}")


def parser(description: str, repeats: int = 15, warmup: int = 3, min_time: float = 0.05,
           ab_timing: bool = True) -> argparse.ArgumentParser:
    """The shared flags; ``ab_timing=False`` leaves out those only :func:`compare` reads."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeats", type=int, default=repeats,
                   help="measurements per side, alternating A/B (default %(default)s)")
    if ab_timing:
        p.add_argument("--warmup", type=int, default=warmup,
                       help="untimed calls per side before measuring (default %(default)s)")
        p.add_argument("--min-time", type=float, default=min_time,
                       help="seconds one measurement lasts at least (default %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--system-allocator", action="store_true",
                   help="leave glibc malloc's thresholds as they are (default: keep freed "
                        "memory, as python -m trainer does; see trainer/allocator.py)")
    return p


def add_only_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--only NAME ...``: run only the ``what`` (cases, sweeps) whose name contains a word."""
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"run only the {what} whose name contains one of these words")


def only(items: Iterable, words: Sequence[str] | None) -> list:
    """The items (anything with a ``name``) that ``--only`` selects: all of them without it."""
    return [item for item in items if not words or any(w in item.name for w in words)]


def setup(args: argparse.Namespace, title: str, protocol: str | None = None) -> None:
    """Apply --threads and the allocator policy, then print what ran where and how it is
    timed."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    kept = False if args.system_allocator else allocator.keep_freed_memory()
    print(f"== {title}")
    print(machine_line())
    print(f"allocator: {allocator.description(kept)}")
    print("protocol: " + (protocol or (
        f"warm-up {args.warmup}, then {args.repeats} interleaved A/B measurements of >= "
        f"{args.min_time * 1e3:.0f} ms each; medians; ratio = A / B; [IQR] = quartiles of "
        "the per-pair ratios")))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > cores and torch.get_num_threads() > 1:
        # Seen here: with other processes on every core, each multi-threaded op waits at its
        # OpenMP barrier for a descheduled thread, and times grow 10-100x, mostly noise.
        print("WARNING: load average exceeds the core count; multi-threaded timings will be "
              "dominated by scheduling. Prefer --threads 1 on a busy machine.")
    print()


@dataclass
class Timing:
    a: float  # median seconds per call
    b: float
    pair_ratios: list[float]

    @property
    def ratio(self) -> float:
        return self.a / self.b

    @property
    def spread(self) -> tuple[float, float]:
        """Lower and upper quartile of the per-pair ratios: how far to trust ``ratio``."""
        q = statistics.quantiles(self.pair_ratios, n=4) if len(self.pair_ratios) > 1 else None
        return (q[0], q[2]) if q else (self.ratio, self.ratio)

    def summary(self) -> str:
        """``ratio [low-high]``: the table cell every benchmark prints."""
        low, high = self.spread
        return f"{self.ratio:.2f} [{low:.2f}-{high:.2f}]"


def _calls_per_measurement(fn: Callable[[], object], min_time: float) -> int:
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(min_time / once + 0.999))


def _measure(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def compare(a: Callable[[], object], b: Callable[[], object], args: argparse.Namespace
            ) -> Timing:
    """Time ``a`` against ``b`` as the module docstring says."""
    for _ in range(args.warmup):
        a()
        b()
    inner = max(_calls_per_measurement(a, args.min_time), _calls_per_measurement(b, args.min_time))
    times_a, times_b = [], []
    for _ in range(args.repeats):
        times_a.append(_measure(a, inner))
        times_b.append(_measure(b, inner))
    return Timing(statistics.median(times_a), statistics.median(times_b),
                  [x / y for x, y in zip(times_a, times_b)])


def forward_backward(fn: Callable[..., object], inputs: Sequence[object],
                     grad_outputs: Sequence[Tensor] | None = None) -> Callable[[], None]:
    """A closure running ``fn(*inputs)`` and its backward to every input that requires grad.

    ``torch.autograd.grad`` rather than ``.backward()``: nothing accumulates into ``.grad``,
    so every call does the same work. ``grad_outputs`` default to ones (right for losses).
    """
    leaves = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]

    def run() -> None:
        out = fn(*inputs)
        outs = [out] if isinstance(out, Tensor) else [o for o in out if isinstance(o, Tensor)]
        outs = [o for o in outs if o.requires_grad]
        grads = grad_outputs or [torch.ones_like(o) for o in outs]
        torch.autograd.grad(outs, leaves, grads, allow_unused=True)

    return run


def fixed_grad_like(fn: Callable[..., object], inputs: Sequence[object]) -> list[Tensor]:
    """One random grad_output per differentiable output of ``fn(*inputs)``, seeded, so both
    sides of a comparison are driven by the same numbers."""
    with torch.no_grad():
        out = fn(*inputs)
    outs = [out] if isinstance(out, Tensor) else [o for o in out if isinstance(o, Tensor)]
    gen = torch.Generator().manual_seed(1234)
    return [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outs]


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (readable as text, pasteable into benchmarks/README.md)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])
