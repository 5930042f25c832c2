"""The run's logger: TensorBoard or CSV, written straight into the run folder."""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from trainer import loggers


def test_tensorboard_writes_event_files_into_the_run_folder_with_a_deep_queue(tmp_path):
    logger = loggers.build("tensorboard", tmp_path)
    assert isinstance(logger, TensorBoardLogger)
    # a step's ~25 gradient-flow scalars fit in the queue: the training thread never waits
    assert logger.experiment.max_queue == loggers.TENSORBOARD_QUEUE >= 100
    logger.log_metrics({f"m{i}": float(i) for i in range(50)}, step=0)
    logger.finalize("success")
    written = list(tmp_path.iterdir())  # no version_N/ or name/ folders
    assert all(path.is_file() for path in written)
    assert sum(path.name.startswith("events.out.tfevents") for path in written) == 1


def test_csv_writes_metrics_csv_into_the_run_folder(tmp_path):
    logger = loggers.build("csv", tmp_path)
    assert isinstance(logger, CSVLogger)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.finalize("success")
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "a,step"


def test_an_unknown_logger_is_refused():
    with pytest.raises(ValueError, match="unknown logger 'wandb'"):
        loggers.build("wandb", "unused")
