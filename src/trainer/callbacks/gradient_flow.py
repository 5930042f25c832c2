"""Gradient flow: how big each layer's gradients, weights and updates are, and how many of its
ReLU units have stopped firing, every few steps.

Tags (``<layer>`` is a module path such as ``model.head.dense0.linear``; a layer is a module
that owns parameters, and its norms are taken over all of them, weight and bias together)::

    grad_flow/grad_norm/<layer>      ‖g‖: the gradient the optimizer is about to apply
    grad_flow/weight_norm/<layer>    ‖W‖ before the step
    grad_flow/update_ratio/<layer>   ‖ΔW‖ / ‖W‖: how far the step moved the layer
                                     (~1e-3 is healthy; 1e-1 runs away, 1e-6 stalls)
    grad_flow/dead_relu/<relu>       fraction of the ReLU's output units that are 0 for every
                                     sample of the batch (dead or dying units)
    weights/<parameter>, grads/<parameter>   histograms (TensorBoard only), on their own
                                     (rarer) schedule: they cost ~0.5 ms each to write

The optimizer step happens inside ``Recipe.adjust`` (manual optimization), so the numbers come
from three hooks around it: ``on_train_batch_start`` decides whether this step is logged and
only then attaches forward hooks to the ReLUs (other steps pay nothing);
``on_before_optimizer_step`` — which Lightning's ``LightningOptimizer.step`` calls in manual
optimization too, after the gradients are final (clipped, unscaled) — reads the gradients and
snapshots the weights; ``on_train_batch_end`` compares the weights after the step and logs.
"""

from __future__ import annotations

from functools import partial

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

HISTOGRAM_BINS = 64


def layers_with_parameters(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """``{module path: module}`` for every module that owns parameters itself."""
    return {name: layer for name, layer in module.named_modules()
            if any(p.requires_grad for p in layer.parameters(recurse=False))}


def norm(tensors: list[Tensor]) -> float:
    """The 2-norm of several tensors taken as one vector."""
    if not tensors:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(t.detach().float()) for t in tensors])))


