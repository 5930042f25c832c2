"""Train the experiments that reproduce published tables, each through the CLI, and tabulate.

    python -m benchmarks.published [--only NAME ...] [extra hydra overrides for every run]

Each row runs ``python -m trainer experiment=NAME`` in a fresh process, exactly as a user
would, times it (wall clock, start to exit, on the app's default of 1 thread), and reads the
test accuracy from the line the CLI prints at the end. The figures it is set against:

  MNIST-1D      github.com/greydanus/mnist1d README: logistic 32%, MLP 68%, CNN 94%, GRU 91%
  Fashion-MNIST github.com/zalandoresearch/fashion-mnist benchmark: 2 conv + pooling 0.916,
                MLP 256-128-100 0.883
  digits, moons the issue's own bars (>= 0.98; 100% on a held-out split)
  Shakespeare   nanoGPT's README: the baby GPT's validation loss, about 1.88 on tiny-shakespeare
                in its CPU configuration (our text differs: eight plays from Gutenberg,
                trainer/data/corpora); the row reads the best validation loss the CLI prints

The run folders (TensorBoard logs, checkpoints, the composed config) stay under outputs/.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks import harness


@dataclass(frozen=True)
class Row:
    experiment: str
    dataset: str
    model: str
    published: str
    target: float
    metric: str = "test/acc"  # as the CLI prints it at the end ("val/loss": the best epoch's)
    lower_is_better: bool = False


ROWS = [
    Row("mnist1d_mlp", "MNIST-1D", "MLP", "0.68 (MLP)", 0.68),
    Row("mnist1d_cnn", "MNIST-1D", "CNN (1-D)", "0.94 (CNN)", 0.94),
    Row("fashion_mlp", "Fashion-MNIST", "MLP", "0.883 (MLP 256-128-100)", 0.89),
    Row("fashion_cnn", "Fashion-MNIST", "CNN", "0.916 (2 conv + pooling)", 0.92),
    Row("digits_mlp", "digits (sklearn)", "MLP", "—", 0.98),
    Row("moons_mlp", "two moons", "MLP", "—", 1.0),
    Row("mnist1d_gru", "MNIST-1D", "GRU", "0.91 (GRU)", 0.91),
    Row("shakespeare_char", "Shakespeare (chars)", "GPT (nanoGPT's baby)",
        "val loss 1.88 (tiny-shakespeare)", 1.95, metric="val/loss", lower_is_better=True),
]

_RUN_DIR = re.compile(r"^run folder: (.+)$", re.MULTILINE)


def run(row: Row, overrides: list[str]) -> tuple[float | None, float, str]:
    """(the row's metric or None, wall seconds, run folder or the error's last line)."""
    command = [sys.executable, "-m", "trainer", f"experiment={row.experiment}", *overrides]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    # the summary's lines: "best epoch N: val/acc 0.98  val/loss ..." and "test/acc   0.97"
    summary = "\n".join(line for line in done.stdout.splitlines()
                        if line.startswith(("best epoch", row.metric)))
    accuracy = re.search(rf"(?:^|  |: ){re.escape(row.metric)} +(\d+\.\d+)", summary,
                         re.MULTILINE)
    if done.returncode != 0 or accuracy is None:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        return None, seconds, f"exit {done.returncode}: {last[0]}"
    folder = _RUN_DIR.search(done.stdout)
    return float(accuracy.group(1)), seconds, folder.group(1) if folder else ""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    p.add_argument("overrides", nargs="*", help="hydra overrides added to every run")
    args = p.parse_args(argv)
    rows = [r for r in ROWS if not args.only or r.experiment in args.only]
    print("== published results, each trained by `python -m trainer experiment=NAME`")
    print(harness.machine_line() + " (this process; each run takes the config's `threads`)")
    print()
    table, failures = [], 0
    for row in rows:
        accuracy, seconds, where = run(row, args.overrides)
        met = accuracy is not None and (accuracy <= row.target if row.lower_is_better
                                        else accuracy >= row.target)
        failures += not met
        table.append((row.dataset, row.model, f"`experiment={row.experiment}`", row.published,
                      f"{'<=' if row.lower_is_better else '>='} {row.target:g}",
                      "failed" if accuracy is None else f"{row.metric} {accuracy:.4f}",
                      "yes" if met else "NO", f"{seconds:.0f} s"))
        print(f"  {row.experiment}: {where}", flush=True)
    print()
    print(harness.table(["dataset", "model", "command", "published", "target", "result",
                         "met", "wall time"], table))
    if failures:
        raise SystemExit(f"{failures} experiment(s) missed their target or failed")


if __name__ == "__main__":
    main()
