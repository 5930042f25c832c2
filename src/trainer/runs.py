"""Run folders: going back to one (resume, evaluate) and summing up a sweep of them.

A run folder (``outputs/<date>/<time>_<data>_<model>/``) holds Hydra's record of the command
that made it, ``.hydra/overrides.yaml``. From a checkpoint inside it:

* :func:`inherit_overrides` gives ``python -m trainer ckpt_path=<run>/checkpoints/last.ckpt``
  the run's own overrides (model, data, ...), so the checkpoint alone says what to build, and
  points a resumed run back into its own folder, so its curves continue where they stopped and
  its best/last checkpoints stay one consistent pair;
* :func:`check_more_to_train` refuses a resume that would train nothing.

A ``-m`` sweep writes every job under one folder (``multirun/<date>/<time>/<job>``), and
:class:`SweepSummary` prints, at its end, each job's swept values against its final metrics,
also written as ``summary.csv`` beside the jobs.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback as HydraCallback

#: Overrides a later command gives for itself, never taken over from the run it goes back to.
NOT_INHERITED = ("hydra", "ckpt_path", "mode", "test_ckpt", "verbose")


def override_key(override: str) -> str:
    """``+model.hidden=[8]`` -> ``model.hidden``; ``model=cnn`` -> ``model``."""
    return override.split("=", 1)[0].lstrip("+~")


def run_folder_of(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint was saved in (``<run>/checkpoints/x.ckpt``), if it is one
    this program made (it holds ``.hydra/overrides.yaml``)."""
    path = Path(checkpoint).expanduser().resolve()
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run if (run / ".hydra" / "overrides.yaml").is_file() else None


def _covers(given: str, saved: str) -> bool:
    """Whether the key ``given`` on this command line replaces the saved key ``saved``
    (``model=mlp`` replaces ``model=cnn`` and ``model.hidden=[8]``)."""
    return saved == given or saved.startswith(given + ".")


def _quoted(path: Path) -> str:
    text = str(path)
    if re.fullmatch(r"[\w./:-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def inherit_overrides(overrides: Sequence[str], *, multirun: bool = False
                      ) -> tuple[list[str], str | None]:
    """The command's overrides, completed from the run folder of its ``ckpt_path``.

    The run's saved overrides come first and this command's win over them, key by key. When
    fitting (not ``mode=test``), not sweeping, and no ``hydra.run.dir`` is given, the run goes
    on in its own folder. Returns the overrides and a line saying what was taken over (None
    when nothing was).
    """
    overrides = list(overrides)
    given = {override_key(o): o.split("=", 1)[-1] for o in overrides}
    checkpoint = given.get("ckpt_path")
    run = run_folder_of(checkpoint) if checkpoint not in (None, "", "null") else None
    if run is None:
        return overrides, None
    saved = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    taken = [o for o in saved if isinstance(o, str)
             and not any(_covers(n, override_key(o)) for n in (*given, *NOT_INHERITED))]
    fitting = given.get("mode", "fit") == "fit"
    into_run = fitting and not multirun and "hydra.run.dir" not in given
    extra = [f"hydra.run.dir={_quoted(run)}"] if into_run else []
    said = [f"{'resuming' if fitting else 'evaluating'} {run}"]
    if taken:
        said.append(f"with its overrides {' '.join(taken)}")
    elsewhere = given.get("hydra.run.dir", "").strip("'\"")
    if fitting and elsewhere and Path(elsewhere).expanduser().resolve() != run:
        said.append("(in a new run folder)")
    return [*taken, *overrides, *extra], " ".join(said)


class NothingToDo(Exception):
    """The command asks for nothing that has not been done already."""


def completed_epochs(checkpoint: Mapping[str, Any]) -> int:
    """Epochs a Lightning checkpoint has trained through: its fit loop's count of processed
    epochs (an end-of-epoch checkpoint is saved before its epoch counts as "completed"), else
    ``epoch + 1``, as an end-of-epoch checkpoint records the epoch it ended."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(checkpoint.get("epoch", -1)) + 1


def check_more_to_train(checkpoint: Mapping[str, Any], path: str, max_epochs: int,
                        max_steps: int) -> None:
    """Raise :class:`NothingToDo` when resuming ``checkpoint`` would train no step."""
    epochs, steps = completed_epochs(checkpoint), int(checkpoint.get("global_step", 0))
    if max_epochs != -1 and epochs >= max_epochs:
        reached = f"{epochs} epochs, and trainer.max_epochs={max_epochs}"
        more = "raise trainer.max_epochs"
    elif max_steps != -1 and steps >= max_steps:
        reached = f"{steps} steps, and trainer.max_steps={max_steps}"
        more = "raise trainer.max_steps"
    else:
        return
    raise NothingToDo(f"nothing to do: {path} has trained {reached}; {more} to train on, or "
                      "add mode=test to evaluate it")


# --------------------------------------------------------------------------------------------
# A sweep's summary
# --------------------------------------------------------------------------------------------


def sweep_rows(sweep_dir: str | Path) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per job folder of a sweep: its number, the values that differ between jobs (the
    swept ones), and its final metrics from ``metrics.json`` (blank for a job that failed).
    Returns the column names and the rows."""
    jobs = sorted((p for p in Path(sweep_dir).iterdir()
                   if p.is_dir() and (p / ".hydra" / "overrides.yaml").is_file()),
                  key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0,
                                 p.name))
    values: list[dict[str, str]] = []
    metrics: list[dict[str, float]] = []
    for job in jobs:
        saved = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        values.append({override_key(o): o.split("=", 1)[-1] for o in saved
                       if isinstance(o, str) and not override_key(o).startswith("hydra.")})
        result = job / "metrics.json"
        final = json.loads(result.read_text()) if result.is_file() else {}
        metrics.append(final.get("test", {}))
    keys = list(dict.fromkeys(k for v in values for k in v))
    swept = [k for k in keys if len({v.get(k) for v in values}) > 1] or keys
    names = list(dict.fromkeys(name for m in metrics for name in m))
    rows = [{"job": job.name, **{k: v.get(k, "") for k in swept},
             **{n: m.get(n, "") for n in names}} for job, v, m in zip(jobs, values, metrics)]
    return ["job", *swept, *names], rows


def format_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table: a header, then one aligned line per row; numbers to 4 decimals."""
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


class SweepSummary(HydraCallback):
    """At the end of a ``-m`` sweep: the table of :func:`sweep_rows`, printed and written as
    ``summary.csv`` in the sweep folder, and the command that opens all its runs in
    TensorBoard. (Configured under ``hydra.callbacks`` in ``conf/config.yaml``.)"""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        if not sweep_dir.is_dir():
            return
        columns, rows = sweep_rows(sweep_dir)
        if not rows:
            return
        with open(sweep_dir / "summary.csv", "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nsweep of {len(rows)} runs: {sweep_dir}")
        print(format_table(columns, rows))
        print(f"summary: {sweep_dir / 'summary.csv'}")
        print(f"tensorboard --logdir {sweep_dir}")
