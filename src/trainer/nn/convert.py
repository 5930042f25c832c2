"""Swap the ``torch.nn`` layers of an existing model for their explicit twins."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import torch

from trainer import rules
from trainer.intercept import ExplicitMode, Report, module_names

from . import fused

#: torch.nn class -> explicit twin, as the table of rules lists them. Each twin subclasses its
#: torch.nn class and adds no state, so a converted module keeps its parameters, buffers, hooks
#: and state_dict layout.
TWINS: dict[type[torch.nn.Module], type[torch.nn.Module]] = rules.twins()

#: Modules that compute nothing differentiable of their own, so need no twin.
_NOTHING_TO_CONVERT = (
    torch.nn.Sequential,
    torch.nn.ModuleList,
    torch.nn.ModuleDict,
    torch.nn.Identity,
)

#: Modules whose children only hold parameters: their forward reads the children's weights
#: through a functional call and never calls the children, so only the parent is reported.
_CHILDREN_HOLD_PARAMETERS_ONLY = (
    torch.nn.MultiheadAttention,  # F.multi_head_attention_forward reads out_proj.weight/.bias
)


@dataclass
class ConversionReport:
    """What :func:`convert` did: module names (as in ``named_modules``) to class names; and,
    once the model has run, what its forward passes called (``calls``, a
    :class:`trainer.intercept.Report` that every forward adds to)."""

    converted: dict[str, str] = field(default_factory=dict)
    unconverted: dict[str, str] = field(default_factory=dict)
    calls: Report = field(default_factory=Report)
    explicit_calls: bool = True  # the forward runs inside trainer.explicit()

    @property
    def complete(self) -> bool:
        """Every gradient hand-written: with ``explicit_calls``, no call of the forward passes
        so far fell back to a built-in backward (a module without a twin is fine: its torch
        calls run the rules); without, no module was left as it was."""
        return self.calls.complete if self.explicit_calls else not self.unconverted

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s) to explicit twins"]
        if self.unconverted:
            lines.append(f"{len(self.unconverted)} without a twin, " + (
                "their torch calls run through the rules:" if self.explicit_calls else
                "left as they were (built-in autograd):"))
            lines += [f"  {name or '<root>'}: {why}" for name, why in self.unconverted.items()]
        if self.calls.explicit or self.calls.moved or self.calls.fallback:
            lines.append("calls in the forward passes so far:")
            lines += [f"  {line}" for line in str(self.calls).splitlines()]
        return "\n".join(lines)


class ExplicitForward:
    """Forward pre- and post-hooks that open :func:`trainer.explicit` around a model's
    forward, so that torch calls made there (a loss computed inside ``forward``, ``x + y``,
    ``torch.softmax``) run their rules too. The post-hook always runs, also when forward
    raises, so the mode never outlives the call."""

    def __init__(self, report: Report, strict: bool, model: torch.nn.Module):
        self.report, self.strict, self.model = report, strict, model
        self._open = threading.local()
        self._names: dict[int, str] | None = None  # module paths, for strict's message

    def enter(self, module, args) -> None:
        stack = self._open.__dict__.setdefault("modes", [])
        if self.strict and self._names is None:
            self._names = module_names(self.model)
        mode = ExplicitMode(self.strict, names=self._names or {})
        mode.report = self.report
        mode.__enter__()
        stack.append(mode)

    def leave(self, module, args, output) -> None:
        stack = self._open.__dict__.get("modes")
        if stack:
            stack.pop().__exit__(None, None, None)

    def __getstate__(self):  # torch.save(model) pickles its hooks: not the thread-local
        return {"report": self.report, "strict": self.strict, "model": self.model}

    def __setstate__(self, state):
        self.__init__(state["report"], state["strict"], state["model"])

    def __deepcopy__(self, memo):
        # a copied model gets hooks of its own, counting into its own report
        return ExplicitForward(Report(), self.strict, copy.deepcopy(self.model, memo))


def _explicit_hooks(module: torch.nn.Module) -> list[int]:
    return [key for key, hook in module._forward_pre_hooks.items()
            if isinstance(getattr(hook, "__self__", None), ExplicitForward)]


def _why_not(module: torch.nn.Module) -> str | None:
    """Why a module of a supported class still can't be converted, if it can't."""
    if isinstance(module, torch.nn.modules.conv._ConvNd) and module.padding_mode != "zeros":
        return f"{type(module).__name__} with padding_mode={module.padding_mode!r}"
    if (isinstance(module, torch.nn.modules.instancenorm._InstanceNorm)
            and module.track_running_stats):
        return f"{type(module).__name__} with track_running_stats=True"
    return None


def convert(model: torch.nn.Module, *, inplace: bool = False, strict: bool = False,
            explicit_calls: bool = True) -> tuple[torch.nn.Module, ConversionReport]:
    """Replace every supported ``torch.nn`` layer in ``model`` by its explicit twin.

    The twins hold the very same values (parameters and buffers are carried over as they are),
    so outputs are unchanged and ``state_dict`` moves both ways. Returns ``(model, report)``;
    ``report.unconverted`` names each module left on built-in autograd: a class with no twin, or
    a supported class in a configuration the explicit rule does not cover. With ``strict=True``
    any such module raises ``ValueError`` instead. A child that its parent only keeps parameters
    in (``MultiheadAttention.out_proj``) is never called, so it is neither converted nor listed:
    the parent's entry covers it. ``model`` is deep-copied unless ``inplace``.

    With ``explicit_calls`` (the default) the model's forward also runs inside
    :func:`trainer.explicit`, so the torch calls it makes itself reach their rules, and
    ``report.calls`` counts them, the fallbacks too; ``strict`` then also raises
    :class:`trainer.ExplicitError` at a call's first fallback.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"convert: expected a torch.nn.Module, got {type(model).__name__}")
    model = model if inplace else copy.deepcopy(model)
    report = ConversionReport(explicit_calls=explicit_calls)
    explicit = set(TWINS.values()) | {fused.LinearCrossEntropy}
    parameter_holders: list[str] = []  # name prefixes of children that only hold parameters
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in parameter_holders):
            continue  # never called as a module: the parent's own entry covers it
        if isinstance(module, _CHILDREN_HOLD_PARAMETERS_ONLY):
            parameter_holders.append(f"{name}." if name else "")
        cls = type(module)
        if cls in explicit:
            continue
        twin = TWINS.get(cls)
        reason = _why_not(module) if twin else None
        if twin is not None and reason is None:
            module.__class__ = twin  # a twin adds no state: this is the whole conversion
            report.converted[name] = cls.__name__
        elif twin is not None:
            report.unconverted[name] = reason
        elif not isinstance(module, _NOTHING_TO_CONVERT) and _computes_itself(module):
            report.unconverted[name] = f"{cls.__module__}.{cls.__name__} has no explicit twin"
    if strict and report.unconverted and not explicit_calls:
        raise ValueError(f"convert(strict=True): {report}")
    if explicit_calls and not _explicit_hooks(model):
        hooks = ExplicitForward(report.calls, strict, model)
        model.register_forward_pre_hook(hooks.enter)
        model.register_forward_hook(hooks.leave, always_call=True)
    return model, report


