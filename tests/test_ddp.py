"""DDP: ``trainer=ddp_cpu`` runs 2 CPU processes over gloo from ``python -m trainer``, writes one
output folder, and trains exactly as one process with twice the batch.

Why the weights agree: each epoch's permutation depends only on ``seed + epoch`` and is shared by
both processes; process r takes every 2nd index from r, so its k-th batch of B and the other's
k-th batch together are the single process's k-th batch of 2B. The loss is a mean, and DDP
averages the two processes' gradients, so every SGD step is the same (up to float rounding in
the sum's order). The model has no BatchNorm (whose batch statistics are per process) and no
dropout (whose masks would be drawn per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# moons: 1440 training points, so 45 batches of 32 per epoch with no ragged end; 2 epochs.
RUN = ("data=moons", "model.norm=null", "model.dropout=0", "optimizer=sgd", "optimizer.lr=0.1",
       "scheduler=none", "trainer.max_epochs=2", "callbacks.progress_bar=false",
       "trainer.enable_model_summary=false")


def start(cwd: Path, *args: str) -> subprocess.Popen:
    cwd.mkdir()
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "trainer", *RUN, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def only_run_folder(cwd: Path, process: subprocess.Popen) -> tuple[Path, str]:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    # No hydra.run.dir given: Hydra names the folder by the time, which the re-executed
    # process of rank 1 must not do again (Lightning passes it the parent's hydra.run.dir).
    folders = [path for path in (cwd / "outputs").glob("*/*") if path.is_dir()]
    assert len(folders) == 1, folders
    assert [path.name for path in cwd.iterdir()] == ["outputs"]
    return folders[0], output


@pytest.mark.slow
def test_two_cpu_processes_train_as_one_with_twice_the_batch(tmp_path):
    # verbose: Lightning's own lines say which backend and how many processes it started
    ddp = start(tmp_path / "ddp", "trainer=ddp_cpu", "data.batch_size=16", "verbose=true")
    single = start(tmp_path / "single", "trainer=cpu", "data.batch_size=32")
    ddp_dir, ddp_output = only_run_folder(tmp_path / "ddp", ddp)
    single_dir, _ = only_run_folder(tmp_path / "single", single)

    assert "distributed_backend=gloo" in ddp_output
    assert "Starting with 2 processes" in ddp_output
    ddp_checkpoint = torch.load(ddp_dir / "checkpoints" / "last.ckpt", weights_only=True)
    single_checkpoint = torch.load(single_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ddp_checkpoint["global_step"] == single_checkpoint["global_step"] == 90
    assert ddp_checkpoint["hyper_parameters"]["config"]["trainer"]["devices"] == 2
    for name, value in single_checkpoint["state_dict"].items():
        torch.testing.assert_close(ddp_checkpoint["state_dict"][name], value, rtol=1e-5,
                                   atol=1e-6, msg=name)

    ddp_metrics = json.loads((ddp_dir / "metrics.json").read_text())["test"]
    single_metrics = json.loads((single_dir / "metrics.json").read_text())["test"]
    assert ddp_metrics["test/acc"] == pytest.approx(single_metrics["test/acc"], abs=1e-6)
    assert ddp_metrics["test/loss"] == pytest.approx(single_metrics["test/loss"], rel=1e-4)