def histogram(values: Tensor, bins: int = HISTOGRAM_BINS) -> dict:
    """The arguments of ``SummaryWriter.add_histogram_raw`` for ``bins`` even buckets from the
    values' min to their max: what ``add_histogram(values, bins=bins)`` writes, counted by
    ``torch.histc`` where the values are rather than by numpy on a CPU copy (about 0.5 against
    0.75 ms for a 64x64x5 weight, the writing included, on this project's CPU).

    A constant tensor gets the buckets ``histc`` uses for it, from min − 1 to max + 1.
    """
    flat = values.detach().reshape(-1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    low, high = (float(v) for v in torch.aminmax(flat))
    counts = torch.histc(flat, bins, min=low, max=high)
    pad = 1.0 if low == high else 0.0  # histc's own widening of a constant's range
    as_double = flat.double()
    total, squares = torch.stack([as_double.sum(), torch.dot(as_double, as_double)]).tolist()
    # bucket i holds the values from limit i-1 (the minimum, for i = 0) up to limit i
    limits = torch.linspace(low - pad, high + pad, bins + 1, dtype=torch.float64)[1:]
    return {"min": low, "max": high, "num": flat.numel(), "sum": total,
            "sum_squares": squares, "bucket_limits": limits.tolist(),
            "bucket_counts": counts.tolist()}


def dead_fraction(output: Tensor) -> float:
    """Fraction of units (output positions past the batch dim) that are 0 for every sample."""
    alive = (output.detach() != 0).reshape(output.shape[0], -1).any(dim=0)
    return 1.0 - float(alive.float().mean())


class GradientFlow(Callback):
    """Logs per-layer gradient norms, weight norms, update ratios and dead ReLUs every
    ``every_n_steps`` optimizer steps (steps 0, N, 2N, ...), and histograms every
    ``histograms_every_n_steps``.

    Args:
        every_n_steps: log the scalars on the steps that are a multiple of this.
        histograms_every_n_steps: write weight and gradient histograms (TensorBoard only) on
            the steps that are a multiple of this; 0: never.
    """

    def __init__(self, every_n_steps: int = 25, histograms_every_n_steps: int = 100):
        if every_n_steps < 1:
            raise ValueError(f"GradientFlow: every_n_steps must be >= 1, got {every_n_steps}")
        if histograms_every_n_steps < 0:
            raise ValueError(f"GradientFlow: histograms_every_n_steps must be >= 0, got "
                             f"{histograms_every_n_steps}")
        self.every_n_steps = every_n_steps
        self.histograms_every_n_steps = histograms_every_n_steps
        self._step: int | None = None  # the step being logged, None on other steps
        self._scalars_due = self._histograms_due = False
        self._stepped = False  # on_before_optimizer_step ran for this step already
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._dead: dict[str, float] = {}
        self._before: dict[str, list[Tensor]] = {}
        self._scalars: dict[str, float] = {}
        self.logged: dict[str, float] = {}  # the last logged step's scalars

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        self._remove_hooks()
        self._step = None
        step = trainer.global_step
        self._scalars_due = step % self.every_n_steps == 0
        self._histograms_due = (self.histograms_every_n_steps > 0
                                and step % self.histograms_every_n_steps == 0
                                and self._tensorboard(trainer) is not None)
        if not (self._scalars_due or self._histograms_due) or not trainer.is_global_zero:
            return
        self._step, self._stepped = step, False
        self._dead, self._before, self._scalars = {}, {}, {}
        if not self._scalars_due:
            return
        for name, module in pl_module.named_modules():
            if isinstance(module, torch.nn.ReLU):
                self._hooks.append(module.register_forward_hook(
                    partial(self._record_dead, name, module)))

    def _record_dead(self, name: str, relu: torch.nn.Module, module: torch.nn.Module, inputs,
                     output: Tensor) -> None:
        # Deep copies of the model (the gradient check's) carry this hook along: skip them.
        if module is relu:
            self._dead[name] = dead_fraction(output)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer) -> None:
        if self._step is None or self._stepped:  # not a logged step, or a second optimizer
            return
        self._stepped = True
        experiment = self._tensorboard(trainer)
        for name, layer in layers_with_parameters(pl_module).items():
            params = [p for p in layer.parameters(recurse=False) if p.requires_grad]
            if self._scalars_due:
                grads = [p.grad for p in params if p.grad is not None]
                self._scalars[f"grad_flow/grad_norm/{name}"] = norm(grads)
                self._scalars[f"grad_flow/weight_norm/{name}"] = norm(params)
                self._before[name] = [p.detach().clone() for p in params]
            if self._histograms_due:
                # 64 even bins: TensorBoard's default exponential buckets cost 2-4x as much,
                # ~5% of a small CNN's training time at one histogram pass every 100 steps
                for param_name, p in layer.named_parameters(recurse=False):
                    tag = f"{name}.{param_name}" if name else param_name
                    experiment.add_histogram_raw(f"weights/{tag}", **histogram(p),
                                                 global_step=self._step)
                    if p.grad is not None:
                        experiment.add_histogram_raw(f"grads/{tag}", **histogram(p.grad),
                                                     global_step=self._step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        if self._step is None or not self._scalars_due:
            return
        self._remove_hooks()
        layers = layers_with_parameters(pl_module)
        for name, before in self._before.items():
            after = [p for p in layers[name].parameters(recurse=False) if p.requires_grad]
            moved = norm([a.detach() - b for a, b in zip(after, before)])
            self._scalars[f"grad_flow/update_ratio/{name}"] = moved / max(norm(before), 1e-12)
        for name, fraction in self._dead.items():
            self._scalars[f"grad_flow/dead_relu/{name}"] = fraction
        for logger in trainer.loggers:
            logger.log_metrics(dict(self._scalars), step=self._step)
        self.logged = dict(self._scalars)
        self._step, self._before = None, {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @staticmethod
    def _tensorboard(trainer: L.Trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None
