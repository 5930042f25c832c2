"""The validation metrics of every epoch, and which epoch was best: what ``metrics.json``
reports as ``best`` and what the end of a run prints, early-stopped or not."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class BestEpoch(Callback):
    """Keeps each validation's metrics (``val/...``) with its epoch and step, in the checkpoint
    too, so a resumed run remembers the epochs before it.

    ``best`` is the entry with the best ``monitor`` value (``mode`` ``min`` or ``max``): the same
    rule the best checkpoint is chosen by.
    """

    def __init__(self, monitor: str = "val/acc", mode: str = "max"):
        self.monitor, self.mode = monitor, mode
        self.history: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()
                   if name.startswith("val/")}
        if metrics:
            self.history.append({"epoch": trainer.current_epoch + 1,
                                 "step": trainer.global_step, **metrics})

    @property
    def best(self) -> dict[str, Any] | None:
        scored = [entry for entry in self.history if self.monitor in entry]
        if not scored:
            return None
        pick = min if self.mode == "min" else max
        return pick(scored, key=lambda entry: entry[self.monitor])  # the first of equals

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
