"""Gradient check during training: the hand-written rules against PyTorch's own autograd, on the
very batch and weights the run is at.

Every ``every_n_steps`` steps (from step 0, so a broken rule stops the run at once) the
current batch (its first ``samples`` examples) goes through two copies of the network and its
loss: one as trained (explicit layers), one turned back into ``torch.nn`` by
:func:`trainer.nn.to_torch` (built-in autograd).
For each parameter the callback logs the largest difference between the two gradients,
relative to the gradient's largest entry (or to 1e-3 of the model's largest gradient entry,
when that is more: a gradient that should be exactly 0 is only rounding noise)::

    grad_check/max_rel_err/<parameter>   max|g - g_autograd| / max(max|g|, max|g_autograd|)
    grad_check/worst                     the largest of those

and raises :class:`GradientCheckError` when one exceeds ``tolerance``. A wrong rule spoils the
gradients of every layer below it too, so the error names the wrong gradient nearest the loss
(parameters taken in the order the model registers them, which is forward order for the
models here): the broken rule is that layer's or an op's between it and the loss.

Why copies, and which mode: the training step's own gradients were made with a random dropout
mask, which ``torch.nn.Dropout`` would not draw the same way. So both copies run with every
module in eval mode (no dropout, nor any other ``self.training``-gated randomness) except batch
norm, which stays in training mode: its batch-statistics backward is the subtle rule most
worth checking, and batch statistics are deterministic. The copies are in float64 by default,
so that rounding (~1e-16) cannot hide a wrong rule nor cause a false alarm; they leave the
model, its running statistics and its ``.grad`` untouched.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

import trainer.functional
from trainer.nn import to_torch

DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: Gradients smaller than this fraction of the model's largest gradient entry count as zero.
ZERO_GRADIENT = 1e-3


class GradientCheckError(RuntimeError):
    """An explicit gradient that differs from autograd's by more than the tolerance."""

    def __init__(self, parameter: str, layer: str, error: float, tolerance: float, step: int):
        super().__init__(
            f"gradient check failed at step {step}: the gradient of {parameter} (layer {layer}) "
            f"differs from built-in autograd's by {error:.3g} (relative; tolerance "
            f"{tolerance:.3g}). It is the wrong gradient nearest the loss: the broken backward "
            f"rule is that layer's, or an op's between it and the loss")
        self.parameter, self.layer, self.error = parameter, layer, error


@contextlib.contextmanager
def builtin_functional() -> Iterator[None]:
    """Route ``trainer.functional.<op>`` calls to ``torch.nn.functional.<op>`` for a while.

    :func:`to_torch` reverts layers, but a model's own modules may call ops directly
    (``F.scaled_dot_product_attention`` in the attention model); they go to torch's op too.
    """
    names = [name for name in trainer.functional.__all__
             if name[0].islower() and hasattr(torch.nn.functional, name)]
    saved = {name: getattr(trainer.functional, name) for name in names}
    try:
        for name in names:
            setattr(trainer.functional, name, getattr(torch.nn.functional, name))
        yield
    finally:
        for name, op in saved.items():
            setattr(trainer.functional, name, op)


#: The hook registries of a torch.nn.Module, which copy.deepcopy would copy along.
HOOK_REGISTRIES = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                   "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
                   "_backward_pre_hooks")


def copy_without_hooks(module: torch.nn.Module, convert=copy.deepcopy) -> torch.nn.Module:
    """``convert(module)`` (a deep copy) that carries none of ``module``'s forward and backward
    hooks: other callbacks' hooks (NaN guard, gradient flow) must not see the check's passes."""
    set_aside = []
    for layer in module.modules():
        for registry in HOOK_REGISTRIES:
            hooks = layer.__dict__.get(registry)
            if hooks:
                set_aside.append((layer, registry, hooks))
                layer.__dict__[registry] = type(hooks)()
    try:
        return convert(module)
    finally:
        for layer, registry, hooks in set_aside:
            layer.__dict__[registry] = hooks


