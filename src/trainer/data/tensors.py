"""Your own arrays, from one ``.npz`` (``np.savez``) or ``.pt`` (``torch.save`` of a dict) file.

Keys: ``x`` (inputs, shape ``(N, *input_shape)``, any real numbers) and ``y`` (labels, shape
``(N,)``, whole numbers from 0); optionally ``x_test``/``y_test`` and ``x_val``/``y_val``, the
test and validation splits, used as given. Nothing is unpickled: ``.npz`` files are read with
``allow_pickle=False`` and ``.pt`` files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import DataError, TensorDataModule, as_tensors, random_split

#: Each split's (inputs, labels) keys in the file.
SPLIT_KEYS = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}
KEYS = tuple(key for pair in SPLIT_KEYS.values() for key in pair)
SUFFIXES = (".npz", ".pt")
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
#: What the NumPy dtype kinds we refuse hold; we take b (bool), i, u (integers) and f (floats).
_KINDS = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "Python objects",
          "M": "dates", "m": "time spans", "V": "records"}


def _gist(error: BaseException, limit: int = 160) -> str:
    """``Type: first sentence`` of an error whose full text may run to paragraphs."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0].split(". ")[0] if lines else ""
    text = text if len(text) <= limit else text[:limit] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _read_npz(path: Path, magic: bytes) -> dict[Any, Any]:
    if magic.startswith(_NPY_MAGIC):
        raise DataError("data.path", f"{path}: holds one unnamed array (np.save), not named "
                        "arrays: write the file with np.savez(path, x=inputs, y=labels)")
    if not magic.startswith(_ZIP_MAGIC):
        raise DataError("data.path", f"{path}: not an .npz archive (it does not start as a zip "
                        "file): write it with np.savez(path, x=inputs, y=labels)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            # Members are read on access: read them all while the file is open.
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # a damaged file fails anywhere: zipfile, zlib, the .npy header
        if isinstance(error, ValueError) and "allow_pickle" in str(error):
            raise DataError("data.path", f"{path}: holds object arrays (pickled Python objects), "
                            "which are never unpickled: store arrays of numbers") from None
        raise DataError("data.path", f"{path}: cannot read it as an .npz archive: damaged or "
                        f"cut short? ({_gist(error)})") from None


def _read_pt(path: Path) -> dict[Any, Any]:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file fails anywhere: the zip reader, the unpickler
        text = str(error) if isinstance(error, pickle.UnpicklingError) else ""
        if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", text):
            what = found.group(1)
            fix = ("convert NumPy arrays with torch.from_numpy, or save an .npz with np.savez"
                   if what.startswith("numpy") else "save a dict of tensors: torch.save({'x': "
                   "x, 'y': y}, path)")
            raise DataError("data.path", f"{path}: holds pickled Python objects ({what}) that "
                            f"torch.load(weights_only=True) refuses to unpickle: {fix}") from None
        # The weights-only unpickler buries what it found in paragraphs of advice.
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        gist = found.group(1).strip() if found else _gist(error)
        raise DataError("data.path", f"{path}: cannot read it with torch.load: damaged, cut "
                        f"short, or not written by torch.save? ({gist})") from None
    if not isinstance(content, dict):
        raise DataError("data.path", f"{path}: holds a {type(content).__name__}, not a dict of "
                        "arrays: write it with torch.save({'x': inputs, 'y': labels}, path)")
    return content


def _as_array(path: Path, key: str, value: Any) -> np.ndarray:
    """``value`` (a tensor, array or nested list) as an array of real numbers, or a refusal."""
    if isinstance(value, Tensor) and value.is_complex():
        raise DataError("data.path", f"{path}: {key!r} holds complex numbers ({value.dtype}): "
                        "inputs and labels must be real numbers")
    try:
        if isinstance(value, Tensor):
            # NumPy lacks bfloat16 and the float8 types; float32 holds their values exactly.
            foreign = value.is_floating_point() and value.dtype not in _NUMPY_FLOATS
            value = (value.float() if foreign else value).detach().numpy()
        array = np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as error:  # ragged lists, sparse tensors
        raise DataError("data.path", f"{path}: {key!r} is not an array of numbers "
                        f"({_gist(error)})") from None
    if array.dtype.kind not in "biuf":
        held = _KINDS.get(array.dtype.kind, f"values of dtype {array.dtype}")
        if array.dtype.kind == "O" and array.ndim == 0:
            held = f"a {type(value).__name__}"
        raise DataError("data.path", f"{path}: {key!r} holds {held}, not real numbers "
                        f"(dtype {array.dtype}): inputs and labels must be arrays of numbers")
    return array


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays that ``path`` holds under :data:`KEYS`, checked: ``x`` and ``y`` present, the
    optional splits given as whole pairs, no other keys, every value real numbers."""
    if not path.exists():
        raise DataError("data.path", f"{path}: no such file")
    if not path.is_file():
        raise DataError("data.path", f"{path}: not a file")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError("data.path", f"{path}: unknown file type {path.suffix or '(none)'!r}: "
                        "expected .npz (np.savez) or .pt (torch.save of a dict of tensors)")
    try:
        with open(path, "rb") as file:
            magic = file.read(len(_NPY_MAGIC))
    except OSError as error:
        raise DataError("data.path", f"{path}: cannot open it ({error.strerror})") from None
    if not magic:
        raise DataError("data.path", f"{path}: the file is empty")
    content = _read_npz(path, magic) if path.suffix.lower() == ".npz" else _read_pt(path)
    unknown = [key for key in content if key not in KEYS]
    if unknown:
        raise DataError("data.path", f"{path}: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))} (allowed: {', '.join(KEYS)})")
    for required in ("x", "y"):
        if required not in content:
            found = ", ".join(map(repr, content)) or "none"
            raise DataError("data.path", f"{path}: no {required!r}: the file needs 'x' (inputs) "
                            f"and 'y' (labels); keys found: {found}")
    for inputs, labels in SPLIT_KEYS.values():
        if (inputs in content) != (labels in content):
            given, lacking = (inputs, labels) if inputs in content else (labels, inputs)
            raise DataError("data.path", f"{path}: {given!r} without {lacking!r}: give both "
                            "or neither")
    arrays = {key: _as_array(path, key, value) for key, value in content.items()}
    for inputs, _ in SPLIT_KEYS.values():
        if inputs in arrays and arrays[inputs].ndim < 2:
            raise DataError("data.path", f"{path}: {inputs!r} has shape "
                            f"{arrays[inputs].shape}, expected (N, *input_shape): e.g. (N, 1) "
                            "for one number per sample")
    return arrays


class TensorsDataModule(TensorDataModule):
    """The arrays in the file ``path`` (see :mod:`trainer.data.tensors` for its keys).

    The file is read, and checked, once, when the module is built: ``input_shape`` (from ``x``)
    and ``num_classes`` (``max label + 1`` over all splits, unless given) must be known before
    :meth:`setup`, and a bad file is refused before training starts. A test split the file
    lacks is carved from ``x``/``y`` (``test_fraction``, stratified); a validation split it
    gives (``x_val``/``y_val``) replaces the ``val_fraction`` carved out of the train split.
    """

    name = "tensors"
    data_key = "data.path"

    def __init__(self, *, path: str | Path | None = None, test_fraction: float = 0.2,
                 num_classes: int | None = None, **common):
        super().__init__(**common)
        if path is None or not str(path).strip():
            raise DataError("data.path", "no file given: add data.path=FILE.npz (or FILE.pt), "
                            "holding inputs 'x' and labels 'y'")
        self.path = Path(path).expanduser()
        self.test_fraction = test_fraction
        arrays = read_arrays(self.path)
        #: The splits the file gives: inputs float32, labels int64 (float ones stay float, for
        #: check_split to refuse 1.5 rather than train on class 1).
        self.given: dict[str, tuple[Tensor, Tensor]] = {
            split: as_tensors(arrays[inputs], arrays[labels])
            for split, (inputs, labels) in SPLIT_KEYS.items() if inputs in arrays}
        self.input_shape = tuple(self.given["train"][0].shape[1:])
        self.num_classes = self.count_classes() if num_classes is None else num_classes
        for split, (x, y) in self.given.items():
            self.check_split(f"{split} ({', '.join(SPLIT_KEYS[split])})", x, y)
        if num_classes is None and self.num_classes < 2:
            raise DataError("data.path", f"{self.path}: every label is 0: a classifier needs "
                            "at least 2 classes")

    @property
    def source(self) -> str:
        return str(self.path)

    def count_classes(self) -> int:
        """``max label + 1`` over every split the file gives."""
        highest = max((y.max().item() for _, y in self.given.values() if y.numel()), default=0)
        if not math.isfinite(highest):
            raise DataError("data.path", f"{self.path}: labels must be whole class numbers, "
                            f"found {highest}")
        count = int(highest) + 1
        samples = sum(len(y) for _, y in self.given.values())
        if count > samples:
            # Labels such as years or ids would make a model with millions of outputs.
            raise DataError("data.path", f"{self.path}: labels run up to {highest:g} for only "
                            f"{samples} samples: number the classes 0, 1, 2, … (np.unique(y, "
                            "return_inverse=True) does it), or set data.num_classes")
        return count

    def load(self):
        if "test" in self.given:
            return self.given["train"], self.given["test"]
        return random_split(*self.given["train"], self.test_fraction, self.generator(0))

    def split_val(self, x: Tensor, y: Tensor):
        if "val" in self.given:
            return (x, y), self.given["val"]
        return super().split_val(x, y)


__all__ = ["KEYS", "TensorsDataModule", "read_arrays"]
