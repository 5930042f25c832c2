"""ProcessSettings: the configured threads and allocator policy, in every process a run uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from callback_helpers import Blobs, quiet_trainer, recipe
from lightning.pytorch.callbacks import Callback

from trainer import allocator
from trainer.callbacks import ProcessSettings


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_apply_sets_the_thread_count_and_keeps_freed_memory(restore_threads):
    other = 2 if torch.get_num_threads() == 1 else 1
    ProcessSettings(threads=other, keep_freed_memory=True).apply()
    assert torch.get_num_threads() == other
    assert allocator.keeping_freed_memory() == (allocator._glibc() is not None)


def test_threads_none_leaves_the_thread_count_alone(restore_threads):
    before = torch.get_num_threads()
    ProcessSettings(threads=None, keep_freed_memory=False).apply()
    assert torch.get_num_threads() == before


def test_setup_applies_them_when_the_trainer_starts(tmp_path, restore_threads):
    other = 2 if torch.get_num_threads() == 1 else 1
    trainer = quiet_trainer(tmp_path, [ProcessSettings(threads=other)], max_steps=1,
                            limit_val_batches=0)
    torch.set_num_threads(3)  # as if something changed it after the callback was built
    trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    assert torch.get_num_threads() == other


def test_threads_below_one_are_refused():
    with pytest.raises(ValueError, match="ProcessSettings: threads must be >= 1"):
        ProcessSettings(threads=0)


class ReportSettings(Callback):
    """Writes, from each process, the thread count and allocator policy it trains with."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_train_start(self, trainer, pl_module):
        report = {"threads": torch.get_num_threads(),
                  "keeping_freed_memory": allocator.keeping_freed_memory()}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def spawned_settings(tmp_path: Path, callbacks: list[Callback]) -> list[dict]:
    """What each of two ddp_spawn processes reports (the Trainer pickles the callbacks into
    fresh interpreters, which never ran this test's setup)."""
    trainer = quiet_trainer(tmp_path, [*callbacks, ReportSettings(tmp_path)],
                            strategy="ddp_spawn", devices=2, max_steps=1, limit_val_batches=0)
    trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow
@pytest.mark.skipif(allocator._glibc() is None, reason="the allocator policy needs glibc")
def test_spawned_processes_train_with_the_configured_settings(tmp_path):
    # 3 threads: neither torch's default here nor Lightning's choice (cores / processes)
    reports = spawned_settings(tmp_path, [ProcessSettings(threads=3, keep_freed_memory=True)])
    assert reports == [{"threads": 3, "keeping_freed_memory": True}] * 2


@pytest.mark.slow
def test_without_it_spawned_processes_lose_the_allocator_policy(tmp_path):
    """Why the callback exists: the parent's mallopt does not reach a spawned process."""
    allocator.keep_freed_memory()
    reports = spawned_settings(tmp_path, [])
    assert [report["keeping_freed_memory"] for report in reports] == [False, False]