def to_torch(model: torch.nn.Module) -> torch.nn.Module:
    """The reverse of :func:`convert`: a deep copy whose explicit layers are their ``torch.nn``
    base classes again, so its gradients come from PyTorch's built-in autograd.

    The copy holds the same values and the same ``state_dict``; ``model`` is left untouched.
    Modules with no ``torch.nn`` base (``LinearCrossEntropy``, a model's own classes) stay as
    they are, and whatever ``trainer.functional`` op their ``forward`` calls stays explicit.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"to_torch: expected a torch.nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)
    for key in _explicit_hooks(model):  # and its forward runs natively again
        hooks = model._forward_pre_hooks.pop(key).__self__
        for post_key, hook in list(model._forward_hooks.items()):
            if getattr(hook, "__self__", None) is hooks:
                del model._forward_hooks[post_key]
                model._forward_hooks_always_called.pop(post_key, None)
    bases = {twin: base for base, twin in TWINS.items()}
    for module in model.modules():
        base = bases.get(type(module))
        if base is not None:
            module.__class__ = base  # a twin adds no state: this undoes the whole conversion
    return model


def _computes_itself(module: torch.nn.Module) -> bool:
    """Leaves and modules owning parameters do their own math; plain containers of
    submodules are trusted to only route data (their children are checked on their own)."""
    return not any(True for _ in module.children()) or bool(module._parameters)
