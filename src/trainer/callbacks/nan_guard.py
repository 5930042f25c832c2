"""Stop at the first non-finite loss, gradient or weight, and say where it started.

The backward pass visits the layers from the loss towards the input. A NaN or inf, once it
appears in a gradient, spreads to every layer visited after it, so the *first* layer in backward
order (the one nearest the loss) with a non-finite gradient is where the trouble entered the
gradients; the layers below it only inherited it. To find it without keeping any gradient
alive, the guard hooks each leaf module while training: as backward reaches a layer it keeps the
sum of the gradient at its output and of its parameters' gradients (a NaN or inf makes the sum
non-finite; one small reduction each, never synchronised), and as forward passes it keeps the
sum of the layer's output, so a loss that is already NaN can be traced to the layer whose forward
overflowed. These sums are read only once something went wrong.

The decision to stop reads the parameters' gradients (and, on one process, the loss); DDP has
already averaged the gradients, so every process stops at the same step. The guard raises before
the optimizer step that would have used a non-finite gradient, so no checkpoint is written for
it and ``last.ckpt`` keeps the last good weights. It also refuses to checkpoint weights or
BatchNorm statistics that went non-finite anyway (a finite gradient times a huge learning rate
can overflow a weight): raising in ``on_save_checkpoint`` stops the save before the file.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from typing import NamedTuple

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or inf; ``step`` is the optimizer step (1-based) it broke."""

    def __init__(self, step: int, problem: str):
        super().__init__(f"step {step}: {problem}")
        self.step = step
        self.problem = problem


class Seen(NamedTuple):
    """One gradient (or forward output) of one layer, reduced to what says whether it was all
    finite."""

    layer: str
    what: str  # "output", "input", a parameter's name; or "forward" for the forward output
    total: Tensor  # its float64 sum: non-finite iff the tensor held a NaN or inf

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.total))


def _saved_tensors(module: torch.nn.Module) -> list[tuple[str, Tensor]]:
    """What a checkpoint keeps of ``module`` that could overflow: parameters and floating
    buffers (BatchNorm's running statistics)."""
    return [(name, t) for name, t in [*module.named_parameters(), *module.named_buffers()]
            if t.is_floating_point()]


def _total(t: Tensor) -> Tensor:
    """The sum in float64: non-finite exactly when ``t`` holds a NaN or inf, since float32
    values (< 3.4e38), even 1e10 of them, cannot overflow float64's range."""
    return t.detach().sum(dtype=torch.float64)


