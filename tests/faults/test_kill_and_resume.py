"""Resume after a kill: SIGKILL once a checkpoint exists, resume from last.ckpt, and end with
the very metrics and weights of the same run left unbroken. Checkpoints are written atomically,
so a crash in the middle of a save leaves the previous one whole."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from fault_helpers import explain, run_trainer, trainer_command, trainer_env
from lightning.pytorch.callbacks import ModelCheckpoint

from trainer.callbacks.checkpointing import (
    AtomicCheckpointIO,
    RandomState,
    atomic_save,
    collect_random_state,
    load_checkpoint,
    restore_random_state,
)
from trainer.recipe import Recipe

# The default recipe (digits, MLP with BatchNorm and dropout 0.1, AdamW, cosine per step), cut
# to 4 epochs of 21 steps: dropout makes the run depend on the restored RNG state.
RUN = ("trainer.max_epochs=4", "seed=7")
# A language model (a tiny GPT on the shipped Shakespeare), 4 epochs of 21 steps: its batches
# are drawn from (seed, step), so a resumed run must draw the unbroken run's.
LANGUAGE_MODEL_RUN = ("experiment=shakespeare_char", "trainer.max_epochs=4",
                      "data.train_batches=21", "data.eval_batches=2", "model.n_layer=1",
                      "model.n_embd=32", "model.n_head=2", "sample.max_new_tokens=8", "seed=7")


def final_state(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    weights = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return metrics, weights


@pytest.mark.parametrize("RUN", [RUN, LANGUAGE_MODEL_RUN], ids=["classifier", "language_model"])
def test_killed_run_resumed_from_last_ckpt_ends_identical_to_the_unbroken_run(tmp_path, RUN):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    unbroken = subprocess.Popen(trainer_command(*RUN, f"hydra.run.dir={whole}"), cwd=tmp_path,
                                env=trainer_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(trainer_command(*RUN, f"hydra.run.dir={broken}"), cwd=tmp_path,
                              env=trainer_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    last = broken / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
    assert not (broken / "metrics.json").exists()
    killed_at = load_checkpoint(last)["global_step"]  # whole: the save was atomic
    assert 0 < killed_at < 84

    resumed = run_trainer(*RUN, f"hydra.run.dir={broken}", f"ckpt_path={last}", cwd=tmp_path)
    assert resumed.returncode == 0, explain(resumed)
    assert f"resuming {broken}\n" in resumed.stdout  # in its own folder
    _, stderr = unbroken.communicate(timeout=300)
    assert unbroken.returncode == 0, stderr[-3000:]

    metrics, weights = final_state(whole)
    resumed_metrics, resumed_weights = final_state(broken)
    assert resumed_metrics["global_step"] == metrics["global_step"] == 84
    assert resumed_metrics["test"] == metrics["test"]  # identical, not approximately equal
    assert weights.keys() == resumed_weights.keys()
    for name, value in weights.items():
        assert torch.equal(value, resumed_weights[name]), name


# -- atomic saves ----------------------------------------------------------------------------


def half_a_save(obj, file, *args, **kwargs):
    """torch.save that dies after writing part of the file, as a kill or a full disk would."""
    file.write(b"PK\x03\x04 the first bytes of a zip, and then nothing")
    raise OSError("simulated crash in the middle of torch.save")


def test_a_crash_mid_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    good = {"state_dict": {"w": torch.ones(3)}, "global_step": 1}
    AtomicCheckpointIO().save_checkpoint(good, path)
    monkeypatch.setattr(torch, "save", half_a_save)
    with pytest.raises(OSError, match="simulated crash"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)},
                                              "global_step": 2}, path)
    monkeypatch.undo()
    kept = load_checkpoint(path)
    assert kept["global_step"] == 1 and torch.equal(kept["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file left over


def test_a_first_save_that_crashes_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", half_a_save)
    with pytest.raises(OSError):
        atomic_save({"state_dict": {}}, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


class Points(L.LightningDataModule):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.y = torch.arange(64) % 3
        self.x = torch.randn(64, 4, generator=generator) + torch.eye(4)[self.y] * 3

    def train_dataloader(self):
        dataset = torch.utils.data.TensorDataset(self.x, self.y)
        return torch.utils.data.DataLoader(dataset, batch_size=16)


def test_lightning_crash_during_the_second_save_keeps_the_first(tmp_path, monkeypatch):
    recipe = Recipe({"name": "mlp", "hidden": [8], "norm": None, "dropout": 0.0},
                    {"name": "sgd", "lr": 0.1}, input_shape=[4], num_classes=3)
    saves = []
    real_save = torch.save

    def crash_on_second(obj, file, *args, **kwargs):
        saves.append(obj["global_step"])
        if len(saves) == 2:
            return half_a_save(obj, file)
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_on_second)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, plugins=[AtomicCheckpointIO()],
                        callbacks=[ModelCheckpoint(tmp_path, filename="last", every_n_epochs=1,
                                                   enable_version_counter=False)])
    with pytest.raises(OSError, match="simulated crash"):
        trainer.fit(recipe, datamodule=Points())
    monkeypatch.undo()
    assert saves == [4, 8]
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# -- random state ----------------------------------------------------------------------------


def test_random_state_survives_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    atomic_save({"state_dict": {}, "rng": collect_random_state()}, tmp_path / "rng.ckpt")
    expected = torch.rand(3), np.random.rand(3), random.random()
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_random_state(load_checkpoint(tmp_path / "rng.ckpt")["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_random_state_callback_restores_before_the_first_batch_only():
    callback = RandomState()
    torch.manual_seed(5)
    callback.load_state_dict(callback.state_dict())
    expected = torch.rand(2)
    torch.rand(10)  # what a resumed run might draw before training starts
    callback.on_train_batch_start(None, None, None, 0)
    assert torch.equal(torch.rand(2), expected)
    drawn = torch.rand(1)
    callback.on_train_batch_start(None, None, None, 1)  # no second restore
    assert not torch.equal(torch.rand(1), drawn)
