"""Helpers the fault tests share: ``python -m trainer`` in a subprocess, quiet and small."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Small, quick runs: no progress bar or model summary to wade through in a failure's output.
QUIET = ("callbacks.progress_bar=false", "trainer.enable_model_summary=false")


def trainer_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", *QUIET, *args]


def trainer_env() -> dict[str, str]:
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}


def run_trainer(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(trainer_command(*args), cwd=cwd, env=trainer_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n" \
           f"{result.stderr[-3000:]}"
