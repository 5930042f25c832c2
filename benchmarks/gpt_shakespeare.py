"""nanoGPT's baby GPT on Shakespeare: the explicit rules against a bare native PyTorch loop.

    python -m benchmarks.gpt_shakespeare [--steps N] [--threads 1]        in one process
    python -m benchmarks.gpt_shakespeare --cli [--steps 2000] [--repeats 1]  whole runs
    python -m benchmarks.gpt_shakespeare --smoke                           a few steps (CI)

The config is ``experiment=shakespeare_char`` composed as ``python -m trainer`` composes it
(batch 12 x block 64, n_layer 4, n_head 4, n_embd 128; AdamW with nanoGPT's groups,
warmup-cosine, grad clip 1.0; seed 42). Both sides start from the same weights (the native
model is ``trainer.nn.to_torch`` of ours) and train on the same batches: batch i of the
training split is ``WindowBatches(...)[i]``, as the datamodule serves it to Lightning.

  * ours: ``model.hidden(x)`` through the rules and the fused loss
    ``trainer.functional.linear_cross_entropy`` through the tied head (the recipe's step);
  * native: nanoGPT's train.py step on the to_torch model: ``cross_entropy(model(x), y)``.

In one process (default), the two train side by side, step by step (ours, then native, from
the same step's batch; each side its own optimizer and schedule), after --warmup untimed
steps: the per-step time ratio is the ratio of the medians, [IQR] the quartiles of the
per-step ratios. Saved bytes: what autograd keeps for one step's backward
(``trainer.testing.saved_bytes``, parameters excluded). At the end, both models' loss on the
validation batches.

--cli times whole runs as a user starts them: ``python -m trainer experiment=shakespeare_char``
against this file's bare loop (``--native-loop``, same batches, optimizer, schedule, clipping,
threads, allocator policy, and a validation on the same batches after every
``data.train_batches`` steps), each a subprocess, alternating. A run's fit time is its wall
time less that of the same command one epoch long (startup, imports, data and the final test
cancel out); tokens/s = (steps - one epoch's) x batch x block / that difference.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import harness

EXPERIMENT = "experiment=shakespeare_char"
SPEED_TARGET, MEMORY_TARGET, LOSS_TOLERANCE = 0.95, 0.60, 0.02


def load(overrides: list[str]):
    """(config, datamodule, training batches, validation batches) of the experiment."""
    from benchmarks.lightning_tax import compose
    from trainer import config, data
    from trainer.data.text import STREAMS, WindowBatches

    plain = compose(config, [EXPERIMENT, *overrides])
    torch.manual_seed(plain["seed"])
    datamodule = data.build(plain["data"], seed=plain["seed"])
    d = plain["data"]
    train = WindowBatches(datamodule.train, d["block_size"], d["batch_size"], datamodule.seed,
                          STREAMS["train"])
    val = [b for b in datamodule.val_dataloader()]
    return plain, datamodule, train, val


class Side:
    """One model with its optimizer and schedule, as the recipe builds them."""

    def __init__(self, model, explicit: bool, plain: dict, total_steps: int):
        from trainer.models.gpt import gpt_param_groups
        from trainer.recipe import WarmupCosine, build_optimizer

        self.model, self.explicit = model, explicit
        opt = plain["optimizer"]
        self.optimizer = build_optimizer(gpt_param_groups(model, opt.get("weight_decay", 0.0)),
                                         opt)
        sched = plain["scheduler"]
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, WarmupCosine(
            total_steps, sched.get("warmup_steps", 0), sched.get("min_lr_ratio", 0.0)))
        self.clip = opt.get("grad_clip", 0.0)

    def loss(self, x, y):
        if self.explicit:  # the recipe's cook and taste
            import trainer.functional as F

            head = self.model.lm_head
            return F.linear_cross_entropy(self.model.hidden(x).flatten(0, 1), head.weight,
                                          y.flatten(), head.bias)
        logits = self.model(x)  # nanoGPT's train.py
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    def step(self, x, y) -> None:
        self.loss(x, y).backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()

    @torch.no_grad()
    def evaluate(self, batches) -> float:
        self.model.eval()
        losses = [self.loss(x, y).item() for x, y in batches]
        self.model.train()
        return sum(losses) / len(losses)


def pair(plain: dict, datamodule, total_steps: int) -> tuple[Side, Side]:
    from trainer import models, nn

    torch.manual_seed(plain["seed"])
    ours = models.build(plain["model"], list(datamodule.input_shape), datamodule.num_classes)
    return (Side(ours, True, plain, total_steps),
            Side(nn.to_torch(ours), False, plain, total_steps))


def saved(side: Side, x, y) -> int:
    from trainer.testing import saved_bytes

    return saved_bytes(lambda: side.loss(x, y), exclude=list(side.model.parameters()))


def in_process(args) -> None:
    plain, datamodule, train, val = load(args.overrides)
    total = args.warmup + args.steps
    ours, native = pair(plain, datamodule, total)
    x, y = train[0]
    ours_bytes, native_bytes = saved(ours, x, y), saved(native, x, y)
    times = {"ours": [], "native": []}
    for i in range(total):
        x, y = train[i]
        for name, side in (("ours", ours), ("native", native)):
            start = time.perf_counter()
            side.step(x, y)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    a, b = statistics.median(times["ours"]), statistics.median(times["native"])
    timing = harness.Timing(a, b, [p / q for p, q in zip(times["ours"], times["native"])])
    val = val[: args.eval_batches] if args.eval_batches else val
    tokens = x.numel()
    print(harness.table(
        ["side", "step (median)", "tokens/s", f"val loss after {total} steps"],
        [("ours (rules, fused loss)", harness.fmt_time(a), f"{tokens / a:,.0f}",
          f"{ours.evaluate(val):.4f}"),
         ("native (to_torch, cross_entropy)", harness.fmt_time(b), f"{tokens / b:,.0f}",
          f"{native.evaluate(val):.4f}")]))
    ratio = native_bytes and ours_bytes / native_bytes
    print(f"\nstep time ours / native = {timing.summary()}   ({len(times['ours'])} steps "
          f"timed after {args.warmup} untimed; speed target: native / ours >= "
          f"{SPEED_TARGET:.2f}, i.e. ratio <= {1 / SPEED_TARGET:.3f})")
    print(f"saved bytes ours / native = {harness.fmt_bytes(ours_bytes)} / "
          f"{harness.fmt_bytes(native_bytes)} = {ratio:.3f}   (target <= {MEMORY_TARGET:.2f}: "
          f"{'ok' if ratio <= MEMORY_TARGET else 'MISSES'})")


def native_loop(args) -> None:
    """The bare loop of --cli, in its own process: --steps steps with a validation after
    every data.train_batches of them; writes {"val_loss": [...]} to --json."""
    from trainer import allocator

    plain, datamodule, train, val = load(args.overrides)
    if plain["threads"] is not None:
        torch.set_num_threads(plain["threads"])
    if plain["keep_freed_memory"]:
        allocator.keep_freed_memory()
    _, native = pair(plain, datamodule, args.steps)
    every = plain["data"]["train_batches"]
    losses = []
    for i in range(args.steps):
        native.step(*train[i])
        if (i + 1) % every == 0:
            losses.append(native.evaluate(val))
    Path(args.json).write_text(json.dumps({"val_loss": losses}))


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"gpt_shakespeare: {' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds


def cli(args) -> None:
    plain, _, train, _ = load(args.overrides)
    every = plain["data"]["train_batches"]
    if args.steps % every or args.steps <= every:
        raise SystemExit(f"gpt_shakespeare --cli: --steps must be a multiple of "
                         f"data.train_batches={every}, more than one epoch; got {args.steps}")
    work = Path(tempfile.mkdtemp(prefix="gpt_shakespeare_"))
    tokens = train.batch_size * train.block_size
    run_ours = [sys.executable, "-m", "trainer", EXPERIMENT, *args.overrides]
    run_native = [sys.executable, "-m", "benchmarks.gpt_shakespeare", "--native-loop",
                  *args.overrides]
    walls: dict[str, dict[int, list[float]]] = {"ours": {}, "native": {}}
    results = {}
    for repeat in range(args.repeats):
        for steps in (args.steps, every):
            tag = f"{repeat}_{steps}"
            walls["ours"].setdefault(steps, []).append(timed(
                [*run_ours, f"trainer.max_epochs={steps // every}",
                 f"hydra.run.dir={work / ('ours_' + tag)}"]))
            out = work / f"native_{tag}.json"
            walls["native"].setdefault(steps, []).append(timed(
                [*run_native, "--steps", str(steps), "--json", str(out)]))
            if steps == args.steps:
                results["native"] = json.loads(out.read_text())["val_loss"]
                results["ours"] = json.loads((work / f"ours_{tag}" / "metrics.json").read_text())
        print(f"  repeat {repeat + 1} of {args.repeats} done", flush=True)
    rows, rates = [], {}
    for side in ("ours", "native"):
        long, short = (statistics.median(walls[side][s]) for s in (args.steps, every))
        rates[side] = (args.steps - every) * tokens / (long - short)
        rows.append((side, f"{long:.1f} s", f"{short:.1f} s", f"{rates[side]:,.0f}"))
    print(harness.table(["run", f"wall, {args.steps} steps", f"wall, {every} steps",
                         "tokens/s of the fit"], rows))
    ratio = rates["ours"] / rates["native"]
    print(f"\nours / native tokens/s = {ratio:.3f}   (target >= {SPEED_TARGET:.2f}: "
          f"{'ok' if ratio >= SPEED_TARGET else 'MISSES'})")
    best = results["ours"].get("best") or {}
    native_last = results["native"][-1]
    print(f"val loss at step {args.steps}: native {native_last:.4f}; ours: best epoch "
          f"{best.get('epoch')} val/loss {best.get('val/loss', float('nan')):.4f} "
          f"(test/loss {results['ours']['test'].get('test/loss', float('nan')):.4f}); "
          f"native per validation: {', '.join(f'{v:.4f}' for v in results['native'])}")
    print(f"(runs kept in {work})")


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0], repeats=1, warmup=5, ab_timing=True)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps (in one process; default 60), or the whole run's steps "
                        "(--cli; default 2000)")
    p.add_argument("--eval-batches", type=int, default=0,
                   help="validation batches for the final loss (default: the config's)")
    p.add_argument("--smoke", action="store_true", help="3 steps, 1 warm-up, 1 val batch")
    p.add_argument("--cli", action="store_true", help="time whole runs, as subprocesses")
    p.add_argument("--native-loop", action="store_true", help=argparse_hidden())
    p.add_argument("--json", default=None, help=argparse_hidden())
    p.add_argument("overrides", nargs="*", help="Hydra overrides after the experiment's")
    args = p.parse_args(argv)
    if args.native_loop:
        return native_loop(args)
    if args.smoke:
        args.steps, args.warmup, args.eval_batches = 3, 1, 1
    if args.steps is None:
        args.steps = 2000 if args.cli else 60
    harness.setup(args, "GPT on Shakespeare: ours (explicit rules) vs a bare native loop",
                  protocol=("whole runs as subprocesses, alternating; fit = wall(steps) - "
                            "wall(one epoch)" if args.cli else
                            f"{args.warmup} untimed steps, then {args.steps} steps, each "
                            "side in turn on the same batch; medians; ratio = ours / native"))
    print(f"cpu threads: {torch.get_num_threads()} here; the runs use the config's `threads` "
          f"| OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    (cli if args.cli else in_process)(args)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