def all_finite(tensors: list[Tensor]) -> bool:
    """Whether every element of every tensor is finite, with one synchronisation.

    A NaN or inf anywhere makes the float64 sum of all sums non-finite; that sum is cheap (~2 µs
    a tensor on a CPU, against ~15 for an exact max-abs). Only when it is non-finite (float64
    tensors near 1e308 could overflow it too) does the exact check run.
    """
    tensors = [t.detach() for t in tensors if t.numel()]
    if not tensors or bool(torch.stack([_total(t) for t in tensors]).sum().isfinite()):
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class NanGuard(Callback):
    """Raises :class:`NonFiniteError` naming the step and the first layer, in backward order,
    with a non-finite gradient; checks the weights and buffers after each step too."""

    def __init__(self) -> None:
        self._handles: list = []
        self._forward: list[Seen] = []   # in forward order
        self._backward: list[Seen] = []  # in the order backward reached them
        self._loss: Tensor | None = None  # the last scalar a watched layer returned: the loss
        self._modules: dict[str, torch.nn.Module] = {}
        self._producers: dict[int, tuple[weakref.ref, str]] = {}  # id(output) -> its layer
        self._consumers: dict[str, set[str]] = {}  # layer -> the layers its output fed
        self._parameters: list[Tensor] = []
        self._saved: list[tuple[str, Tensor]] = []

    # -- watching the layers -------------------------------------------------------------------

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parameters = [p for p in pl_module.parameters() if p.requires_grad]
        self._saved = _saved_tensors(pl_module)
        for name, module in self._layers(pl_module):
            self._modules[name] = module
            self._handles.append(module.register_forward_hook(self._watch(name)))
            for parameter_name, parameter in module.named_parameters(recurse=False):
                if parameter.requires_grad:
                    self._handles.append(parameter.register_hook(
                        self._record_backward(name, parameter_name)))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _layers(pl_module: torch.nn.Module) -> Iterable[tuple[str, torch.nn.Module]]:
        from torchmetrics import Metric

        for name, module in pl_module.named_modules():
            if name and not any(module.children()) and not isinstance(module, Metric):
                yield name, module

    def _record_backward(self, layer: str, what: str):
        def record(grad: Tensor) -> None:
            self._backward.append(Seen(layer, what, _total(grad)))

        return record

    def _watch(self, name: str):
        def hook(module, args, output) -> None:
            if not (module.training and torch.is_grad_enabled()):
                return
            outputs = output if isinstance(output, (tuple, list)) else (output,)
            for tensor in outputs:
                if isinstance(tensor, Tensor) and tensor.is_floating_point():
                    self._forward.append(Seen(name, "forward", _total(tensor)))
                    if tensor.requires_grad:
                        tensor.register_hook(self._record_backward(name, "output"))
                        self._producers[id(tensor)] = (weakref.ref(tensor), name)
            if isinstance(output, Tensor) and output.dim() == 0:
                self._loss = output.detach()
            for tensor in args:
                if isinstance(tensor, Tensor) and tensor.requires_grad:
                    reference, producer = self._producers.get(id(tensor), (None, None))
                    if reference is not None and reference() is tensor:
                        # Its gradient is the producer's output gradient: no second hook.
                        self._consumers.setdefault(producer, set()).add(name)
                    else:
                        tensor.register_hook(self._record_backward(name, "input"))

        return hook

    # -- the checks ----------------------------------------------------------------------------

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        self._forward.clear()
        self._backward.clear()
        self._producers.clear()
        self._consumers.clear()
        self._loss = None

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        grads = [p.grad for p in self._parameters if p.grad is not None]
        # Under DDP the gradients are already averaged, the same on every process, so all stop
        # together; a loss is each process's own, so it is left to the gradients it poisons.
        loss = [self._loss] if self._loss is not None and trainer.world_size == 1 else []
        if all_finite([*grads, *loss]):
            return
        raise NonFiniteError(trainer.global_step + 1, f"{self._loss_note()}; {self._where()}. "
                             "This step was not taken")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict) -> None:
        """Refuse to save non-finite weights or statistics: raising here, before the file is
        written, keeps the last good checkpoint. (A finite gradient times a huge learning rate
        can overflow a weight; BatchNorm's running variance can overflow on its own.)"""
        if all_finite([t for _, t in self._saved]):
            return
        bad = next(name for name, t in self._saved if not all_finite([t]))
        raise NonFiniteError(trainer.global_step, f"{bad} is non-finite, so it was not "
                             "checkpointed; every gradient was finite, so an update or a running "
                             "statistic overflowed (is the learning rate far too large?)")

    # -- the message ---------------------------------------------------------------------------

    def _describe(self, layer: str) -> str:
        return f"{layer} ({self._modules[layer]!r})"

    def _where(self) -> str:
        """Where forward first overflowed, and the first layer in backward order whose
        gradient is non-finite, with which of its gradients it is."""
        parts = []
        overflowed = next((seen for seen in self._forward if not seen.finite), None)
        if overflowed is not None:
            parts.append(f"the forward pass first went non-finite at the output of "
                         f"{self._describe(overflowed.layer)}")
        first = next((seen for seen in self._backward if not seen.finite), None)
        if first is None:
            parts.append("no watched layer's gradient is non-finite (a parameter outside the "
                         "model's leaf layers?)")
            return "; ".join(parts)
        what = {"output": "the gradient arriving at its output",
                "input": "the gradient its backward passes to its input"}.get(
            first.what, f"the gradient of its {first.what}")
        if first.what == "output":  # computed by the backward of the layers it feeds
            consumers = sorted(self._consumers.get(first.layer, ()))
            if consumers:
                what += ", as the backward of " + " and ".join(
                    self._describe(layer) for layer in consumers) + " computed it"
        parts.append(f"in backward order (from the loss towards the input) the first layer "
                     f"with a non-finite gradient is {self._describe(first.layer)}: {what}")
        return "; ".join(parts)

    def _loss_note(self) -> str:
        if self._loss is None or self._loss.numel() != 1:
            return "the loss was not recorded"
        value = self._loss.float().item()
        return f"the loss was {value:g}" if math.isfinite(value) else f"the loss was {value}"


__all__ = ["NanGuard", "NonFiniteError"]
