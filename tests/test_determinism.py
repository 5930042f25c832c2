"""Determinism: with ``seed=`` and ``trainer.deterministic=true`` two CPU runs give identical
metrics and weights; another seed gives others (so the comparison can tell runs apart)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

# The default recipe (MLP with BatchNorm and dropout, AdamW, cosine), cut to 3 epochs.
RUN = ("trainer.max_epochs=3", "trainer.deterministic=true", "callbacks.progress_bar=false",
       "trainer.enable_model_summary=false")


def start(cwd: Path, name: str, seed: int) -> tuple[subprocess.Popen, Path]:
    run_dir = cwd / name
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-m", "trainer", *RUN, f"seed={seed}",
                                f"hydra.run.dir={run_dir}"], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, run_dir


def finish(process: subprocess.Popen, run_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    resolved = (run_dir / "config.yaml").read_text()
    assert "deterministic: true" in resolved
    metrics = json.loads((run_dir / "metrics.json").read_text())
    weights = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return metrics, weights


def test_two_seeded_deterministic_runs_are_identical(tmp_path):
    runs = [start(tmp_path, "first", 11), start(tmp_path, "second", 11),
            start(tmp_path, "other", 12)]
    (metrics, weights), (metrics_again, weights_again), (_, other_weights) = [
        finish(*run) for run in runs]
    assert metrics["test"] == metrics_again["test"]
    assert metrics["global_step"] == metrics_again["global_step"] == 63
    assert weights.keys() == weights_again.keys()
    for name, value in weights.items():
        assert torch.equal(value, weights_again[name]), name
    assert not torch.equal(other_weights["model.head.classifier.weight"],
                           weights["model.head.classifier.weight"])
