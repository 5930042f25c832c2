"""Checkpoints that survive a crash, resume exactly, and load nothing but tensors and containers.

* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the same folder,
  fsyncs it and renames it over the old one (``os.replace`` is atomic), so a kill in the middle
  of a save leaves the previous checkpoint whole. It loads with ``weights_only=True`` always:
  a checkpoint is unpickled as tensors and plain containers only, never as arbitrary objects.
* :class:`RandomState` saves the global RNGs (torch, CUDA, NumPy, Python) with each checkpoint
  and puts them back before the first training step after a resume, so dropout draws the same
  masks as the unbroken run would have. (Lightning restores loops, weights and optimizers,
  not RNGs.)
* :func:`load_checkpoint` and :func:`check_resumable` turn a missing, corrupt, unsafe or
  mismatched checkpoint into one :class:`CheckpointError` that names ``ckpt_path``.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; ``key`` is the config key that named it."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


# --------------------------------------------------------------------------------------------
# Loading: weights only, with one clear error per kind of bad file
# --------------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path, map_location: Any = "cpu", key: str = "ckpt_path"
                    ) -> dict[str, Any]:
    """:func:`safe_load` a Lightning checkpoint: refuse a file without a ``state_dict``."""
    checkpoint = safe_load(path, map_location, key)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"),
                                                             Mapping):
        raise CheckpointError(key, f"{path} is not a Lightning checkpoint (no state_dict in it)")
    return dict(checkpoint)


def safe_load(path: str | Path, map_location: Any = "cpu", key: str = "ckpt_path") -> Any:
    """``torch.load(path, weights_only=True)``, raising :class:`CheckpointError` for a missing,
    truncated, corrupt or unsafe file (one holding pickled objects other than tensors and
    plain containers is refused, and nothing in it runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(key, f"no checkpoint file at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses any global it does not know: code, classes, functions.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "global" in line.lower()
                       and not line.startswith("Weights only load failed")), _first(error))
        raise CheckpointError(key, f"{path} is refused: it holds pickled objects other than "
                              f"tensors and plain containers ({reason}); it may not come from "
                              "this program, and loading it could run code") from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            IndexError, UnicodeDecodeError) as error:
        raise CheckpointError(key, f"{path} is not a readable checkpoint, truncated or corrupt "
                              f"({_first(error)})") from error


def _first(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_resumable(path: str | Path, model: torch.nn.Module, prefix: str = "model.",
                    key: str = "ckpt_path") -> dict[str, Any]:
    """Load ``path`` and check its ``prefix``-ed weights fit ``model`` name for name and shape;
    return the checkpoint. Catches a resume with another model or data config up front."""
    checkpoint = load_checkpoint(path, key=key)
    saved = {name[len(prefix):]: value for name, value in checkpoint["state_dict"].items()
             if name.startswith(prefix)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        names = ", ".join((missing or unexpected)[:3])
        what = "lacks" if missing else "has extra"
        raise CheckpointError(key, f"{path} was saved from another model: it {what} weights "
                              f"{names}{', ...' if len(missing or unexpected) > 3 else ''} "
                              "(resume with the model and data config it was trained with)")
    for name, tensor in expected.items():
        got = saved[name]
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckpointError(key, f"{path} was saved from another model: {name} has shape "
                                  f"{shape} there, {tuple(tensor.shape)} here (resume with the "
                                  "model and data config it was trained with)")
    return checkpoint


# --------------------------------------------------------------------------------------------
# Saving: atomically
# --------------------------------------------------------------------------------------------


def atomic_save(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``.

    Readers (and a resume after a crash) see the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                         dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            torch.save(checkpoint, out)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader and writer, made crash-safe and weights-only.

    Pass it to the Trainer: ``L.Trainer(plugins=[AtomicCheckpointIO()])``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote: fsspec
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        return safe_load(path, map_location=map_location)


# --------------------------------------------------------------------------------------------
# Random state: saved with each checkpoint, restored before the first step after a resume
# --------------------------------------------------------------------------------------------


def collect_random_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (so they load with weights_only)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gauss": float(cached_gauss)},
        "python": [version, list(python_state), gauss],
    }


def restore_random_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`collect_random_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32),
                         numpy["position"], numpy["has_gauss"], numpy["cached_gauss"]))
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))


class RandomState(Callback):
    """Saves the global RNG states in every checkpoint; after a resume, restores them just
    before the first training batch, the point where the unbroken run, having saved, drew its
    next random number. (Data order needs none of this: the sampler seeds itself from
    ``seed + epoch``, and the loaders draw from their own generators.)"""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_random_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        if self._pending is not None:
            restore_random_state(self._pending)
            self._pending = None


__all__ = ["AtomicCheckpointIO", "CheckpointError", "RandomState", "atomic_save",
           "check_resumable", "collect_random_state", "load_checkpoint", "restore_random_state",
           "safe_load"]
