"""Two-dimensional toy sets generated in code: moons and spirals."""

from __future__ import annotations

import math

import numpy as np

from .base import TensorDataModule, as_tensors, random_split


class MoonsDataModule(TensorDataModule):
    """Two interleaving half circles (``sklearn.datasets.make_moons``), points ``(2,)``."""

    name = "moons"
    input_shape = (2,)
    num_classes = 2

    def __init__(self, *, num_samples: int = 2000, noise: float = 0.1,
                 test_fraction: float = 0.2, **common):
        super().__init__(**common)
        self.num_samples = num_samples
        self.noise = noise
        self.test_fraction = test_fraction

    def load(self):
        from sklearn.datasets import make_moons

        x, y = make_moons(self.num_samples, noise=self.noise, random_state=self.split_seed)
        return random_split(*as_tensors(x, y), self.test_fraction, self.generator(0))


def make_spirals(num_samples: int, classes: int, turns: float, noise: float, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` spiral arms around the origin, each rotated by ``2π/classes`` from the last.

    A point at fraction ``t ∈ [0, 1]`` along arm ``k`` sits at radius ``t`` and angle
    ``2π·turns·t + 2πk/classes``, plus Gaussian noise of std ``noise``.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % classes
    t = np.sqrt(rng.uniform(0.0, 1.0, num_samples))  # sqrt: points spread evenly along the arm
    angle = 2 * math.pi * turns * t + 2 * math.pi * labels / classes
    points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    points += rng.normal(0.0, noise, points.shape)
    return points.astype(np.float32), labels


class SpiralsDataModule(TensorDataModule):
    """Interleaved spiral arms, one class per arm, points ``(2,)``."""

    name = "spirals"
    input_shape = (2,)

    def __init__(self, *, num_samples: int = 3000, classes: int = 3, turns: float = 1.5,
                 noise: float = 0.05, test_fraction: float = 0.2, **common):
        super().__init__(**common)
        self.num_samples = num_samples
        self.num_classes = classes
        self.turns = turns
        self.noise = noise
        self.test_fraction = test_fraction

    def load(self):
        x, y = make_spirals(self.num_samples, self.num_classes, self.turns, self.noise,
                            self.split_seed)
        return random_split(*as_tensors(x, y), self.test_fraction, self.generator(0))


__all__ = ["MoonsDataModule", "SpiralsDataModule", "make_spirals"]
