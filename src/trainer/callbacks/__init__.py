"""Callbacks a run is built with, named by the ``callbacks/`` config group.

``build(callbacks_config, run_dir, hparams=...)`` returns the list the Trainer takes. Each
callback has a field in :class:`trainer.config.CallbacksConfig`, a class here, and a line in
:func:`build`. Seeing inside a run: :class:`GradientFlow` (norms, update ratios, dead ReLUs,
histograms), :class:`GradientCheck` (the explicit gradients against built-in autograd) and
:class:`Pictures` (confusion matrix, worst mistakes, decision boundary), or for an autoencoder
:class:`Reconstructions` (inputs over their reconstructions), both under ``pictures``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from .best_epoch import BestEpoch
from .gradient_check import GradientCheck, GradientCheckError
from .gradient_flow import GradientFlow
from .pictures import Pictures
from .process import ProcessSettings
from .reconstructions import Reconstructions


class HParamsSummary(Callback):
    """Writes the run's hyperparameters against its final test metrics to TensorBoard's
    HPARAMS tab, once testing ends.

    The summary only names the metrics; TensorBoard reads their values from the scalars the
    test stage logged (``test/acc``, ...), so no duplicate points are written.
    """

    def __init__(self, params: Mapping[str, Any], metric_prefix: str = "test/"):
        self.params = flatten(params)
        self.metric_prefix = metric_prefix
        self.written: dict[str, float] = {}

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()
                   if name.startswith(self.metric_prefix)}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                write_hparams(logger, self.params, metrics)
        self.written = metrics


def write_hparams(logger: TensorBoardLogger, params: Mapping[str, Any],
                  metrics: Mapping[str, float]) -> None:
    """The three summaries TensorBoard's hparams plugin reads (experiment, session start, end)."""
    from torch.utils.tensorboard.summary import hparams

    experiment, session_start, session_end = hparams(dict(params), dict(metrics))
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, session_start, session_end):
        writer.add_summary(summary)
    logger.experiment.flush()


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"hidden": [256]}}`` -> ``{"model/hidden": "[256]"}``: the scalars, strings
    and booleans TensorBoard's hparams take."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:  # lists, None
            flat[name] = str(value)
    return flat


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``, rewritten after every epoch: the state to resume from.

    (Lightning 2.6's ``save_last=True`` only refreshes ``last.ckpt`` when a top-k checkpoint is
    saved, so after the best epoch it stops following the run.)
    """

    def __init__(self, dirpath: str | Path):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                         every_n_epochs=1, enable_version_counter=False)


def build(callbacks: Mapping[str, Any], run_dir: str | Path,
          hparams: Mapping[str, Any] | None = None, terminal: bool = False) -> list[Callback]:
    """The callbacks a ``callbacks/`` config asks for; checkpoints go to ``run_dir/checkpoints``.

    The best checkpoint comes first, so ``trainer.checkpoint_callback`` is the best one.
    :class:`BestEpoch` follows the same monitor. The progress bar runs only on a ``terminal``;
    a line per epoch is printed either way (:class:`trainer.console.EpochLines`).
    """
    from trainer.console import EpochLines

    checkpoint = dict(callbacks.get("checkpoint") or {})
    monitor, mode = checkpoint.get("monitor") or "val/acc", checkpoint.get("mode") or "max"
    dirpath = Path(run_dir) / "checkpoints"
    built: list[Callback] = [
        ModelCheckpoint(
            dirpath=dirpath,
            # A fixed name: "/" in a metric name would make a folder of the filename.
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=checkpoint.get("save_top_k", 1),
            save_last=False,
            auto_insert_metric_name=False,
            enable_version_counter=False,  # best.ckpt is always the best: never best-v1.ckpt
        )
    ]
    if checkpoint.get("save_last", True):
        built.append(LastCheckpoint(dirpath))
    built += [BestEpoch(monitor, mode), EpochLines()]
    if (stopping := dict(callbacks.get("early_stopping") or {})).pop("enabled", False):
        built.append(EarlyStopping(**stopping))
    if callbacks.get("progress_bar", True) and terminal:
        built.append(TQDMProgressBar(refresh_rate=callbacks.get("progress_refresh_rate", 1)))
    if hparams is not None:
        built.append(HParamsSummary(hparams))
    if (flow := dict(callbacks.get("gradient_flow") or {})).pop("enabled", False):
        built.append(GradientFlow(**flow))
    if (check := dict(callbacks.get("gradient_check") or {})).pop("enabled", False):
        built.append(GradientCheck(**check))
    if (pictures := dict(callbacks.get("pictures") or {})).pop("enabled", False):
        built.append(Pictures(**pictures))  # each draws only for its recipe's task
        built.append(Reconstructions(pictures.get("every_n_epochs", 5)))
    return built


def checkpoint_paths(trainer: L.Trainer) -> dict[str, str | None]:
    """``{"best": path, "last": path}`` of the checkpoints this run saved (None where none)."""
    paths: dict[str, str | None] = {"best": None, "last": None}
    for callback in trainer.checkpoint_callbacks:
        kind = "last" if isinstance(callback, LastCheckpoint) else "best"
        paths[kind] = paths[kind] or callback.best_model_path or None
    return paths


__all__ = ["BestEpoch", "GradientCheck", "GradientCheckError", "GradientFlow", "HParamsSummary",
           "LastCheckpoint", "Pictures", "ProcessSettings", "Reconstructions", "build",
           "checkpoint_paths", "flatten", "write_hparams"]
