"""Stop at the first non-finite loss, gradient or weight, and say where it started.

The backward pass visits the layers from the loss towards the input. A NaN or inf, once it
appears in a gradient, spreads to every layer visited after it, so the *first* layer in backward
order (the one nearest the loss) whose gradient is non-finite is where the trouble entered the
gradients; the layers below it only inherited it. To find that layer without keeping any
gradient alive, each leaf module's output gets a tensor hook during training that records, as
backward reaches it, whether the gradient arriving there is finite (one small reduction, no
synchronisation). The decision to stop reads the parameters' gradients, which DDP has already
averaged, so every process stops at the same step.

The guard raises before the optimizer step that would have used a non-finite gradient, and
before any checkpoint callback runs for that step (Lightning runs checkpoint callbacks last),
so ``last.ckpt`` keeps the last good weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

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


def _saved_tensors(module: torch.nn.Module) -> list[tuple[str, Tensor]]:
    """What a checkpoint keeps of ``module`` that could overflow: parameters and floating
    buffers (BatchNorm's running statistics)."""
    return [(name, t.detach()) for name, t in [*module.named_parameters(),
                                                 *module.named_buffers()]
            if t.is_floating_point()]


class NanGuard(Callback):
    """Raises :class:`NonFiniteError` naming the step and the first layer, in backward order,
    whose gradient went non-finite; checks the weights after each step too."""

    def __init__(self) -> None:
        self._handles: list = []
        self._arrivals: list[tuple[str, Tensor]] = []  # (layer, output grad all finite?)
        self._loss: Tensor | None = None  # the last scalar a watched layer returned: the loss

    # -- watching the layers -------------------------------------------------------------------

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, module in self._layers(pl_module):
            self._handles.append(module.register_forward_hook(self._watch(name)))

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

    def _watch(self, name: str):
        def record(grad: Tensor) -> None:
            self._arrivals.append((name, torch.isfinite(grad).all()))

        def hook(module, args, output) -> None:
            if not (module.training and torch.is_grad_enabled()):
                return
            if isinstance(output, Tensor) and output.dim() == 0:
                self._loss = output.detach()
            for tensor in output if isinstance(output, (tuple, list)) else (output,):
                if isinstance(tensor, Tensor) and tensor.requires_grad:
                    tensor.register_hook(record)

        return hook

    # -- the checks ----------------------------------------------------------------------------

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        self._arrivals.clear()

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        grads = [(name, p.grad) for name, p in pl_module.named_parameters() if p.grad is not None]
        if not grads or torch.stack([torch.isfinite(g).all() for _, g in grads]).all():
            return
        step = trainer.global_step + 1
        raise NonFiniteError(step, f"a gradient went non-finite ({self._loss_note()}); "
                             f"{self._first_layer(pl_module, grads)}. This step was not taken.")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        finite = torch.tensor(True)
        if isinstance(loss, Tensor):
            finite = torch.isfinite(loss.detach()).all().cpu()
        saved_finite = torch.stack([torch.isfinite(t).all() for _, t in _saved_tensors(pl_module)]
                                     ).all().cpu()
        ok = bool(finite & saved_finite)
        if trainer.world_size > 1:  # every process must stop at the same step, or DDP hangs
            ok = trainer.strategy.reduce_boolean_decision(ok, all=True)
        if ok:
            return
        step = trainer.global_step
        if not bool(saved_finite):
            bad = next(name for name, t in _saved_tensors(pl_module) if not torch.isfinite(t).all())
            raise NonFiniteError(step, f"this step made {bad} non-finite though every gradient "
                                 "was finite (an update or a running statistic overflowed: is "
                                 "the learning rate far too large?)")
        self._loss = loss.detach() if isinstance(loss, Tensor) else None
        raise NonFiniteError(step, f"{self._loss_note()} on some process, though the gradients "
                             "stayed finite")

    # -- the message ---------------------------------------------------------------------------

    def _first_layer(self, pl_module: torch.nn.Module,
                     grads: list[tuple[str, Tensor]]) -> str:
        """Which layer, first in backward order, had a non-finite gradient, and which one."""
        modules = dict(pl_module.named_modules())
        bad_parameter: dict[str, str] = {}  # layer -> its first parameter with a bad gradient
        for name, grad in grads:
            if not torch.isfinite(grad).all():
                layer, _, short = name.rpartition(".")
                bad_parameter.setdefault(layer, short)
        for layer, arrived_finite in self._arrivals:  # in the order backward reached them
            if not bool(arrived_finite):
                what = "the gradient arriving at its output"
            elif layer in bad_parameter:
                what = f"the gradient of its {bad_parameter[layer]}"
            else:
                continue
            return (f"the first layer in backward order (nearest the loss) with a non-finite "
                    f"gradient is {layer} ({modules[layer]!r}): {what} holds nan or inf")
        # Nothing recorded (a parameter outside the watched layers): the last one registered.
        layer, short = next(reversed(bad_parameter.items()))
        return f"the gradient of {layer}.{short} ({modules.get(layer)!r}) holds nan or inf"

    def _loss_note(self) -> str:
        if self._loss is None or self._loss.numel() != 1:
            return "the loss was not recorded"
        value = self._loss.float().item()
        return f"the loss was {value:g}" if math.isfinite(value) else f"the loss was {value}"


__all__ = ["NanGuard", "NonFiniteError"]
