"""Peak memory and time of the fused linear_cross_entropy against cross_entropy(linear(...)).

    python -m benchmarks.fused_ce [--tokens 4096 --hidden 512 --classes 32000]
                                  [--chunk-sizes 64 512 ...] [--repeats 3] [--threads T]

One forward+backward of an LM head, loss = CE(x Wᵀ, t), x (tokens, hidden) and W (classes,
hidden) both requiring grad, float32, gradients returned by torch.autograd.grad (so they are
counted). Peak memory is measured honestly, in a fresh subprocess per variant, two ways:

  torch allocator peak: the step runs under torch.profiler with profile_memory=True; every
      CPU allocation and free torch makes is recorded with the allocator's running total of
      bytes allocated since profiling began, whose maximum is the step's peak of live tensor
      memory on top of what existed before (inputs, weights). Exact for torch tensors.
  RSS peak growth: the process's resident-set high-water mark (VmHWM, reset through
      /proc/self/clear_refs just before the step) minus the RSS before it: what the OS saw,
      allocator slack included. malloc is made to return big blocks on free
      (MALLOC_MMAP_THRESHOLD_), so earlier steps do not hide this one's peak.

Both sides run one untimed warm-up step first (lazy init, thread pools). Timing runs in this
process: interleaved A/B, medians, as benchmarks.harness does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import torch
import torch.nn.functional as native_F

from benchmarks import harness
from trainer import testing
from trainer.functional.fused import AUTO_CHUNK_ELEMENTS, linear_cross_entropy

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def make_inputs(tokens: int, hidden: int, classes: int):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(tokens, hidden, generator=gen) / hidden ** 0.5).requires_grad_()
    w = (torch.randn(classes, hidden, generator=gen) / hidden ** 0.5).requires_grad_()
    t = torch.randint(0, classes, (tokens,), generator=gen)
    return x, w, t


def variant_fn(variant: str):
    """'unfused', 'fused' (auto chunk) or 'fused:<chunk rows>'."""
    if variant == "unfused":
        return lambda x, w, t: native_F.cross_entropy(native_F.linear(x, w), t)
    chunk = None if variant == "fused" else int(variant.split(":", 1)[1])
    return lambda x, w, t: linear_cross_entropy(x, w, t, chunk_size=chunk)


def step(fn, x, w, t):
    return torch.autograd.grad(fn(x, w, t), (x, w))


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def allocator_peak(fn, x, w, t) -> int:
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        grads = step(fn, x, w, t)
        del grads
    running_totals = []

    def walk(node):
        if node.tag == _EventType.Allocation:
            running_totals.append(node.extra_fields.total_allocated)
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    return max(running_totals, default=0)


def child(args) -> None:
    """Measure one variant in this (fresh) process and print one JSON line."""
    x, w, t = make_inputs(args.tokens, args.hidden, args.classes)
    fn = variant_fn(args.child)
    step(fn, x, w, t)  # warm-up
    saved = testing.saved_bytes(lambda: fn(x, w, t), exclude=[w])
    rss_peak = None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
        grads = step(fn, x, w, t)
        rss_peak = _status_kb("VmHWM") - before
        del grads
    except OSError:  # not Linux, or clear_refs not writable: report the allocator only
        pass
    print(json.dumps({"allocator_peak": allocator_peak(fn, x, w, t), "rss_peak": rss_peak,
                      "saved": saved}))


def measure_in_subprocess(variant: str, args) -> dict:
    command = [sys.executable, "-m", "benchmarks.fused_ce", "--child", variant,
               "--tokens", str(args.tokens), "--hidden", str(args.hidden),
               "--classes", str(args.classes)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    env = dict(os.environ, **MALLOC_ENV)
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant}: measuring subprocess failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0], repeats=3, warmup=1, min_time=0.0)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--classes", type=int, default=32000)
    p.add_argument("--chunk-sizes", type=int, nargs="*", default=[],
                   help="also measure the fused op with these chunk sizes (rows)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # the per-variant subprocess
    args = p.parse_args(argv)
    if args.child:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        child(args)
        return
    harness.setup(args, f"fused linear + cross-entropy: N={args.tokens} tokens, "
                        f"H={args.hidden}, V={args.classes}, float32, forward+backward")
    print("memory: measured in a fresh subprocess per variant (see the module docstring):")
    print("  'allocator peak' = max over the step of torch's CPU allocator total, from "
          "torch.profiler(profile_memory=True) allocation events, above the inputs;")
    print("  'RSS growth' = VmHWM (reset via /proc/self/clear_refs) minus RSS before the step.")
    logits, x_bytes, w_bytes = (4 * args.tokens * args.classes, 4 * args.tokens * args.hidden,
                                4 * args.classes * args.hidden)
    print(f"for scale: full logits {harness.fmt_bytes(logits)}, x {harness.fmt_bytes(x_bytes)}, "
          f"W {harness.fmt_bytes(w_bytes)}")
    print()
    x, w, t = make_inputs(args.tokens, args.hidden, args.classes)
    variants = ["unfused", "fused", *(f"fused:{c}" for c in args.chunk_sizes)]
    memory = {}
    for variant in variants:
        memory[variant] = measure_in_subprocess(variant, args)
        print(f"  measured memory: {variant}", flush=True)
    unfused_fn = variant_fn("unfused")
    rows = []
    for variant in variants:
        m, base = memory[variant], memory["unfused"]
        if variant == "unfused":
            time_cell, ratio_cell = "", "1.00"
        else:
            timing = harness.compare(lambda fn=variant_fn(variant): step(fn, x, w, t),
                                     lambda: step(unfused_fn, x, w, t), args)
            time_cell = f"{harness.fmt_time(timing.a)} vs {harness.fmt_time(timing.b)}"
            ratio_cell = timing.summary()
        rss = "n/a" if m["rss_peak"] is None else (
            f"{harness.fmt_bytes(m['rss_peak'])} ({m['rss_peak'] / base['rss_peak']:.2f})"
            if base["rss_peak"] else harness.fmt_bytes(m["rss_peak"]))
        label = variant if variant != "fused" else (
            f"fused (auto chunk: {max(1, AUTO_CHUNK_ELEMENTS // args.classes)} rows)")
        rows.append((label,
                     f"{harness.fmt_bytes(m['allocator_peak'])} "
                     f"({m['allocator_peak'] / base['allocator_peak']:.2f})",
                     rss, f"{harness.fmt_bytes(m['saved'])} ({m['saved'] / base['saved']:.2f})",
                     time_cell, ratio_cell))
    print()
    print(harness.table(["variant", "allocator peak (vs unfused)", "RSS growth (vs unfused)",
                         "saved for backward (vs unfused)", "fwd+bwd fused vs unfused",
                         "time ratio [IQR]"], rows))


if __name__ == "__main__":
    main()