def deterministic_train_mode(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, except batch norm in training mode (batch statistics, no dropout)."""
    module.eval()
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.train()
    return module


def gradients(network: torch.nn.Module, loss_fn: torch.nn.Module, x: Tensor, y: Tensor
              ) -> dict[str, Tensor | None]:
    """``{parameter name: ∂loss/∂parameter}`` for one batch, without touching ``.grad``."""
    named = [(name, p) for name, p in network.named_parameters() if p.requires_grad]
    loss = loss_fn(network(x), y)
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {name: g for (name, _), g in zip(named, grads)}


def relative_error(a: Tensor | None, b: Tensor | None, floor: float = 0.0) -> float:
    """``max|a - b| / max(max|a|, max|b|, floor)``: 0 when equal, 2 at most, scale-free;
    1 if only one of the two exists."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else 1.0
    scale = max(float(a.abs().max()), float(b.abs().max()), floor)
    return float((a - b).abs().max()) / scale if scale > 0 else 0.0


def compare_with_autograd(network: torch.nn.Module, loss_fn: torch.nn.Module, x: Tensor,
                          y: Tensor, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """``{parameter name: relative error}`` between the explicit rules' gradients and
    built-in autograd's, for ``loss_fn(network(x), y)``; see the module's docstring."""
    explicit, builtin = (deterministic_train_mode(copy_without_hooks(network, convert).to(dtype))
                         for convert in (copy.deepcopy, to_torch))
    x = x.to(dtype) if x.is_floating_point() else x
    y = y.to(dtype) if y.is_floating_point() else y  # a target of values, not class numbers
    device_type = x.device.type
    # The check runs inside the training step: keep any autocast of a mixed-precision run out.
    with torch.enable_grad(), torch.autocast(device_type, enabled=False):
        explicit_grads = gradients(explicit, copy_without_hooks(loss_fn), x, y)
        with builtin_functional():
            builtin_grads = gradients(builtin, copy_without_hooks(loss_fn, to_torch), x, y)
    # A gradient that should be exactly 0 (a bias right before batch norm) is pure rounding
    # noise: judge it against a small fraction of the model's gradient scale, not its own.
    floor = ZERO_GRADIENT * max((float(g.abs().max()) for g in builtin_grads.values()
                                 if g is not None and g.numel()), default=0.0)
    return {name: relative_error(g, builtin_grads.get(name), floor)
            for name, g in explicit_grads.items()}


class GradientCheck(Callback):
    """Checks the explicit gradients against built-in autograd every ``every_n_steps`` steps.

    Args:
        every_n_steps: check on the steps that are a multiple of this (step 0 included).
        tolerance: the largest relative error allowed; more raises :class:`GradientCheckError`.
        dtype: ``"float64"`` (default) or ``"float32"`` for the two copies; float32 needs a
            looser tolerance (~1e-3).
        samples: check on the batch's first ``samples`` examples (0: the whole batch). Every
            rule is exercised by a few examples as by many, and the check's cost (two float64
            passes) grows with them: ~360 ms for the Fashion-MNIST CNN's batch of 128 on one
            CPU core, ~70 ms for 32.
        network, loss: the LightningModule's attributes holding the network and the loss
            module (the :class:`~trainer.recipe.Recipe`'s ``model`` and ``loss``); the step's
            batch is ``(x, y, ...)``, and the loss is ``loss(network(x), y)``, or
            ``loss(network(x), pl_module.loss_target(x, y))`` where the LightningModule has a
            ``loss_target`` (the reconstruction recipe's: the input itself).
    """

    def __init__(self, every_n_steps: int = 100, tolerance: float = 1e-6,
                 dtype: str = "float64", samples: int = 32, network: str = "model",
                 loss: str = "loss"):
        if every_n_steps < 1:
            raise ValueError(f"GradientCheck: every_n_steps must be >= 1, got {every_n_steps}")
        if dtype not in DTYPES:
            raise ValueError(f"GradientCheck: dtype must be one of {', '.join(DTYPES)}, "
                             f"got {dtype!r}")
        if samples < 0:
            raise ValueError(f"GradientCheck: samples must be >= 0, got {samples}")
        self.every_n_steps = every_n_steps
        self.tolerance = tolerance
        self.dtype = dtype
        self.samples = samples
        self.network, self.loss = network, loss
        self._batch = None
        self._step = 0
        self.errors: dict[str, float] = {}  # the last check's, by parameter path

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        self._step = trainer.global_step
        self._batch = None if trainer.global_step % self.every_n_steps else batch

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After manual_backward: the step's forward has run, so the batch is known to fit.
        if self._batch is None:
            return
        batch, self._batch = self._batch, None
        network, loss_fn = getattr(pl_module, self.network), getattr(pl_module, self.loss)
        x, y = batch[0], batch[1]
        if self.samples:
            x, y = x[:self.samples], y[:self.samples]
        if (target := getattr(pl_module, "loss_target", None)) is not None:
            y = target(x, y)  # what the loss compares with, when not y: an autoencoder's x
        errors = compare_with_autograd(network, loss_fn, x, y, DTYPES[self.dtype])
        self.errors = {f"{self.network}.{name}": error for name, error in errors.items()}
        if not self.errors:
            return
        worst = max(self.errors, key=self.errors.get)
        metrics = {f"grad_check/max_rel_err/{name}": e for name, e in self.errors.items()}
        metrics["grad_check/worst"] = self.errors[worst]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=self._step)
        wrong = [name for name, error in self.errors.items() if error > self.tolerance]
        if wrong:
            for logger in trainer.loggers:
                logger.save()
            nearest_loss = wrong[-1]
            raise GradientCheckError(nearest_loss, layer_of(nearest_loss, pl_module),
                                     self.errors[nearest_loss], self.tolerance, self._step)


def layer_of(parameter: str, root: torch.nn.Module) -> str:
    """``"model.head.dense0.linear (Linear)"`` for ``"model.head.dense0.linear.weight"``."""
    path = parameter.rpartition(".")[0]
    modules: Mapping[str, torch.nn.Module] = dict(root.named_modules())
    module = modules.get(path)
    return f"{path} ({type(module).__name__})" if module is not None else path
