"""The run's logger, as the ``logger/`` config group names it: TensorBoard event files or a
``metrics.csv``, written straight into the run folder."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

# Events TensorBoard's writer queues for its background thread. At SummaryWriter's default
# of 10, a step that logs more (gradient flow's ~25 scalars, its histograms) waits for that
# thread to write each one: ~1.3 of 3.9 ms per gradient-flow step of the MNIST-1D CNN here.
# The thread still writes events as they come; only while it lags do more of them wait.
TENSORBOARD_QUEUE = 1000


def build(name: str, run_dir: str | Path) -> Logger:
    """``name`` is ``tensorboard`` or ``csv`` (the config's ``logger.name``)."""
    if name == "tensorboard":
        return TensorBoardLogger(run_dir, name="", version="", default_hp_metric=False,
                                 max_queue=TENSORBOARD_QUEUE)
    if name == "csv":
        return CSVLogger(run_dir, name="", version="")
    raise ValueError(f"loggers.build: unknown logger {name!r} (tensorboard or csv)")
