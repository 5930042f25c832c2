"""Your own arrays from .npz and .pt files: shapes before setup, given and carved splits, one
line naming the file for every bad file, and a model that learns from them."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from trainer import data
from trainer.data import DataError, TensorsDataModule
from trainer.recipe import Recipe


def blobs(count: int, features: int = 3, classes: int = 2, seed: int = 0):
    """``classes`` Gaussian blobs far apart: class k around 4k in every feature."""
    rng = np.random.default_rng(seed)
    y = np.arange(count) % classes
    x = rng.normal(size=(count, features)) + 4.0 * y[:, None]
    return x, y


def save(path: Path, **arrays) -> Path:
    """``arrays`` as ``path``: np.savez for .npz, torch.save of a dict of tensors for .pt."""
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        torch.save({key: torch.as_tensor(value) for key, value in arrays.items()}, path)
    return path


def build(path: Path, **options) -> TensorsDataModule:
    return data.build({"name": "tensors", "path": str(path), **options}, seed=0)


def rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(row.tolist()) for row in x.flatten(1)}


# -- reading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_shape_and_classes_are_known_before_setup_and_the_file_is_read_once(tmp_path, suffix):
    x, y = blobs(100, features=10, classes=4)
    path = save(tmp_path / f"mine{suffix}", x=x.reshape(100, 2, 5), y=y)
    datamodule = build(path)
    assert datamodule.input_shape == (2, 5) and datamodule.num_classes == 4
    path.unlink()  # setup works from what the module read when it was built
    datamodule.setup()
    x_train, y_train = datamodule.train
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert x_train.shape[1:] == (2, 5)
    assert len(datamodule.test[0]) == 20  # test_fraction 0.2
    assert sum(len(split[0]) for split in (datamodule.train, datamodule.val,
                                           datamodule.test)) == 100
    assert datamodule.source == str(path)  # what refusals name


def test_numbers_of_any_real_dtype_are_taken(tmp_path):
    x, y = blobs(40)
    np.savez(tmp_path / "ints.npz", x=(x * 10).astype(np.int16), y=y.astype(np.uint8))
    np.savez(tmp_path / "flags.npz", x=x > 0, y=y.astype(np.float32))  # whole float labels
    torch.save({"x": torch.from_numpy(x).bfloat16(), "y": y.tolist()}, tmp_path / "bf16.pt")
    for name in ("ints.npz", "flags.npz", "bf16.pt"):
        datamodule = build(tmp_path / name)
        datamodule.setup()
        assert datamodule.train[0].dtype == torch.float32, name
        assert datamodule.train[1].dtype == torch.int64, name
        assert datamodule.num_classes == 2, name


def test_class_count_spans_every_split_unless_given(tmp_path):
    x, y = blobs(60)
    path = save(tmp_path / "mine.npz", x=x, y=y, x_test=x[:9], y_test=np.arange(9) % 3)
    assert build(path).num_classes == 3  # label 2 only in the test split
    assert build(path, num_classes=5).num_classes == 5


# -- splits --------------------------------------------------------------------------------------


def test_a_given_test_split_is_used_as_given(tmp_path):
    x, y = blobs(100)
    x_test, y_test = blobs(30, seed=1)
    datamodule = build(save(tmp_path / "mine.npz", x=x, y=y, x_test=x_test, y_test=y_test),
                       normalize=False, test_fraction=0.5)
    datamodule.setup()
    assert torch.equal(datamodule.test[0], torch.from_numpy(x_test).float())
    assert torch.equal(datamodule.test[1], torch.from_numpy(y_test))
    assert len(datamodule.train[0]) + len(datamodule.val[0]) == 100  # all of x trains


def test_a_given_val_split_is_used_as_given(tmp_path):
    x, y = blobs(100)
    x_val, y_val = blobs(12, seed=2)
    path = save(tmp_path / "mine.pt", x=x, y=y, x_val=x_val, y_val=y_val, x_test=x[:10],
                y_test=y[:10])
    raw = build(path, normalize=False, val_fraction=0.3)
    raw.setup()
    assert torch.equal(raw.val[0], torch.from_numpy(x_val).float())
    assert torch.equal(raw.val[1], torch.from_numpy(y_val))
    assert torch.equal(raw.train[0], torch.from_numpy(x).float())  # none carved off for val
    # Normalized with the train split's statistics, like a carved one.
    normalized = build(path)
    normalized.setup()
    expected = (raw.val[0] - normalized.mean) / normalized.std
    assert torch.allclose(normalized.val[0], expected, atol=1e-6)


def test_a_carved_test_split_keeps_the_class_balance(tmp_path):
    y = np.repeat([0, 1, 2], [60, 30, 10])
    x = np.random.default_rng(0).normal(size=(100, 3)) + y[:, None]
    path = save(tmp_path / "mine.npz", x=x, y=y)
    datamodule = build(path, test_fraction=0.2, val_fraction=0.1)
    datamodule.setup()
    assert torch.bincount(datamodule.test[1], minlength=3).tolist() == [12, 6, 2]
    assert len(datamodule.val[0]) == 8 and len(datamodule.train[0]) == 72
    assert not rows(datamodule.test[0]) & rows(datamodule.train[0])
    again = build(path, test_fraction=0.2, val_fraction=0.1)
    again.setup()
    assert torch.equal(again.test[0], datamodule.test[0])  # fixed by split_seed


# -- refusals ------------------------------------------------------------------------------------

_EXECUTED: list[str] = []


def _run_on_load() -> None:
    _EXECUTED.append("code in the file ran")


class Payload:
    """Unpickles by calling :func:`_run_on_load`: what a malicious file would do."""

    def __reduce__(self):
        return _run_on_load, ()


X, Y = blobs(50)


def write_bytes(payload: bytes):
    return lambda path: path.write_bytes(payload)


def npz(**arrays):
    def write(path: Path) -> None:
        with open(path, "wb") as file:  # np.savez(path) would append .npz to other names
            np.savez(file, **arrays)

    return write


def pt(content):
    return lambda path: torch.save(content, path)


def npy(path: Path) -> None:
    with open(path, "wb") as file:  # as for np.savez
        np.save(file, X)


def cut_short(writer):
    def write(path):
        writer(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return write


def _tensors(**arrays):
    return {key: torch.as_tensor(value) for key, value in arrays.items()}


BAD_FILES = {
    "missing": ("absent.npz", None, "no such file"),
    "a folder": ("folder.npz", lambda path: path.mkdir(), "not a file"),
    "extension": ("mine.csv", npz(x=X, y=Y), "unknown file type '.csv': expected .npz"),
    "empty": ("mine.npz", write_bytes(b""), "the file is empty"),
    "npz not a zip": ("mine.npz", write_bytes(b"x,y\n1,0\n"), "not an .npz archive"),
    "npz cut short": ("mine.npz", cut_short(npz(x=X, y=Y)), "cannot read it as an .npz archive"),
    "npz of np.save": ("mine.npz", npy, r"one unnamed array \(np.save\)"),
    "npz objects": ("mine.npz", npz(x=np.array([{}, 1], dtype=object), y=[0, 1]),
                    "object arrays .* never unpickled"),
    "pt cut short": ("mine.pt", cut_short(pt(_tensors(x=X, y=Y))),
                     "cannot read it with torch.load"),
    "pt garbage": ("mine.pt", write_bytes(b"not a torch file at all"),
                   r"cannot read it with torch.load: .*\(Unsupported operand"),
    "pt code": ("mine.pt", pt({"x": Payload(), "y": Y.tolist()}),
                r"pickled Python objects \(.*_run_on_load\) that torch.load\(weights_only=True\) "
                "refuses to unpickle"),
    "pt numpy": ("mine.pt", pt({"x": X, "y": Y}), "refuses to unpickle: convert NumPy arrays "
                 "with torch.from_numpy"),
    "pt objects": ("mine.pt", pt({"x": collections.Counter(), "y": Y.tolist()}),
                   "'x' holds a Counter, not real numbers"),
    "pt not a dict": ("mine.pt", pt(torch.zeros(3)), "holds a Tensor, not a dict of arrays"),
    "no x": ("mine.npz", npz(y=Y), "no 'x': the file needs 'x' .* keys found: 'y'"),
    "no y": ("mine.pt", pt(_tensors(x=X)), "no 'y'"),
    "test half": ("mine.npz", npz(x=X, y=Y, x_test=X), "'x_test' without 'y_test': give both"),
    "val half": ("mine.pt", pt(_tensors(x=X, y=Y, y_val=Y)), "'y_val' without 'x_val'"),
    "typo": ("mine.npz", npz(x=X, y=Y, x_tset=X, y_test=Y),
             r"unknown key 'x_tset' \(allowed: x, y, x_val, y_val, x_test, y_test\)"),
    "complex npz": ("mine.npz", npz(x=X * 1j, y=Y), "'x' holds complex numbers"),
    "complex pt": ("mine.pt", pt(_tensors(x=X * 1j, y=Y)), "'x' holds complex numbers"),
    "text": ("mine.npz", npz(x=X, y=np.array(["cat", "dog"])[Y]), "'y' holds text"),
    "flat x": ("mine.npz", npz(x=X[:, 0], y=Y), r"'x' has shape \(50,\), expected \(N, "
               r"\*input_shape\)"),
    "nan labels": ("mine.npz", npz(x=X, y=np.where(Y == 1, np.nan, 0.0)),
                   "labels must be whole class numbers, found nan"),
    "label ids": ("mine.npz", npz(x=X, y=1990 + Y), "labels run up to 1991 for only 50 samples"),
    "one class": ("mine.npz", npz(x=X, y=0 * Y), "every label is 0: .* at least 2 classes"),
    # check_split's refusals, naming the file:
    "fractional labels": ("mine.npz", npz(x=X, y=Y + 0.5),
                          r"the train \(x, y\) split: labels must be whole class numbers, got "
                          "0.5"),
    "negative labels": ("mine.npz", npz(x=X, y=Y - 1), r"labels must lie in \[0, 1\)"),
    "lengths": ("mine.npz", npz(x=X, y=Y[:49]), "has 50 inputs but 49 labels"),
    "test shape": ("mine.pt", pt(_tensors(x=X, y=Y, x_test=X[:, :2], y_test=Y)),
                   r"the test \(x_test, y_test\) split holds inputs of shape \(2,\), expected "
                   r"\(3,\)"),
    "one-hot labels": ("mine.npz", npz(x=X, y=np.eye(2)[Y]), "one class number per sample"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_refused_in_one_line_that_names_it(tmp_path, case):
    name, write, words = BAD_FILES[case]
    path = tmp_path / name
    if write is not None:
        write(path)
    with pytest.raises(DataError) as caught:
        build(path)
    assert caught.value.key == "data.path"
    assert caught.value.problem.startswith(f"{path}: ")
    assert "\n" not in caught.value.problem
    assert re.search(words, caught.value.problem), caught.value.problem
    assert not _EXECUTED


def test_an_unreadable_file_is_refused(tmp_path, monkeypatch):
    from trainer.data import tensors

    def forbidden(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = save(tmp_path / "mine.npz", x=X, y=Y)
    monkeypatch.setattr(tensors, "open", forbidden, raising=False)  # chmod 000 binds no root
    with pytest.raises(DataError, match=r"mine.npz: cannot open it \(Permission denied\)"):
        build(path)


def test_no_path_is_refused():
    with pytest.raises(DataError, match="no file given: add data.path=FILE.npz") as caught:
        data.build({"name": "tensors"})
    assert caught.value.key == "data.path"


def test_labels_beyond_a_given_class_count_are_refused(tmp_path):
    path = save(tmp_path / "mine.npz", x=X, y=Y * 2)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\) for 2 classes, found "
                                        "labels from 0 to 2") as caught:
        build(path, num_classes=2)
    assert caught.value.key == "data.path" and str(path) in caught.value.problem


def test_a_carved_split_left_empty_is_refused_at_setup(tmp_path):
    path = save(tmp_path / "mine.npz", x=X[:2], y=Y[:2])
    datamodule = build(path, test_fraction=0.2)  # round(2 * 0.2) = 0 test samples
    with pytest.raises(DataError, match="the test split is empty") as caught:
        datamodule.setup()
    assert caught.value.key == "data.path" and str(path) in caught.value.problem


# -- training ------------------------------------------------------------------------------------


def test_an_mlp_learns_separable_blobs_from_a_file(tmp_path):
    x, y = blobs(600, features=4, classes=3)
    datamodule = build(save(tmp_path / "blobs.npz", x=x, y=y), batch_size=32)
    recipe = Recipe({"name": "mlp", "hidden": [16], "norm": None, "dropout": 0.0},
                    {"name": "adam", "lr": 0.01}, {"name": "none"},
                    input_shape=list(datamodule.input_shape),
                    num_classes=datamodule.num_classes)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(recipe, datamodule=datamodule)
    results = trainer.test(recipe, datamodule=datamodule, verbose=False)[0]
    assert results["test/acc"] > 0.9
