"""The two benchmark models, defined once: ``benchmarks.models`` times them and
``tests/test_memory_budget.py`` holds their saved-activation budgets.

Each native model is plain ``torch.nn``; its explicit twin is ``trainer.nn.convert`` of a copy,
so both hold identical weights. The helpers below measure what a training step keeps for
backward, in total (``step_saved_bytes``) and tensor by tensor (``saved_tensor_breakdown``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import trainer.functional as explicit_F
from benchmarks.harness import fmt_bytes, table
from trainer import testing
from trainer.nn import convert

#: saved-activation bytes, explicit / native, that each model must stay under
SAVED_BYTES_TARGETS = {"mlp": 0.80, "cnn": 0.50}
#: training-step time, explicit / native, that each model should stay under
STEP_TIME_TARGET = 1.00


def build_mlp() -> nn.Module:
    """784-1024-1024-10 with ReLU and dropout 0.1 after each hidden layer."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 1024), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(1024, 10),
    )


def build_cnn() -> nn.Module:
    """Two [conv3x3, BatchNorm2d, ReLU, MaxPool2d(2)] blocks (32 then 64 channels), then
    Linear(3136, 128), ReLU, Linear(128, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


@dataclass
class Spec:
    name: str
    build: Callable[[], nn.Module]
    batch_size: int
    input_shape: tuple[int, ...] = (1, 28, 28)
    num_classes: int = 10


SPECS = {
    "mlp": Spec("mlp", build_mlp, batch_size=256),
    "cnn": Spec("cnn", build_cnn, batch_size=128),
}


@dataclass
class Pair:
    """A native model, its explicit twin (same weights), and one batch for both."""
    spec: Spec
    native: nn.Module
    explicit: nn.Module
    images: Tensor
    labels: Tensor


def make_pair(name: str, seed: int = 0) -> Pair:
    spec = SPECS[name]
    torch.manual_seed(seed)
    native = spec.build().train()
    explicit, report = convert(native)  # a converted deep copy: identical weights
    if not report.complete:
        raise RuntimeError(f"{name}: not every layer has an explicit twin:\n{report}")
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(spec.batch_size, *spec.input_shape, generator=gen)
    labels = torch.randint(0, spec.num_classes, (spec.batch_size,), generator=gen)
    return Pair(spec, native, explicit, images, labels)


def native_loss(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(model(images), labels)


def explicit_loss(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    return explicit_F.cross_entropy(model(images), labels)


def step_saved_bytes(model: nn.Module, loss_fn, images: Tensor, labels: Tensor) -> int:
    """Bytes autograd keeps for backward during forward + loss; parameters excluded (they
    live on regardless), the input batch included (autograd keeps it alive)."""
    return testing.saved_bytes(lambda: loss_fn(model, images, labels),
                               exclude=list(model.parameters()))


def saved_ratio(pair: Pair) -> tuple[int, int]:
    """(explicit bytes, native bytes) saved by one training step's forward."""
    explicit = step_saved_bytes(pair.explicit, explicit_loss, pair.images, pair.labels)
    native = step_saved_bytes(pair.native, native_loss, pair.images, pair.labels)
    return explicit, native


@dataclass
class SavedTensor:
    module: str   # "3 (ReLU)"; "loss" for the loss, outside the model
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int   # the whole storage's size, as testing.saved_bytes counts it
    counted: bool  # False when this storage was already counted for an earlier tensor


def saved_tensor_breakdown(model: nn.Module, loss_fn, images: Tensor, labels: Tensor
                           ) -> list[SavedTensor]:
    """Every tensor autograd saves during forward + loss, attributed to the module whose
    forward was running, in saving order; parameters are left out, as step_saved_bytes does."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    running: list[str] = []  # labels of the modules whose forward is on the stack

    def enter(label: str):
        def hook(module, args) -> None:
            running.append(label)
        return hook

    def leave(module, args, output) -> None:  # returns None: the output stays as it is
        running.pop()

    hooks = []
    for name, module in model.named_modules():
        if name:  # the root's hooks would label everything "the model"
            hooks.append(module.register_forward_pre_hook(
                enter(f"{name} ({type(module).__name__})")))
            hooks.append(module.register_forward_hook(leave))
    seen: set[int] = set()
    records: list[SavedTensor] = []

    def pack(t: Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            records.append(SavedTensor(running[-1] if running else "loss", tuple(t.shape),
                                       t.dtype, storage.nbytes(), ptr not in seen))
            seen.add(ptr)
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = loss_fn(model, images, labels)
        del out
    finally:
        for h in hooks:
            h.remove()
    return records


def breakdown_table(records: list[SavedTensor]) -> str:
    rows = [(r.module, tuple(r.shape), str(r.dtype).replace("torch.", ""),
             fmt_bytes(r.nbytes) if r.counted else f"({fmt_bytes(r.nbytes)}, counted above)")
            for r in records]
    total = sum(r.nbytes for r in records if r.counted)
    rows.append(("total", "", "", fmt_bytes(total)))
    return table(["module", "saved tensor shape", "dtype", "bytes"], rows)
