"""The run's per-process settings (``threads``, ``keep_freed_memory``), in every process.

``python -m trainer`` applies them as it starts. DDP's ``ddp`` strategy re-runs that command
for each extra process, so those apply them too; but ``ddp_spawn`` (the strategy for sweeps)
starts fresh interpreters that unpickle the Trainer and never run the command, so without
this callback they would train with glibc's moving malloc thresholds and with Lightning's
thread count (cores / processes) rather than the configured one. ``setup`` runs in each
process once it is launched, before any training.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from trainer import allocator


class ProcessSettings(Callback):
    """Sets torch's CPU thread count (``None``: leave it) and, if asked, the allocator policy
    of :func:`trainer.allocator.keep_freed_memory`, now and in every process the Trainer
    launches."""

    def __init__(self, threads: int | None = None, keep_freed_memory: bool = True):
        if threads is not None and threads < 1:
            raise ValueError(f"ProcessSettings: threads must be >= 1 or None, got {threads}")
        self.threads = threads
        self.keep_freed_memory = keep_freed_memory

    def apply(self) -> None:
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if self.keep_freed_memory and not allocator.keeping_freed_memory():
            allocator.keep_freed_memory()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.apply()
