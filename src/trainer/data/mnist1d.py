"""MNIST-1D, generated offline with the ``mnist1d`` package and cached as ``.npz``.

``mnist1d.get_dataset`` would download the published pickle; ``make_dataset`` builds the same
set from templates with no network. Its arguments default to ``mnist1d.get_dataset_args()``:
5000 signals of length 40, the first 80% for training, generator seed 42.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .base import DataError, TensorDataModule, as_tensors


def generate_mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42
                     ) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` with its default arguments but these three."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:  # pragma: no cover - mnist1d is a dependency
        raise DataError("data", f"mnist1d is not installed ({error}): pip install mnist1d") \
            from error
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    # make_dataset seeds NumPy's global generator; leave the caller's random state as it was.
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    return {"x": data["x"], "y": data["y"], "x_test": data["x_test"], "y_test": data["y_test"]}


class MNIST1DDataModule(TensorDataModule):
    """Signals ``(1, 40)`` of the digits 0-9 (one channel, so 1-D convolutions apply)."""

    name = "mnist1d"
    num_classes = 10
    signal_length = 40  # mnist1d's final_seq_length

    def __init__(self, *, num_samples: int = 5000, train_split: float = 0.8,
                 generator_seed: int = 42, **common):
        super().__init__(**common)
        self.num_samples = num_samples
        self.train_split = train_split
        self.generator_seed = generator_seed
        self.input_shape = (1, self.signal_length)

    @property
    def cache_file(self) -> Path:
        recipe = {"num_samples": self.num_samples, "train_split": self.train_split,
                  "seed": self.generator_seed}
        digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
        return self.root / "mnist1d" / f"mnist1d_{digest}.npz"

    def prepare_data(self) -> None:
        """Generate the set once and cache it (runs on one process per node)."""
        if self.cache_file.is_file():
            return
        data = generate_mnist1d(self.num_samples, self.train_split, self.generator_seed)
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_file.with_suffix(".partial.npz")
        np.savez_compressed(partial, **data)
        partial.replace(self.cache_file)  # atomic: readers never see half a file

    def load(self):
        self.prepare_data()
        with np.load(self.cache_file, allow_pickle=False) as data:  # arrays only, never code
            train = as_tensors(data["x"][:, None, :], data["y"])
            test = as_tensors(data["x_test"][:, None, :], data["y_test"])
        return train, test
