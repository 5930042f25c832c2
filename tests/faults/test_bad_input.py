"""Bad input gets one clear error, never a traceback, a silent crash or a hang: checkpoints,
data files, labels, shapes, dtypes, config keys and values, empty data sets, devices."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_helpers import error_lines, explain, run_trainer

import trainer.functional as F
import trainer.nn as nn
from trainer import config
from trainer.__main__ import check_model_fits_data, check_sweepable_model_fits_data
from trainer.callbacks.checkpointing import (
    AtomicCheckpointIO,
    CheckpointError,
    atomic_save,
    check_resumable,
)
from trainer.data import DataError, MNISTDataModule, TensorDataModule
from trainer.data.idx import write_idx
from trainer.functional import ShapeError
from trainer.models import build as build_model
from trainer.recipe import Recipe

MLP = {"name": "mlp", "hidden": [16], "norm": None, "dropout": 0.0}


def assert_refused(result, key: str, *words: str) -> str:
    """Exit status 2, one ``error: <key>: ...`` line holding ``words``, no traceback."""
    assert result.returncode == 2, explain(result)
    errors = error_lines(result)
    assert len(errors) == 1 and errors[0].startswith(f"error: {key}: "), explain(result)
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


# -- checkpoints -------------------------------------------------------------------------------


def digits_checkpoint(path: Path, hidden=(256, 128)) -> Path:
    """A checkpoint of the default model (digits, MLP), as Lightning lays it out."""
    model = build_model({"name": "mlp", "hidden": list(hidden), "norm": "batch",
                         "dropout": 0.1}, (1, 8, 8), 10)
    state = {f"model.{name}": value for name, value in model.state_dict().items()}
    atomic_save({"state_dict": state, "epoch": 0, "global_step": 1}, path)
    return path


class RunsCode:
    """What a hostile checkpoint holds: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "epoch": 0, "payload": RunsCode(marker)}, path)
    return path


CHECKPOINT_PROBLEMS = {
    "missing": ["no checkpoint file at"],
    "truncated": ["not a readable checkpoint, truncated or corrupt"],
    "garbage": ["not a readable checkpoint"],
    "not_lightning": ["not a Lightning checkpoint"],
    "hostile": ["is refused", "tensors and plain containers", "posix.system"],
    "other_model": ["saved from another model: it lacks weights head.dense1."],
}


def bad_checkpoint(tmp_path: Path, case: str, marker: Path) -> Path:
    path = tmp_path / "given.ckpt"
    if case == "truncated":
        whole = digits_checkpoint(tmp_path / "whole.ckpt").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif case == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 10)
    elif case == "not_lightning":
        torch.save({"weights": torch.ones(2)}, path)
    elif case == "hostile":
        hostile_checkpoint(path, marker)
    elif case == "other_model":
        digits_checkpoint(path, hidden=(32,))
    return path


@pytest.mark.parametrize("case", sorted(CHECKPOINT_PROBLEMS))
def test_bad_checkpoint_is_refused_with_what_is_wrong(tmp_path, case):
    marker = tmp_path / "pwned"
    path = bad_checkpoint(tmp_path, case, marker)
    with pytest.raises(config.ConfigError) as caught:
        config.check_overrides([f"ckpt_path={path}"], also=check_model_fits_data)
    assert caught.value.key == "ckpt_path"
    for word in [str(path), *CHECKPOINT_PROBLEMS[case]]:
        assert word in caught.value.problem
    assert not marker.exists()  # nothing in the file ran


