"""sklearn's 8x8 handwritten digits: 1797 images that ship inside scikit-learn."""

from __future__ import annotations

from .base import TensorDataModule, as_tensors, random_split


class DigitsDataModule(TensorDataModule):
    """Images ``(1, 8, 8)`` of the digits 0-9; ``test_fraction`` of them held out for testing."""

    name = "digits"
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, *, test_fraction: float = 0.2, **common):
        super().__init__(**common)
        self.test_fraction = test_fraction

    def load(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = as_tensors(digits.images.reshape(-1, *self.input_shape), digits.target)
        return random_split(x, y, self.test_fraction, self.generator(0))
