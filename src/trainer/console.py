"""What a run prints: the run folder, a line per epoch, the final metrics, how to look inside.

Lightning's own messages (devices found, the model summary, tips, the ``limit_*_batches``
notes) and third-party deprecation warnings are left out unless ``verbose=true``. On a
terminal the progress bar runs as usual; written to a file (no TTY), a run prints one line per
epoch instead of thousands of carriage-returned bar updates.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Mapping

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

#: Lightning's loggers for its info messages (``rank_zero_info`` and the model summary).
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


def quiet(verbose: bool) -> None:
    """Keep Lightning's info messages and others' deprecation notes out of a run's output,
    unless ``verbose``. Warnings of this program and Lightning's warnings stay."""
    if verbose:
        return
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Raised inside Lightning on recent torch, not by this program or its user.
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # A resumed run goes on in its own folder, beside its checkpoints, on purpose.
    warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
    # mode=test builds a Trainer without the fit's callbacks, whose state it does not need.
    warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint need to be")


def on_terminal() -> bool:
    """Whether the progress bar has a terminal to redraw itself on (tqdm writes to stderr)."""
    return sys.stderr.isatty()


def write(line: str) -> None:
    """Print a line without tearing a progress bar that may be on screen."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


class EpochLines(Callback):
    """One line per training epoch: its number, the last train loss, the validation metrics
    and how long it took, e.g. ``epoch 3/30  train/loss 0.4420  val/acc 0.9310  ...  0.4 s``."""

    def __init__(self) -> None:
        self._started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Callbacks run before the module's own on_train_epoch_end, which logs train/acc and
        # train/f1 for this epoch: those values are still last epoch's, so are left out here.
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()
                   if name == "train/loss" or not name.startswith("train/")}
        of = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
        seconds = time.perf_counter() - self._started
        write(f"epoch {trainer.current_epoch + 1}{of}  {format_metrics(metrics)}  "
              f"{seconds:.1f} s")


def format_metrics(metrics: Mapping[str, float]) -> str:
    """``train/loss 0.4420  val/acc 0.9310``, in name order."""
    return "  ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items()))