def test_hostile_checkpoint_fails_the_command_before_any_run_folder(tmp_path):
    marker = tmp_path / "pwned"
    path = bad_checkpoint(tmp_path, "hostile", marker)
    result = run_trainer(f"ckpt_path={path}", cwd=tmp_path, timeout=120)
    assert_refused(result, "ckpt_path", str(path), *CHECKPOINT_PROBLEMS["hostile"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given.ckpt"]  # no outputs/
    assert not marker.exists()


def test_hostile_checkpoint_is_refused_on_every_load_path(tmp_path):
    marker = tmp_path / "pwned"
    path = hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="is refused"):
        AtomicCheckpointIO().load_checkpoint(path)  # what Trainer.fit/test(ckpt_path=) call
    with pytest.raises(pickle.UnpicklingError):
        Recipe.load_from_checkpoint(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # torch's own default is weights-only too
    assert not marker.exists()


def test_checkpoints_the_app_writes_load_weights_only(tmp_path):
    model = build_model(MLP, (4,), 3)
    recipe = Recipe(MLP, {"name": "sgd", "lr": 0.1}, input_shape=[4], num_classes=3,
                    config={"seed": 1, "model": MLP})
    path = tmp_path / "plain.ckpt"
    atomic_save({"state_dict": recipe.state_dict(), "hyper_parameters": dict(recipe.hparams),
                 "pytorch-lightning_version": "2.6.0"}, path)
    loaded = Recipe.load_from_checkpoint(path, weights_only=True)
    assert torch.equal(loaded.model.head.classifier.weight, recipe.model.head.classifier.weight)
    check_resumable(path, model)


# -- data files and their contents --------------------------------------------------------------


def idx_files(root: Path, train: int = 40, test: int = 10, labels=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, count in (("train", train), ("t10k", test)):
        write_idx(root / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28),
                                                                   dtype=np.uint8))
        values = np.arange(count) % 10 if labels is None else labels[:count]
        write_idx(root / f"{stem}-labels-idx1-ubyte", np.asarray(values, dtype=np.uint8))
    return root


def mnist(root: Path) -> MNISTDataModule:
    return MNISTDataModule(root=root, val_size=5, batch_size=8)


def test_truncated_idx_file_names_the_file_and_what_is_missing(tmp_path):
    root = idx_files(tmp_path / "mnist")
    images = root / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated: shape \(40, 28, "
                                        r"28\) needs 31360 bytes of data, found 31260"):
        mnist(root).setup()


def test_missing_idx_file_says_how_to_get_it(tmp_path):
    root = idx_files(tmp_path / "mnist")
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte .*data.download=true"):
        mnist(root).setup()


def test_labels_out_of_range_for_the_model_are_refused(tmp_path):
    root = idx_files(tmp_path / "mnist", labels=np.arange(40) % 13)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\) for 10 classes, found "
                                        r"labels from 0 to 12"):
        mnist(root).setup()


def test_empty_data_set_is_refused(tmp_path):
    with pytest.raises(DataError, match="the train split is empty"):
        mnist(idx_files(tmp_path / "mnist", train=0)).setup()


class Given(TensorDataModule):
    name, input_shape, num_classes = "given", (4,), 3

    def __init__(self, x, y, **options):
        super().__init__(**options)
        self.given = x, y

    def load(self):
        x, y = self.given
        return (x, y), (x[:5], y[:5])


@pytest.mark.parametrize("x, y, words", [
    (torch.randn(20, 4), torch.arange(20) % 3 + 0.5, "labels must be whole class numbers, got 0.5"),
    (torch.randn(20, 4), -(torch.arange(20) % 3), r"labels must lie in \[0, 3\)"),
    (torch.randn(20, 5), torch.arange(20) % 3, r"inputs of shape \(5,\), expected \(4,\)"),
    (torch.randn(20, 4), torch.zeros(20, 3), r"one class number per sample"),
    (torch.randn(20, 4), torch.arange(19) % 3, "20 inputs but 19 labels"),
])
def test_bad_arrays_from_a_datamodule_are_refused(x, y, words):
    with pytest.raises(DataError, match=words):
        Given(x, y, val_fraction=0.0).setup()


def test_whole_float_labels_are_taken_as_classes():
    module = Given(torch.randn(20, 4), (torch.arange(20) % 3).double(), val_fraction=0.0)
    module.setup()
    assert module.train[1].dtype == torch.int64


def test_labels_out_of_range_fail_the_command_with_one_line(tmp_path):
    root = idx_files(tmp_path / "mnist", labels=np.arange(40) % 13)
    result = run_trainer("data=mnist", f"data.root={root}", "data.val_size=5",
                         "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}",
                         cwd=tmp_path, timeout=120)
    assert_refused(result, "data", "mnist: the train split: labels must lie in [0, 10)")


# -- shapes and dtypes at the layers -------------------------------------------------------------


@pytest.mark.parametrize("layer, x, expected", [
    (nn.Linear(64, 10), torch.randn(8, 63), "(*, 64)"),
    (nn.Conv2d(3, 4, 3), torch.randn(2, 1, 8, 8), "(N, C, H, W) or (C, H, W) with C = 3"),
    (nn.Conv1d(1, 4, 3), torch.randn(2, 2, 40), "(N, C, L) or (C, L) with C = 1"),
    (nn.BatchNorm1d(16), torch.randn(8, 15), "(N, C) or (N, C, L) with C = 16"),
    (nn.LayerNorm(8), torch.randn(2, 7), "(*, 8)"),
])
def test_wrong_input_shape_names_the_layer_and_both_shapes(layer, x, expected):
    with pytest.raises(ShapeError) as caught:
        layer(x)
    message = str(caught.value)
    assert message.startswith(repr(layer))
    assert expected in message and "(" + ", ".join(map(str, x.shape)) + ")" in message


def test_a_model_fed_the_wrong_data_names_the_layer():
    model = build_model(MLP, (4,), 3)
    with pytest.raises(ShapeError, match=r"Linear\(in_features=4, out_features=16, bias=True\): "
                                         r"expected input of shape \(\*, 4\), got \(2, 5\)"):
        model(torch.randn(2, 5))


@pytest.mark.parametrize("call, words", [
    (lambda: nn.Linear(4, 3)(torch.ones(2, 4, dtype=torch.long)),
     "linear: expected weight of the input's dtype torch.int64, got weight of dtype torch.float32"),
    (lambda: nn.Linear(4, 3)(torch.ones(2, 4, dtype=torch.float64)),
     "linear: expected weight of the input's dtype torch.float64"),
    (lambda: nn.BatchNorm1d(3)(torch.ones(4, 3, dtype=torch.long)),
     "batch_norm: expected input of a floating dtype"),
    (lambda: nn.LayerNorm(3)(torch.ones(4, 3, dtype=torch.int32)),
     "layer_norm: expected input of a floating dtype"),
    (lambda: nn.CrossEntropyLoss()(torch.randn(3, 5), torch.tensor([1.0, 2.0, 3.0])),
     "cross_entropy: expected class indices of dtype int64 or uint8"),
    (lambda: nn.CrossEntropyLoss()(torch.randn(3, 5), torch.tensor([1, 7, 3])),
     r"cross_entropy: expected class indices in [0, 5)"),
    (lambda: nn.Embedding(5, 2)(torch.tensor([1.0])),
     "embedding: expected input (indices) of dtype torch.int64 or torch.int32"),
    (lambda: nn.MaxPool1d(2)(torch.ones(1, 4, dtype=torch.bool)),
     "max_pool1d: expected input of a real numeric dtype"),
])
def test_wrong_dtypes_are_a_shape_error_that_says_which(call, words):
    with pytest.raises(ShapeError) as caught:
        call()
    assert words in str(caught.value)


def test_empty_feature_dims_train_as_torch_does():
    # reshape(-1, 0) is ambiguous; the explicit backward gives the (empty) gradients torch gives.
    layer = nn.Linear(0, 3)
    x = torch.randn(2, 0, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.shape == (2, 0) and layer.weight.grad.shape == (3, 0)
    assert torch.equal(layer.bias.grad, torch.full((3,), 2.0))
    assert F.linear(torch.randn(0, 4), torch.randn(0, 4)).shape == (0, 0)


# -- config keys and values, devices --------------------------------------------------------------


@pytest.mark.parametrize("override, key", [
    ("trainer.max_epochz=3", "trainer.max_epochz"),
    ("+trainer.gradient_clip_val=1", "trainer.gradient_clip_val"),
    ("trainer.strategy=nonsense", "trainer.strategy"),
    ("trainer.devices=0", "trainer.devices"),
    ("trainer.num_nodes=0", "trainer.num_nodes"),
    ("trainer.precision=8", "trainer.precision"),
    ("data.batch_size=many", "data.batch_size"),
    ("seed=-1", "seed"),
    ("test_ckpt=middle", "test_ckpt"),
    ("+resume=true", "resume"),
])
def test_unknown_keys_and_bad_values_name_the_key(override, key):
    with pytest.raises(config.ConfigError) as caught:
        config.check_overrides([override], also=check_model_fits_data)
    assert caught.value.key == key


def test_gpu_run_without_a_gpu_says_what_to_run_instead(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(config.ConfigError, match="no CUDA GPU is visible here .*trainer=ddp_cpu"):
        config.check_overrides(["trainer=ddp"], also=check_model_fits_data)


def test_a_sweep_refuses_ddp_that_re_runs_the_command():
    with pytest.raises(config.ConfigError, match="use trainer.strategy=ddp_spawn in a sweep"):
        config.check_overrides(["trainer=ddp_cpu", "seed=1,2"], multirun=True,
                               also=check_sweepable_model_fits_data)
    config.check_overrides(["trainer=ddp_cpu", "trainer.strategy=ddp_spawn", "seed=1,2"],
                           multirun=True, also=check_sweepable_model_fits_data)


def test_a_device_lightning_refuses_is_one_line(tmp_path):
    result = run_trainer("trainer.accelerator=cpu", "trainer.devices=[3]",
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=120)
    assert_refused(result, "trainer", "should be an int > 0")
